/**
 * The chat's state in memory (`npm start`): one process, nothing to install.
 * Listeners hear about every change; the gRPC handlers turn them into
 * stream writes.
 */
import { randomUUID } from 'node:crypto'
import { HISTORY_KEPT, MAX_ROOMS, since, sortMembers, subscribe, TYPING_LAPSES_MS, type ChatStore, type Person } from './store.js'
import type { Attachment, ChatMessage, Member, Room } from './types.js'

interface RoomState {
  name: string
  topic: string
  messages: ChatMessage[]
  /** Person id → the person and until when they are typing. */
  members: Map<string, { person: Person, typingUntil: number }>
}

export class ChatRooms implements ChatStore {
  private readonly rooms = new Map<string, RoomState>()
  private readonly presenceListeners = new Set<(room: string, members: Member[]) => void>()
  private readonly roomListeners = new Set<(rooms: Room[]) => void>()
  private readonly typingTimer: ReturnType<typeof setInterval>

  constructor (seed: Array<{ name: string, topic: string }>) {
    for (const { name, topic } of seed) this.rooms.set(name, { name, topic, messages: [], members: new Map() })
    // Typing lapses when a person stops typing without posting.
    this.typingTimer = setInterval(() => { this.expireTyping() }, 500)
    this.typingTimer.unref()
  }

  async close (): Promise<void> {
    clearInterval(this.typingTimer)
  }

  async list (): Promise<Room[]> {
    return this.roomList()
  }

  async has (room: string): Promise<boolean> {
    return this.rooms.has(room)
  }

  async join (person: Person, room: string): Promise<boolean> {
    let state = this.rooms.get(room)
    if (state === undefined) {
      if (this.rooms.size >= MAX_ROOMS) return false
      state = { name: room, topic: `Made by ${person.name}`, messages: [], members: new Map() }
      this.rooms.set(room, state)
    }
    if (state.members.has(person.id)) return true
    state.members.set(person.id, { person, typingUntil: 0 })
    this.changedPresence(room)
    this.changedRooms()
    return true
  }

  async leave (person: Person, room: string): Promise<void> {
    if (this.rooms.get(room)?.members.delete(person.id) !== true) return
    this.changedPresence(room)
    this.changedRooms()
  }

  async typing (person: Person, room: string): Promise<void> {
    const member = this.rooms.get(room)?.members.get(person.id)
    if (member === undefined) return
    const wasTyping = member.typingUntil > Date.now()
    member.typingUntil = Date.now() + TYPING_LAPSES_MS
    if (!wasTyping) this.changedPresence(room)
  }

  async post (person: Person, room: string, text: string, attachment: Attachment | null): Promise<ChatMessage | null> {
    const state = this.rooms.get(room)
    const member = state?.members.get(person.id)
    if (state === undefined || member === undefined) return null
    const message: ChatMessage = { id: randomUUID(), room, author: person.name, bot: person.bot, text, sentAt: Date.now(), attachment, system: false }
    state.messages.push(message)
    if (state.messages.length > HISTORY_KEPT) state.messages.shift()
    if (member.typingUntil > 0) {
      member.typingUntil = 0
      this.changedPresence(room)
    }
    return message
  }

  async history (room: string, limit: number, sinceId?: string): Promise<ChatMessage[]> {
    return since(this.rooms.get(room)?.messages ?? [], limit, sinceId)
  }

  async presence (room: string): Promise<Member[]> {
    return this.members(room)
  }

  onPresence (listener: (room: string, members: Member[]) => void): () => void { return subscribe(this.presenceListeners, listener) }
  onRooms (listener: (rooms: Room[]) => void): () => void { return subscribe(this.roomListeners, listener) }

  private roomList (): Room[] {
    return [...this.rooms.values()].map(r => ({ name: r.name, topic: r.topic, members: r.members.size }))
  }

  private members (room: string): Member[] {
    const now = Date.now()
    return sortMembers([...(this.rooms.get(room)?.members.values() ?? [])]
      .map(({ person, typingUntil }) => ({ name: person.name, bot: person.bot, typing: typingUntil > now })))
  }

  private changedPresence (room: string): void {
    const members = this.members(room)
    for (const listener of [...this.presenceListeners]) listener(room, members)
  }

  private changedRooms (): void {
    const rooms = this.roomList()
    for (const listener of [...this.roomListeners]) listener(rooms)
  }

  private expireTyping (): void {
    const now = Date.now()
    for (const room of this.rooms.values()) {
      let lapsed = false
      for (const member of room.members.values()) {
        if (member.typingUntil !== 0 && member.typingUntil <= now) {
          member.typingUntil = 0
          lapsed = true
        }
      }
      if (lapsed) this.changedPresence(room.name)
    }
  }
}
