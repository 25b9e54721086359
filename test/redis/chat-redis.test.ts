/**
 * The chat demo (examples/chat) on many instances: two chat processes on
 * one real redis-server (unix socket, nothing persisted) form one chat.
 * Members are stock grpc-js clients of the Chat service, half over HTTP/2
 * (the instance's grpcServer), half over the plugin's WebSocket
 * (createWebSocketChannel). Run by `npm run test:redis`.
 */
import * as grpc from '@grpc/grpc-js'
import t, { type Test } from 'tap'
import { BOT_NAME } from '../../examples/chat/bot.js'
import { ChatClient } from '../../examples/chat/server.js'
import type { ChatMessage, Member as Present } from '../../examples/chat/types.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { bounded } from '../helpers/bounded.js'
import { until } from '../helpers/fanout-clients.js'
import { Instance } from './instances.js'
import { RedisServer } from './redis-server.js'

const CHAT_INSTANCE = new URL('./chat-instance.ts', import.meta.url).pathname
/** As chat-instance.ts sets it. */
const PRESENCE_TTL_MS = 3000

const redis = new RedisServer()
let a: Instance
let b: Instance
t.before(async () => {
  await redis.start()
  ;[a, b] = await Promise.all([Instance.start(redis.socket, CHAT_INSTANCE), Instance.start(redis.socket, CHAT_INSTANCE)])
})
t.teardown(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()])
  await redis.close()
})

type Side = 'A' | 'B'
type Transport = 'ws' | 'h2'

/** A Chat client of one instance, over HTTP/2 or over the WebSocket route. */
function clientOf (t: Test, inst: Instance, transport: Transport): any {
  const client = transport === 'h2'
    ? new ChatClient(inst.grpcAddress, grpc.credentials.createInsecure())
    : new ChatClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(`${inst.url.replace('http', 'ws')}/grpc`) })
  t.teardown(() => { client.close() })
  return client
}

/** A person in the chat: one Connect session, in `room`. */
class Person {
  readonly messages: ChatMessage[] = []
  readonly joined: Promise<void>
  ended = false
  private readonly call: any

  constructor (readonly name: string, readonly side: Side, readonly transport: Transport, client: any, readonly room: string) {
    this.call = client.Connect()
    let joined!: () => void
    this.joined = new Promise(resolve => { joined = resolve })
    this.call.on('data', (event: any) => {
      if (event.event === 'joined' && event.joined === room) joined()
      if (event.event === 'message') this.messages.push(event.message)
    })
    this.call.on('error', () => { this.ended = true })
    this.call.on('end', () => { this.ended = true })
    this.call.write({ hello: { name } })
    this.call.write({ join: room })
  }

  post (text: string): void { this.call.write({ post: { room: this.room, text } }) }
  texts (prefix: string): string[] { return this.messages.filter(m => m.text.startsWith(prefix)).map(m => m.text) }
  leave (): void { this.call.end() }
}

/** 5 members over WebSocket and 5 over HTTP/2 on each instance, all in `room`, joined. */
async function crowd (t: Test, room: string, instances: Record<Side, Instance>): Promise<Person[]> {
  const people: Person[] = []
  for (const side of ['A', 'B'] as const) {
    for (const transport of ['ws', 'h2'] as const) {
      const client = clientOf(t, instances[side], transport)
      for (let i = 0; i < 5; i++) people.push(new Person(`${side}-${transport}-${i}`, side, transport, client, room))
    }
  }
  t.teardown(() => { for (const p of people) p.leave() })
  await bounded('20 members joined', Promise.all(people.map(async p => await p.joined)), 15000)
  return people
}

/** A room's members as an instance's Presence stream gives them first. */
async function presence (t: Test, inst: Instance, room: string): Promise<Present[]> {
  const client = clientOf(t, inst, 'h2')
  const stream = client.Presence({ room })
  stream.on('error', () => {})
  try {
    const [update] = await bounded('a presence update', new Promise<any[]>(resolve => { stream.once('data', (u: any) => { resolve([u]) }) }), 5000)
    return update.members
  } finally {
    stream.cancel()
  }
}

/**
 * Waits until every instance shows `count` members in `room`, the same on
 * all (the bot's "typing" comes and goes), and returns what each showed.
 */
