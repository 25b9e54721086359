/**
 * The chat's state in Redis (REDIS_URL), shared by every instance: rooms in
 * a hash, each room's history in a list, its members in a sorted set scored
 * by when their entry lapses. Each instance renews the entries of the people
 * connected to it; those of an instance that was killed lapse, and whichever
 * instance sweeps first tells the others. Changes are announced on one
 * pub/sub channel; each instance then reads the new state once for all its
 * streams.
 */
import { randomUUID } from 'node:crypto'
import type { createClient } from 'redis'
import { HISTORY_KEPT, MAX_ROOMS, since, sortMembers, subscribe, TYPING_LAPSES_MS, type ChatStore, type Person } from './store.js'
import type { Attachment, ChatMessage, Member, Room } from './types.js'

export type Redis = ReturnType<typeof createClient>

const K = {
  rooms: 'chat:rooms',
  members: (room: string) => `chat:room:${room}:members`,
  people: (room: string) => `chat:room:${room}:people`,
  messages: (room: string) => `chat:room:${room}:messages`,
  changes: 'chat:changes',
  bot: 'chat:bot'
}

interface Entry { name: string, bot: boolean, typingUntil: number }

export interface RedisStoreOptions {
  /** How long a member's entry outlives its last renewal (an instance killed without a goodbye). Default 15 s. */
  presenceTtlMs?: number
}

export class RedisStore implements ChatStore {
  private readonly presenceListeners = new Set<(room: string, members: Member[]) => void>()
  private readonly roomListeners = new Set<(rooms: Room[]) => void>()
  /** People connected here, per room: the entries this instance renews. */
  private readonly local = new Map<string, Map<string, Person>>()
  /** Reads in flight per change ('' is the room list), so the last read started after the last change. */
  private readonly reads = new Map<string, { again: boolean }>()
  private readonly timer: ReturnType<typeof setInterval>
  private readonly ttl: number

  private constructor (private readonly redis: Redis, private readonly sub: Redis, options: RedisStoreOptions) {
    this.ttl = options.presenceTtlMs ?? 15_000
    this.timer = setInterval(() => { void this.heartbeat().catch(() => {}) }, Math.max(200, this.ttl / 3))
    this.timer.unref()
  }

  static async open (redis: Redis, seed: Array<{ name: string, topic: string }>, options: RedisStoreOptions = {}): Promise<RedisStore> {
    await Promise.all(seed.map(async ({ name, topic }, created) => await redis.hSetNX(K.rooms, name, JSON.stringify({ topic, created }))))
    const sub = redis.duplicate()
    sub.on('error', () => {}) // it reconnects by itself
    await sub.connect()
    const store = new RedisStore(redis, sub, options)
    await sub.subscribe(K.changes, room => { store.changed(room) })
    return store
  }

  async close (): Promise<void> {
    clearInterval(this.timer)
    await this.sub.close()
  }

  async list (): Promise<Room[]> {
    const now = Date.now()
    const rooms = Object.entries(await this.redis.hGetAll(K.rooms))
      .map(([name, json]) => ({ name, ...JSON.parse(json) as { topic: string, created: number } }))
      .sort((a, b) => a.created - b.created)
    const counts = await Promise.all(rooms.map(async r => await this.redis.zCount(K.members(r.name), now, '+inf')))
    return rooms.map((r, i) => ({ name: r.name, topic: r.topic, members: counts[i]! }))
  }

  async has (room: string): Promise<boolean> {
    return await this.redis.hExists(K.rooms, room) === 1
  }

  async join (person: Person, room: string): Promise<boolean> {
    if (!await this.has(room)) {
      if (await this.redis.hLen(K.rooms) >= MAX_ROOMS) return false
      await this.redis.hSetNX(K.rooms, room, JSON.stringify({ topic: `Made by ${person.name}`, created: Date.now() }))
    }
    let people = this.local.get(room)
    if (people === undefined) this.local.set(room, people = new Map())
    people.set(person.id, person)
    await this.renew(room, [person])
    await this.announce(room)
    return true
  }

  async leave (person: Person, room: string): Promise<void> {
    this.local.get(room)?.delete(person.id)
    const [removed] = await this.redis.multi().zRem(K.members(room), person.id).hDel(K.people(room), person.id).exec()
    if (Number(removed) > 0) await this.announce(room)
  }

  async typing (person: Person, room: string): Promise<void> {
    const entry = await this.entry(person, room)
    if (entry === null) return
    const wasTyping = entry.typingUntil > Date.now()
    entry.typingUntil = Date.now() + TYPING_LAPSES_MS
    await this.redis.hSet(K.people(room), person.id, JSON.stringify(entry))
    if (wasTyping) return
    await this.announce(room)
    // Whoever reads presence then sees it lapsed.
    setTimeout(() => { void this.announce(room).catch(() => {}) }, TYPING_LAPSES_MS + 50).unref()
  }

