/**
 * Topics over both transports with the in-process bus: every subscriber
 * gets every message once and in order, whichever way it came in; a
 * subscriber that never reads stays within its bound and its policy applies,
 * while the others go on; ending a call in any way unsubscribes it.
 */
import * as grpc from '@grpc/grpc-js'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ERR_INVALID_OPTION, ERR_INVALID_TOPIC, ERR_TOPIC_SERIALIZER } from '../../index.js'
import { startFanoutApp, type FanoutApp } from '../helpers/fanout-app.js'
import { TestClient, testDefinition } from '../helpers/test-service.js'
import { webClient } from '../helpers/web-client.js'
import { h2Subscriber, until, wsSubscriber } from '../helpers/fanout-clients.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { FRAME_HEADER_SIZE } from '../../lib/protocol/frame.js'
import { WebsocketTransport, createChannel, createClient, type MethodDefinition } from 'nice-grpc-web'
import type { Request, Response } from '../helpers/test-service.js'

const encode = (text: string): Buffer => Buffer.from(testDefinition.ServerStream!.responseSerialize({ message: text }))

let fx: FanoutApp
t.before(async () => { fx = await startFanoutApp() })
t.teardown(async () => { await fx.close() })

t.test('Should deliver 1,000 messages once and in order to 200 subscribers over WebSocket and HTTP/2', async t => {
  const wsClients = Array.from({ length: 4 }, () => webClient(fx.url))
  const h2Clients = Array.from({ length: 2 }, () => new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any)
  t.teardown(() => { for (const c of wsClients) c.client.close(); for (const c of h2Clients) c.close() })
  const subs = [
    ...Array.from({ length: 100 }, (_, i) => wsSubscriber(wsClients[i % 4]!.test, { message: 'room-a' })),
    ...Array.from({ length: 100 }, (_, i) => h2Subscriber(h2Clients[i % 2], { message: 'room-a' }))
  ]
  await Promise.all(subs.map(async s => await s.headers))
  t.equal(fx.app.grpc.topics.stats('room-a')?.subscribers, 200, 'all 200 subscribed')

  const expected = Array.from({ length: 1000 }, (_, i) => `m${i}`)
  for (let i = 0; i < expected.length; i++) {
    await fx.app.grpc.topics.publish('room-a', { message: expected[i] })
    if (i % 50 === 49) await sleep(1)
  }
  await until(() => subs.every(s => s.received.messages.length >= expected.length), 30000)
  await sleep(50) // a duplicate would have arrived by now
  let exact = 0
  for (const s of subs) if (JSON.stringify(s.received.messages) === JSON.stringify(expected)) exact++
  t.equal(exact, 200, 'every subscriber got exactly m0..m999, in order')
  t.same(fx.app.grpc.topics.stats('room-a'), { subscribers: 200, published: 1000, received: 0, dropped: 0, ended: 0 })

  for (const s of subs) s.call.cancel()
  await until(() => fx.app.grpc.topics.stats('room-a') === undefined)
  t.pass('cancelling every call unsubscribed them all (the topic is gone)')
})

