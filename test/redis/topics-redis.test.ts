/**
 * Topics across instances on a real redis-server (unix socket, nothing
 * persisted): two plugin instances in separate processes share topics over
 * the Redis pub/sub bus. Run by `npm run test:redis`.
 *
 * The promise under test (README, Running several instances): every member
 * gets each post at most once, each publisher's posts in order; every post
 * made while both instances are connected reaches every member; members on
 * the publishing instance get its posts even while Redis is down; posts made
 * while an instance's Redis connection is down may be missing there.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { h2Subscriber, until, wsSubscriber, type Received } from '../helpers/fanout-clients.js'
import { TestClient } from '../helpers/test-service.js'
import { webClient } from '../helpers/web-client.js'
import { Instance } from './instances.js'
import { RedisServer } from './redis-server.js'

const redis = new RedisServer()
let a: Instance
let b: Instance
t.before(async () => {
  await redis.start()
  ;[a, b] = await Promise.all([Instance.start(redis.socket), Instance.start(redis.socket)])
})
t.teardown(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()])
  await redis.close()
})

interface Teardown { teardown: (fn: () => unknown) => void }
interface Member { side: 'A' | 'B', transport: 'ws' | 'h2', call: any, received: Received }

/** 5 WebSocket and 5 HTTP/2 members on each instance, subscribed (headers seen: the Redis subscription is in place). */
async function join (t: Teardown, room: string, instances: Record<'A' | 'B', Instance>): Promise<Member[]> {
  const members: Member[] = []
  for (const side of ['A', 'B'] as const) {
    const inst = instances[side]
    const ws = webClient(inst.url)
    const h2 = new TestClient(inst.grpcAddress, grpc.credentials.createInsecure()) as any
    t.teardown(() => { ws.client.close(); h2.close() })
    for (let i = 0; i < 5; i++) members.push({ side, transport: 'ws', ...wsSubscriber(ws.test, { message: room }) })
    for (let i = 0; i < 5; i++) members.push({ side, transport: 'h2', ...h2Subscriber(h2, { message: room }) })
  }
  await Promise.all(members.map(async m => await (m as any).headers))
  return members
}

/** A poster: unary Publish calls to one instance, over HTTP/2. */
function poster (t: Teardown, inst: Instance): (room: string, text: string, deadlineMs?: number) => Promise<void> {
  const client = new TestClient(inst.grpcAddress, grpc.credentials.createInsecure()) as any
  t.teardown(() => { client.close() })
  return async (room, text, deadlineMs = 10000) => {
    await new Promise<void>((resolve, reject) => {
      client.unary({ message: room, details: text }, { deadline: Date.now() + deadlineMs }, (err: Error | null) => { err === null ? resolve() : reject(err) })
    })
  }
}

/** The numbers of `prefix`'s posts a member got, in arrival order. */
const seqOf = (m: Member, prefix: string): number[] => m.received.messages.filter(x => x.startsWith(prefix)).map(x => Number(x.slice(prefix.length)))
const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)
const inOrderOnce = (seq: number[]): boolean => seq.every((n, i) => i === 0 || n > seq[i - 1]!)

t.test('Should give 20 members on two instances every one of 100 posts from each side, once, in order', async t => {
  const members = await join(t, 'room-1', { A: a, B: b })
  const postA = poster(t, a)
  const postB = poster(t, b)
  await Promise.all([
    (async () => { for (let i = 0; i < 100; i++) await postA('room-1', `A${i}`) })(),
    (async () => { for (let i = 0; i < 100; i++) await postB('room-1', `B${i}`) })()
  ])
  await until(() => members.every(m => m.received.messages.length >= 200), 20000)
  await new Promise(resolve => setTimeout(resolve, 100)) // room for a duplicate to show
  for (const m of members) {
    t.same(seqOf(m, 'A'), range(0, 100), `${m.side}/${m.transport}: A's 100 posts, once each, in order`)
    t.same(seqOf(m, 'B'), range(0, 100), `${m.side}/${m.transport}: B's 100 posts, once each, in order`)
    t.equal(m.received.messages.length, 200, 'nothing else')
  }
  const [statsA, statsB] = [await a.stats('room-1'), await b.stats('room-1')]
  t.match(statsA, { subscribers: 10, published: 100, received: 100, dropped: 0 }, 'instance A: one Redis subscription fed its 10 members')
  t.match(statsB, { subscribers: 10, published: 100, received: 100, dropped: 0 })
  for (const m of members) m.call.cancel()
})