  async post (person: Person, room: string, text: string, attachment: Attachment | null): Promise<ChatMessage | null> {
    const entry = await this.entry(person, room)
    if (entry === null) return null
    const message: ChatMessage = { id: randomUUID(), room, author: person.name, bot: person.bot, text, sentAt: Date.now(), attachment, system: false }
    await this.redis.multi().rPush(K.messages(room), JSON.stringify(message)).lTrim(K.messages(room), -HISTORY_KEPT, -1).exec()
    if (entry.typingUntil > 0) {
      entry.typingUntil = 0
      await this.redis.hSet(K.people(room), person.id, JSON.stringify(entry))
      await this.announce(room)
    }
    return message
  }

  async history (room: string, limit: number, sinceId?: string): Promise<ChatMessage[]> {
    const kept = (await this.redis.lRange(K.messages(room), 0, -1)).map(json => JSON.parse(json) as ChatMessage)
    return since(kept, limit, sinceId)
  }

  async presence (room: string): Promise<Member[]> {
    const now = Date.now()
    const ids = await this.redis.zRangeByScore(K.members(room), now, '+inf')
    const entries = ids.length === 0 ? [] : await this.redis.hmGet(K.people(room), ids)
    return sortMembers(entries.filter(json => json !== null).map(json => {
      const { name, bot, typingUntil } = JSON.parse(json) as Entry
      return { name, bot, typing: typingUntil > now }
    }))
  }

  onPresence (listener: (room: string, members: Member[]) => void): () => void { return subscribe(this.presenceListeners, listener) }
  onRooms (listener: (rooms: Room[]) => void): () => void { return subscribe(this.roomListeners, listener) }

  /** The bot's lease: true while this instance holds it (taken if free, renewed if ours). */
  async lease (holder: string, ms: number): Promise<boolean> {
    const renewed = await this.redis.eval(
      "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0",
      { keys: [K.bot], arguments: [holder, String(ms)] })
    if (renewed === 1) return true
    return await this.redis.set(K.bot, holder, { condition: 'NX', expiration: { type: 'PX', value: ms } }) === 'OK'
  }

  async release (holder: string): Promise<void> {
    await this.redis.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0",
      { keys: [K.bot], arguments: [holder] })
  }

  /** Whether this is the first bot the chat ever had (only that one introduces itself). */
  async firstBot (): Promise<boolean> {
    return await this.redis.set('chat:bot-announced', '1', { condition: 'NX' }) === 'OK'
  }

  /** A member's entry; null if `person` is not in `room`. */
  private async entry (person: Person, room: string): Promise<Entry | null> {
    const json = await this.redis.hGet(K.people(room), person.id)
    if (json !== null) return JSON.parse(json) as Entry
    // Swept after a stall of this instance longer than the TTL: still here, back at the next heartbeat.
    return this.local.get(room)?.has(person.id) === true ? { name: person.name, bot: person.bot, typingUntil: 0 } : null
  }

  /** Puts (back) the entries of people connected here; true if one was missing. */
  private async renew (room: string, people: Person[]): Promise<boolean> {
    const multi = this.redis.multi().zAdd(K.members(room), people.map(p => ({ score: Date.now() + this.ttl, value: p.id })))
    for (const p of people) multi.hSetNX(K.people(room), p.id, JSON.stringify({ name: p.name, bot: p.bot, typingUntil: 0 } satisfies Entry))
    const [added] = await multi.exec()
    return Number(added) > 0
  }

  private async announce (room: string): Promise<void> {
    await this.redis.publish(K.changes, room)
  }

  /** Renews this instance's members; removes the lapsed entries of any instance, and says so. */
  private async heartbeat (): Promise<void> {
    for (const [room, people] of this.local) {
      if (people.size > 0 && await this.renew(room, [...people.values()])) await this.announce(room)
    }
    const now = Date.now()
    for (const room of await this.redis.hKeys(K.rooms)) {
      const lapsed = await this.redis.zRangeByScore(K.members(room), '-inf', now)
      if (lapsed.length === 0) continue
      const [removed] = await this.redis.multi().zRem(K.members(room), lapsed).hDel(K.people(room), lapsed).exec()
      if (Number(removed) > 0) await this.announce(room)
    }
  }

  /** A room's presence changed somewhere: read it (and the room list) once for every listener here. */
  private changed (room: string): void {
    this.reread(`p:${room}`, async () => {
      const members = await this.presence(room)
      for (const listener of [...this.presenceListeners]) listener(room, members)
    })
    this.reread('rooms', async () => {
      const rooms = await this.list()
      for (const listener of [...this.roomListeners]) listener(rooms)
    })
  }

  private reread (key: string, read: () => Promise<void>): void {
    const running = this.reads.get(key)
    if (running !== undefined) {
      running.again = true
      return
    }
    const state = { again: false }
    this.reads.set(key, state)
    void (async () => {
      do {
        state.again = false
        await read().catch(() => {})
      } while (state.again)
      this.reads.delete(key)
    })()
  }
}