t.test('Should reach subscribers on every way in: grpc-ws.v1 (web client, grpc-js channel), grpc-websockets, HTTP/2', async t => {
  const web = webClient(fx.url)
  const overWs = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(fx.url) }) as any
  const h2 = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any
  const m = testDefinition.ServerStream! as grpc.MethodDefinition<Request, Response>
  const niceServerStream: MethodDefinition<Request, Request, Response, Response, false, true> = {
    path: m.path,
    requestStream: false,
    responseStream: true,
    requestSerialize: value => m.requestSerialize(value),
    requestDeserialize: bytes => m.requestDeserialize(Buffer.from(bytes)),
    responseSerialize: value => m.responseSerialize(value),
    responseDeserialize: bytes => m.responseDeserialize(Buffer.from(bytes)),
    options: {}
  }
  const nice = createClient({ serverStream: niceServerStream }, createChannel(fx.url.replace('ws://', 'http://'), WebsocketTransport()))
  const abort = new AbortController()
  t.teardown(() => { web.client.close(); overWs.close(); h2.close(); abort.abort() })

  const niceGot: string[] = []
  let niceHeaders!: () => void
  const niceReady = new Promise<void>(resolve => { niceHeaders = resolve })
  const niceDone = (async () => {
    try {
      for await (const r of nice.serverStream({ message: 'every-way' }, { signal: abort.signal, onHeader: () => { niceHeaders() } })) niceGot.push(r.message)
    } catch {}
  })()
  const subs = [wsSubscriber(web.test, { message: 'every-way' }), h2Subscriber(overWs, { message: 'every-way' }), h2Subscriber(h2, { message: 'every-way' })]
  await Promise.all([niceReady, ...subs.map(async s => await s.headers)])
  const expected = Array.from({ length: 50 }, (_, i) => `e${i}`)
  for (const message of expected) await fx.app.grpc.topics.publish('every-way', { message })
  await until(() => niceGot.length === 50 && subs.every(s => s.received.messages.length === 50))
  t.same(niceGot, expected, 'grpc-websockets (nice-grpc-web)')
  t.same(subs[0]!.received.messages, expected, 'grpc-ws.v1 (the web client)')
  t.same(subs[1]!.received.messages, expected, 'grpc-ws.v1 (stock grpc-js client over createWebSocketChannel)')
  t.same(subs[2]!.received.messages, expected, 'HTTP/2 (stock grpc-js client)')
  abort.abort()
  for (const s of subs) s.call.cancel()
  await niceDone
  await until(() => fx.app.grpc.topics.stats('every-way') === undefined)
})

t.test('Should write the publish\'s encoded bytes as they are (bidi subscribers, publishEncoded, topic handles)', async t => {
  const { client, test } = webClient(fx.url)
  const h2 = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any
  t.teardown(() => { client.close(); h2.close() })
  const wsBidi = test.bidi()
  await wsBidi.send({ message: 'room-b' })
  const h2Bidi = h2.bidi()
  h2Bidi.write({ message: 'room-b' })
  await Promise.all([wsBidi.headers, once(h2Bidi, 'metadata')])
  const h2Got: string[] = []
  h2Bidi.on('data', (r: any) => { h2Got.push(r.message) })
  // published by the bidi handler from a request, by bytes, and through a typed handle
  await wsBidi.send({ message: 'room-b', details: 'from a request' })
  await until(() => h2Got.length === 1)
  await fx.app.grpc.topics.publishEncoded('room-b', encode('pre-encoded'))
  const topic = fx.app.grpc.topics.topic<{ message: string }>('room-b')
  await topic.publish({ message: 'via handle' })
  await until(() => h2Got.length === 3)
  const wsGot: string[] = []
  for await (const r of wsBidi) {
    wsGot.push(r.message)
    if (wsGot.length === 3) break
  }
  t.same(wsGot, ['from a request', 'pre-encoded', 'via handle'])
  t.same(h2Got, ['from a request', 'pre-encoded', 'via handle'])
  t.equal(topic.stats().published, 3)
  h2Bidi.end()
  wsBidi.close()
  await until(() => topic.stats().subscribers === 0)
  t.equal(topic.stats().subscribers, 0, 'half-closing ends the bidi calls, which unsubscribes them')
  t.ok(fx.app.grpc.topics.names.includes('room-b'), 'a topic() handle keeps its topic (and counts) with no subscriber')
})