async function presenceIs (t: Test, instances: Instance[], room: string, count: number, ms = 10000): Promise<Present[][]> {
  const end = Date.now() + ms
  for (;;) {
    const lists = await Promise.all(instances.map(async inst => await presence(t, inst, room)))
    const same = lists.every(l => JSON.stringify(l) === JSON.stringify(lists[0]))
    if ((same && lists[0]!.length === count) || Date.now() > end) return lists
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}

async function history (t: Test, inst: Instance, room: string, limit = 200): Promise<ChatMessage[]> {
  const client = clientOf(t, inst, 'h2')
  return await new Promise((resolve, reject) => {
    client.History({ room, limit }, { deadline: Date.now() + 5000 }, (err: Error | null, reply: any) => { err === null ? resolve(reply.messages) : reject(err) })
  })
}

/** Which of `instances` run the bot, once exactly one does with its bot in #general (a takeover takes up to the lease). */
async function oneBot (instances: Instance[], ms = 15000): Promise<boolean[]> {
  const end = Date.now() + ms
  for (;;) {
    const ready = await Promise.all(instances.map(async inst => (await inst.ask('bot')).ready as boolean))
    if (ready.filter(Boolean).length === 1 || Date.now() > end) return ready
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

const range = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

t.test('Should give 20 members on two instances every one of 100 posts from each side, once, with presence and history the same on both', async t => {
  const people = await crowd(t, 'load', { A: a, B: b })
  const fromA = people.find(p => p.side === 'A' && p.transport === 'ws')!
  const fromB = people.find(p => p.side === 'B' && p.transport === 'h2')!
  for (let i = 0; i < 100; i++) {
    fromA.post(`A${i}`)
    fromB.post(`B${i}`)
  }
  await until(() => people.every(p => p.messages.length >= 200), 20000)
  await new Promise(resolve => setTimeout(resolve, 300)) // room for a duplicate to show
  for (const p of people) {
    // Each poster's own order, on every member (posts of two instances interleave).
    t.same(p.texts('A'), range('A', 100), `${p.name}: A's 100 posts, once each, in order`)
    t.same(p.texts('B'), range('B', 100), `${p.name}: B's 100 posts, once each, in order`)
    t.equal(new Set(p.messages.map(m => m.id)).size, 200, `${p.name}: 200 messages, no id twice`)
  }

  const [onA, onB] = await presenceIs(t, [a, b], 'load', 20)
  t.equal(onA!.length, 20, 'presence on A: the 20 members')
  t.same(onB, onA, 'presence on B: the same')
  t.same(onA!.map(m => m.name), people.map(p => p.name).sort(), 'every member, by name')

  const [historyA, historyB] = await Promise.all([history(t, a, 'load'), history(t, b, 'load')])
  t.equal(historyA.length, 200, 'history on A: the 200 posts')
  t.same(historyB, historyA, 'history on B: the same messages, in the same order')
  t.same(historyA.map(m => m.text).filter(x => x.startsWith('A')), range('A', 100), 'in each poster\'s order')
  t.same(historyA.map(m => m.text).filter(x => x.startsWith('B')), range('B', 100))
})

/** The bot's answers in `person`'s view (not its welcomes and introduction). */
const answers = (person: Person): ChatMessage[] => person.messages.filter(m => m.author === BOT_NAME && m.text.startsWith('It is '))

t.test('Should answer each post that mentions @bot exactly once with two instances: one bot, by a lease in Redis', async t => {
  const people = await crowd(t, 'general', { A: a, B: b })
  const [onA, onB] = await presenceIs(t, [a, b], 'general', 21)
  t.same(onA!.filter(m => m.bot).map(m => m.name), [BOT_NAME], 'one bot in #general, seen from A')
  t.same(onB, onA, 'the same seen from B')
  t.equal((await oneBot([a, b])).filter(Boolean).length, 1, 'one of the two instances runs the bot')
  const askers = [people[0]!, people[19]!] // one on each instance
  for (let i = 0; i < 3; i++) for (const asker of askers) asker.post(`@bot time ${i}`)
  await until(() => people.every(p => answers(p).length >= 6), 15000)
  // The bot answers 600 ms after a post: wait for a second answer that should not come.
  await new Promise(resolve => setTimeout(resolve, 2000))
  for (const p of people) t.equal(answers(p).length, 6, `${p.name}: 6 answers to 6 posts`)
})

t.test('Should go on when an instance is killed: its people lapse, the bot lives on, a restarted one has the whole history', async t => {
  const people = await crowd(t, 'crash', { A: a, B: b })
  const onA = people.filter(p => p.side === 'A')
  onA[0]!.post('before')
  await until(() => people.every(p => p.texts('before').length === 1), 10000)

  await b.kill()
  await until(() => people.filter(p => p.side === 'B').every(p => p.ended), 10000)
  t.pass('B\'s members lost their sessions')
  for (let i = 0; i < 10; i++) onA[1]!.post(`after${i}`)
  await until(() => onA.every(p => p.texts('after').length === 10), 10000)
  t.pass('A\'s members go on chatting')

  // B said no goodbye: its people's entries lapse once no one renews them.
  const [lapsed] = await presenceIs(t, [a], 'crash', 10, PRESENCE_TTL_MS * 6)
  t.same(lapsed!.map(m => m.name), onA.map(p => p.name).sort(), 'presence on A: only A\'s members, once B\'s entries lapsed')

  // The bot was on A, or it moves there once B's lease lapses: a post before that has no bot to hear it.
  t.same(await oneBot([a]), [true], 'A runs the bot')
  const general = new Person('asker', 'A', 'h2', clientOf(t, a, 'h2'), 'general')
  t.teardown(() => { general.leave() })
  await general.joined
  general.post('@bot time after the crash')
  await until(() => answers(general).length >= 1, 15000)
  await new Promise(resolve => setTimeout(resolve, 2000))
  t.equal(answers(general).length, 1, 'one answer: the bot lived on A, or moved there from B')

  b = await Instance.start(redis.socket, CHAT_INSTANCE)
  const [historyA, historyB] = await Promise.all([history(t, a, 'crash'), history(t, b, 'crash')])
  t.same(historyA.map(m => m.text), ['before', ...range('after', 10)], 'the whole history on A')
  t.same(historyB, historyA, 'and on the restarted B')
  const [presentA, presentB] = await presenceIs(t, [a, b], 'crash', 10)
  t.same(presentB, presentA, 'presence the same on both')
})