t.test('Should keep the promise across a redis-server restart mid-run', async t => {
  const members = await join(t, 'room-2', { A: a, B: b })
  const postA = poster(t, a)
  const postB = poster(t, b)
  for (let i = 0; i < 50; i++) await postA('room-2', `A${i}`)
  await until(() => members.every(m => seqOf(m, 'A').length === 50))

  await redis.stop()
  // Published while Redis is down: A's members get them at once; the Redis
  // publish waits in A's client queue, and reaches B only if B resubscribed first.
  const during = range(50, 60).map(async i => await postA('room-2', `A${i}`, 15000).catch(err => err))
  await until(() => members.filter(m => m.side === 'A').every(m => seqOf(m, 'A').length === 60))
  t.pass('members on the publishing instance got the posts made while Redis was down')

  await redis.start()
  t.same((await Promise.all(during)).filter(x => x instanceof Error), [], 'those publishes completed once Redis was back')
  // Wait until B's subscription is back: probes from A until every B member sees one.
  let probe = 0
  await until(() => {
    if (members.filter(m => m.side === 'B').every(m => m.received.messages.some(x => x.startsWith('probe')))) return true
    if (probe % 20 === 0) void postA('room-2', `probe${probe}`).catch(() => {})
    probe++
    return false
  }, 20000)
  // and A's (probes from B until every A member sees one)
  await until(() => {
    if (members.filter(m => m.side === 'A').every(m => m.received.messages.some(x => x.startsWith('qprobe')))) return true
    if (probe % 20 === 0) void postB('room-2', `qprobe${probe}`).catch(() => {})
    probe++
    return false
  }, 20000)

  await Promise.all([
    (async () => { for (let i = 60; i < 100; i++) await postA('room-2', `A${i}`) })(),
    (async () => { for (let i = 0; i < 40; i++) await postB('room-2', `B${i}`) })()
  ])
  await until(() => members.every(m => seqOf(m, 'A').filter(n => n >= 60).length === 40 && seqOf(m, 'B').length === 40), 20000)
  await new Promise(resolve => setTimeout(resolve, 100))
  for (const m of members) {
    const seqA = seqOf(m, 'A')
    t.ok(inOrderOnce(seqA), `${m.side}/${m.transport}: A's posts in order, none twice`)
    t.same(seqA.filter(n => n < 50 || n >= 60), [...range(0, 50), ...range(60, 100)], 'every post made while connected arrived')
    if (m.side === 'A') t.same(seqA, range(0, 100), 'a member of the publishing instance has every post')
    t.same(seqOf(m, 'B'), range(0, 40), "B's posts after the restart, once each, in order")
  }
  const lostOnB = 10 - seqOf(members.find(m => m.side === 'B')!, 'A').filter(n => n >= 50 && n < 60).length
  t.comment(`posts made during the outage that B's members missed: ${lostOnB} of 10`)
  for (const m of members) m.call.cancel()
})

t.test('Should go on when an instance is killed, and take a new one in', async t => {
  const members = await join(t, 'room-3', { A: a, B: b })
  const postA = poster(t, a)
  for (let i = 0; i < 10; i++) await postA('room-3', `A${i}`)
  await until(() => members.every(m => seqOf(m, 'A').length === 10))

  await b.kill()
  const onB = members.filter(m => m.side === 'B')
  const ends = await Promise.all(onB.map(async m => await m.received.done))
  t.ok(ends.every(e => e !== null && e.code === grpc.status.UNAVAILABLE), "B's members see their calls fail UNAVAILABLE")
  for (let i = 10; i < 20; i++) await postA('room-3', `A${i}`)
  const onA = members.filter(m => m.side === 'A')
  await until(() => onA.every(m => seqOf(m, 'A').length === 20))
  t.ok(onA.every(m => JSON.stringify(seqOf(m, 'A')) === JSON.stringify(range(0, 20))), 'A and its members go on')

  b = await Instance.start(redis.socket)
  const rejoined = (await join(t, 'room-3', { A: a, B: b })).filter(m => m.side === 'B')
  for (let i = 20; i < 30; i++) await postA('room-3', `A${i}`)
  await until(() => rejoined.every(m => seqOf(m, 'A').length === 10))
  t.ok(rejoined.every(m => JSON.stringify(seqOf(m, 'A')) === JSON.stringify(range(20, 30))), 'members of the new instance get what A posts from then on')
  for (const m of [...members, ...rejoined]) m.call.cancel()
})