for (const overflow of ['drop-oldest', 'drop-newest', 'end'] as const) {
  t.test(`Should bound a subscriber that never reads, apply '${overflow}', and not slow the others`, async t => {
    const topic = `slow-${overflow}`
    const { client, test } = webClient(fx.url)
    const h2 = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any
    // Its own HTTP/2 connection: a paused stream's unread data holds the
    // connection's flow-control window too, which would stall any other
    // stream of that connection (the slow subscriber is another client).
    const h2SlowClient = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as any
    t.teardown(() => { client.close(); h2.close(); h2SlowClient.close() })
    const limits = { mode: overflow, count: 20, size: 16 * 1024 }
    // Never read: the WebSocket call returns no window credit (beside a reading
    // call on the same socket), the HTTP/2 call is paused.
    const wsSlow = test.serverStream({ message: topic, id: `${topic}-ws`, ...limits })
    const h2Slow = h2SlowClient.serverStream({ message: topic, id: `${topic}-h2`, ...limits })
    h2Slow.pause()
    const h2SlowError = new Promise<any>(resolve => { h2Slow.on('error', resolve); h2Slow.on('end', () => { resolve(null) }) })
    const fast = [wsSubscriber(test, { message: topic }), h2Subscriber(h2, { message: topic })]
    await Promise.all([wsSlow.headers, once(h2Slow, 'metadata'), ...fast.map(async s => await s.headers)])
    const slowSubs = [fx.subscriptions.get(`${topic}-ws`)!, fx.subscriptions.get(`${topic}-h2`)!]

    const payload = Buffer.alloc(1024, 1)
    const count = 600 // 600 KiB: far past both transports' windows and the queue bound
    let maxQueued = 0
    let maxBytes = 0
    for (let i = 0; i < count; i++) {
      await fx.app.grpc.topics.publish(topic, { message: `m${i}`, payload })
      for (const s of slowSubs) {
        maxQueued = Math.max(maxQueued, s.queued)
        maxBytes = Math.max(maxBytes, s.queuedBytes)
      }
      // Paced by the readers (at most 100 behind), as a publisher that is not
      // faster than its healthy subscribers: only the never-reading ones overflow.
      if (i % 20 === 19) await until(() => fast.every(s => s.received.messages.length >= i - 100))
    }
    await until(() => fast.every(s => s.received.messages.length === count), 15000)
      .catch(err => { t.comment(`fast subscribers got ${fast.map(s => s.received.messages.length).join(', ')}; ${JSON.stringify(fx.app.grpc.topics.stats(topic))}`); throw err })
    t.ok(fast.every(s => s.received.messages.every((m, i) => m === `m${i}`)), 'the reading subscribers (WebSocket and HTTP/2) got all 600, in order')
    t.ok(maxQueued <= 20 && maxBytes <= 16 * 1024, `the never-reading subscribers' queues stayed within 20 messages and 16 KiB (max ${maxQueued} / ${maxBytes} B)`)
    const stats = fx.app.grpc.topics.stats(topic)!
    t.ok(stats.dropped > 0, `drops are counted on the topic (${stats.dropped})`)
    t.equal(slowSubs[0]!.dropped + slowSubs[1]!.dropped, stats.dropped, 'and per subscription')

    if (overflow === 'end') {
      t.equal(stats.ended, 2, 'both never-reading subscribers were ended')
      t.notOk(slowSubs[0]!.active || slowSubs[1]!.active, 'and unsubscribed')
      const wsError = await (async () => { try { for await (const _ of wsSlow) { /* drain */ } } catch (err) { return err } })() as any
      t.equal(wsError?.code, grpc.status.RESOURCE_EXHAUSTED, 'the WebSocket subscriber sees RESOURCE_EXHAUSTED')
      h2Slow.on('data', () => {})
      h2Slow.resume()
      const h2Error = await h2SlowError
      t.equal(h2Error?.code, grpc.status.RESOURCE_EXHAUSTED, 'the HTTP/2 subscriber sees RESOURCE_EXHAUSTED once it reads again')
    } else {
      t.equal(stats.ended, 0)
      t.ok(slowSubs.every(s => s.active), 'the never-reading subscribers stay subscribed')
      // Read again: what is left arrives in order, ending with the latest under drop-oldest.
      const got: string[] = []
      h2Slow.on('data', (r: any) => { got.push(r.message) })
      h2Slow.resume()
      await until(() => slowSubs[1]!.queued === 0 && got.length > 0)
      await sleep(50)
      const seq = got.map(m => Number(m.slice(1)))
      t.ok(seq.every((n, i) => i === 0 || n > seq[i - 1]!), 'in order, without duplicates')
      t.ok(seq.length < count, `some were dropped (${count - seq.length})`)
      if (overflow === 'drop-oldest') t.equal(seq.at(-1), count - 1, 'drop-oldest keeps the latest')
      wsSlow.cancel()
      h2Slow.cancel()
    }
    for (const s of fast) s.call.cancel()
    await until(() => fx.app.grpc.topics.stats(topic) === undefined)
  })
}

