/**
 * Where the chat keeps its state: rooms, their recent messages, who is in
 * each and who is typing. In memory (rooms.ts, `npm start`) or in Redis
 * (redis-store.ts, with REDIS_URL), where every instance sees the same.
 * Messages themselves reach the sessions through the plugin's topics; the
 * store tells its listeners when presence or the room list changed.
 */
import type { Attachment, ChatMessage, Member, Room } from './types.js'

export const HISTORY_KEPT = 500
export const TYPING_LAPSES_MS = 4000
export const MAX_ROOMS = 30

export const SEED_ROOMS = [
  { name: 'general', topic: 'Say hi. Mention @bot and a backend answers over native gRPC.' },
  { name: 'random', topic: 'Anything goes' },
  { name: 'help', topic: 'Questions about fastify-grpc-ws' }
]

export interface Person { id: string, name: string, bot: boolean }

type Listener<T> = (value: T) => void

export interface ChatStore {
  list: () => Promise<Room[]>
  has: (room: string) => Promise<boolean>
  /** Joins `room`, creating it if new; false when no more rooms may be made. */
  join: (person: Person, room: string) => Promise<boolean>
  leave: (person: Person, room: string) => Promise<void>
  typing: (person: Person, room: string) => Promise<void>
  /** Adds a message of a member to the room's history; null if `person` is not in `room`. */
  post: (person: Person, room: string, text: string, attachment: Attachment | null) => Promise<ChatMessage | null>
  /** The latest `limit` messages, oldest first; only those after `sinceId` when it is kept. */
  history: (room: string, limit: number, sinceId?: string) => Promise<ChatMessage[]>
  presence: (room: string) => Promise<Member[]>
  /** Hears a room's members each time its presence changed. */
  onPresence: (listener: (room: string, members: Member[]) => void) => () => void
  onRooms: (listener: Listener<Room[]>) => () => void
  close: () => Promise<void>
}

/** The messages after `sinceId` (all kept ones if it is not kept), at most the latest `limit`. */
export function since (messages: ChatMessage[], limit: number, sinceId = ''): ChatMessage[] {
  const at = sinceId === '' ? -1 : messages.findIndex(m => m.id === sinceId)
  return messages.slice(at + 1).slice(-limit)
}

export function sortMembers (members: Member[]): Member[] {
  return members.sort((a, b) => Number(a.bot) - Number(b.bot) || a.name.localeCompare(b.name))
}

export function subscribe<T> (set: Set<T>, listener: T): () => void {
  set.add(listener)
  return () => { set.delete(listener) }
}
