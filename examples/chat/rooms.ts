/**
 * The chat's state, in memory: rooms, their recent messages, who is in each
 * and who is typing. Listeners hear about every change; the gRPC handlers
 * turn them into stream writes.
 */
import { randomUUID } from 'node:crypto'
import type { Attachment, ChatMessage, Member, Room } from './types.js'

const HISTORY_KEPT = 500
const TYPING_LAPSES_MS = 4000
const MAX_ROOMS = 30

export interface Person { id: string, name: string, bot: boolean }

interface RoomState {
  name: string
  topic: string
  messages: ChatMessage[]
  /** Person id → the person and until when they are typing. */
  members: Map<string, { person: Person, typingUntil: number }>
}

type Listener<T> = (value: T) => void

export class ChatRooms {
  private readonly rooms = new Map<string, RoomState>()
  private readonly messageListeners = new Set<Listener<ChatMessage>>()
  private readonly presenceListeners = new Set<Listener<string>>()
  private readonly roomListeners = new Set<Listener<Room[]>>()
  private readonly typingTimer: ReturnType<typeof setInterval>

  constructor (seed: Array<{ name: string, topic: string }>) {
    for (const { name, topic } of seed) this.rooms.set(name, { name, topic, messages: [], members: new Map() })
    // Typing lapses when a person stops typing without posting.
    this.typingTimer = setInterval(() => { this.expireTyping() }, 500)
    this.typingTimer.unref()
  }

  close (): void {
    clearInterval(this.typingTimer)
  }

  list (): Room[] {
    return [...this.rooms.values()].map(r => ({ name: r.name, topic: r.topic, members: r.members.size }))
  }

  has (room: string): boolean {
    return this.rooms.has(room)
  }

  /** Joins `room`, creating it if new; returns false when no more rooms may be made. */
  join (person: Person, room: string): boolean {
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

  leave (person: Person, room: string): void {
    if (this.rooms.get(room)?.members.delete(person.id) !== true) return
    this.changedPresence(room)
    this.changedRooms()
  }

  leaveAll (person: Person): void {
    for (const room of this.rooms.values()) {
      if (room.members.has(person.id)) this.leave(person, room.name)
    }
  }

  typing (person: Person, room: string): void {
    const member = this.rooms.get(room)?.members.get(person.id)
    if (member === undefined) return
    const wasTyping = member.typingUntil > Date.now()
    member.typingUntil = Date.now() + TYPING_LAPSES_MS
    if (!wasTyping) this.changedPresence(room)
  }

  post (person: Person, room: string, text: string, attachment: Attachment | null): ChatMessage | null {
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
    for (const listener of [...this.messageListeners]) listener(message)
    return message
  }

  history (room: string, limit: number): ChatMessage[] {
    return this.rooms.get(room)?.messages.slice(-limit) ?? []
  }

  presence (room: string): Member[] {
    const now = Date.now()
    return [...(this.rooms.get(room)?.members.values() ?? [])]
      .map(({ person, typingUntil }) => ({ name: person.name, bot: person.bot, typing: typingUntil > now }))
      .sort((a, b) => Number(a.bot) - Number(b.bot) || a.name.localeCompare(b.name))
  }

  onMessage (listener: Listener<ChatMessage>): () => void { return subscribe(this.messageListeners, listener) }
  /** Hears the name of each room whose presence changed. */
  onPresence (listener: Listener<string>): () => void { return subscribe(this.presenceListeners, listener) }
  onRooms (listener: Listener<Room[]>): () => void { return subscribe(this.roomListeners, listener) }

  private changedPresence (room: string): void {
    for (const listener of [...this.presenceListeners]) listener(room)
  }

  private changedRooms (): void {
    const rooms = this.list()
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

function subscribe<T> (set: Set<Listener<T>>, listener: Listener<T>): () => void {
  set.add(listener)
  return () => { set.delete(listener) }
}