t.test('Should put a publish to many WebSocket subscribers on the wire as it goes, every 256 subscribers, one batch per socket; HTTP/2 subscribers among them get it all the same', async t => {
  const topic = 'early-sends'
  // The server's side of each client's socket, in the order the clients connect.
  const sockets: Socket[] = []
  const onConnection = (socket: Socket): void => { sockets.push(socket) }
  fx.app.server.on('connection', onConnection)
  t.teardown(() => { fx.app.server.off('connection', onConnection) })
  // Subscribed one client after the other, so the topic's order is A's 100, B's, C's, D's:
  // the first 256 are A's, B's and 56 of C's.
  const clients: Array<ReturnType<typeof webClient>> = []
  const subs: Array<ReturnType<typeof wsSubscriber>> = []
  for (let c = 0; c < 4; c++) {
    const client = webClient(fx.url)
    clients.push(client)
    const mine = Array.from({ length: 100 }, () => wsSubscriber(client.test, { message: topic }))
    await Promise.all(mine.map(async s => await s.headers))
    subs.push(...mine)
  }
  // Then 100 over HTTP/2 (grpcServer, not this server's sockets), past the 400th: the same publishes reach them.
  const h2 = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any
  const h2Subs = Array.from({ length: 100 }, () => h2Subscriber(h2, { message: topic }))
  await Promise.all(h2Subs.map(async s => await s.headers))
  t.teardown(() => { for (const c of clients) c.client.close(); h2.close() })
  t.equal(fx.app.grpc.topics.stats(topic)?.subscribers, 500, 'all 500 subscribed')
  t.equal(sockets.length, 4, 'one socket per client')
  await sleep(20) // settled: nothing more in flight on the sockets
  const written = (): number[] => sockets.map(s => s.bytesWritten)
  // One WebSocket message of n MESSAGE frames of `text`: 4 bytes of header from 126 bytes on.
  const message = (n: number, text: string): number => 4 + n * (FRAME_HEADER_SIZE + encode(text).byteLength)

  const before = written()
  void fx.app.grpc.topics.publish(topic, { message: 'one' })
  const onReturn = written()
  t.same([0, 1].map(i => onReturn[i]! - before[i]!), [message(100, 'one'), message(100, 'one')], 'A and B (all in the first 256) were written before publish() returned, each as one message')
  t.equal(onReturn[2]! - before[2]!, message(56, 'one'), "C's 56 among the first 256 too")
  t.equal(onReturn[3], before[3], 'D (all after the 256th) was not: it goes at the end of the turn')
  await sleep(0)
  const afterTurn = written()
  t.same([0, 1].map(i => afterTurn[i]! - onReturn[i]!), [0, 0], 'A and B had everything at once')
  t.equal(afterTurn[2]! - onReturn[2]!, message(44, 'one'), "C's other 44 went at the end of the turn")
  t.equal(afterTurn[3]! - onReturn[3]!, message(100, 'one'), 'D went at the end of the turn')

  // A burst in one turn: only the first publish sends early; the rest still leave as one batch per socket.
  const texts = Array.from({ length: 20 }, (_, i) => `b${String(i).padStart(2, '0')}`)
  const burstBefore = written()
  for (const text of texts) void fx.app.grpc.topics.publish(topic, { message: text })
  const burstOnReturn = written()
  t.equal(burstOnReturn[0]! - burstBefore[0]!, message(100, 'b00'), 'only the first publish of the burst went early')
  await sleep(0)
  const burstAfter = written()
  t.equal(burstAfter[0]! - burstOnReturn[0]!, message(19 * 100, 'b01'), "the burst's other 19 left in one message on A")

  const expected = ['one', ...texts]
  const all = [...subs, ...h2Subs]
  await until(() => all.every(s => s.received.messages.length >= expected.length))
  await sleep(20)
  const exact = (list: typeof all): number => list.filter(s => JSON.stringify(s.received.messages) === JSON.stringify(expected)).length
  t.equal(exact(subs), 400, 'every WebSocket subscriber got every message once, in order')
  t.equal(exact(h2Subs), 100, 'every HTTP/2 subscriber too')
  for (const s of all) s.call.cancel()
  await until(() => fx.app.grpc.topics.stats(topic) === undefined)
})

t.test('Should leave nothing behind after 1,000 churned subscribers (cancel, disconnect, unsubscribe)', async t => {
  const h2 = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any
  t.teardown(() => { h2.close() })
  const topics = fx.app.grpc.topics
  const heapBefore = process.memoryUsage().heapUsed
  for (let round = 0; round < 10; round++) {
    const { client, test } = webClient(fx.url)
    const batch = [
      ...Array.from({ length: 50 }, (_, i) => wsSubscriber(test, { message: `churn-${i % 5}`, id: `churn-ws-${i}` })),
      ...Array.from({ length: 50 }, (_, i) => h2Subscriber(h2, { message: `churn-${i % 5}`, id: `churn-h2-${i}` }))
    ]
    await Promise.all(batch.map(async s => await s.headers))
    await topics.publish('churn-0', { message: `round ${round}` })
    await until(() => batch.filter((_, i) => i % 5 === 0).every(s => s.received.messages.length === 1))
    // ws: half cancelled, half dropped with the socket; h2: cancelled, or unsubscribed by the server
    for (let i = 0; i < 25; i++) batch[i]!.call.cancel()
    client.close()
    for (let i = 50; i < 75; i++) batch[i]!.call.cancel()
    for (let i = 25; i < 50; i++) fx.subscriptions.get(`churn-h2-${i}`)!.unsubscribe()
    for (let i = 75; i < 100; i++) batch[i]!.call.cancel()
    await until(() => topics.names.every(n => !n.startsWith('churn-')))
  }
  fx.subscriptions.clear()
  t.same(topics.names.filter(n => n.startsWith('churn-')), [], 'no topic left after 1,000 subscribers came and went')
  global.gc?.()
  t.ok(process.memoryUsage().heapUsed - heapBefore < 50 * 1024 * 1024, 'no runaway heap')
})

t.test('Should refuse bad use with coded errors', async t => {
  const topics = fx.app.grpc.topics
  t.throws(() => topics.subscribe('', {} as any), ERR_INVALID_TOPIC)
  t.throws(() => topics.subscribe('x', { write: 1 } as any), ERR_INVALID_TOPIC)
  t.throws(() => topics.topic('x', { serialize: 'no' as any }), ERR_INVALID_TOPIC)
  await t.rejects(topics.publish('', {}), ERR_INVALID_TOPIC)
  await t.rejects(topics.publishEncoded('x', 'text' as any), ERR_INVALID_TOPIC)
  await t.resolves(topics.publish('nobody-here', { message: 'x' }), 'a publish with no subscriber anywhere is a no-op on the in-process bus')
  t.type(ERR_TOPIC_SERIALIZER, 'function')
  const { client, test } = webClient(fx.url)
  t.teardown(() => { client.close() })
  const bad = test.serverStream({ message: 'bad-opts', mode: 'sometimes' })
  const err = await (async () => { try { for await (const _ of bad) { /* none */ } } catch (e) { return e } })() as any
  t.ok(err !== undefined, 'an invalid overflow fails the subscribing call')
  await t.rejects(startFanoutApp({ topics: { overflow: 'never' as any } }), ERR_INVALID_OPTION, 'a bad topics option fails register')
  await t.rejects(startFanoutApp({ topics: { maxQueueBytes: 0 } }), ERR_INVALID_OPTION)
  await t.rejects(startFanoutApp({ topics: { bus: {} as any } }), ERR_INVALID_OPTION)
  await t.rejects(startFanoutApp({ topics: { maxQueueMessage: 5 } as any }), { code: 'FST_GRPCWS_INVALID_OPTION', message: /topics\.maxQueueMessage/ }, 'a misspelt topics option is refused')
})
