/**
 * Well-formed but abusive peers on the grpc-ws.v1 route: rapid reset (CALL
 * then CANCEL in a loop), floods of refused or malformed CALLs, and a peer
 * that sends PINGs, WebSocket pings or CALLs to refuse without ever reading
 * the answers.
 * Each ends, or is held to a bounded backlog, without costing a
 * well-behaved client on another connection any of its calls.
 */
import websocket from '@fastify/websocket'
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import http2 from 'node:http2'
import type { Socket } from 'node:net'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { FrameDecoder, FrameFlags, FrameType, SUBPROTOCOL, encodeFrame } from '../../lib/protocol/frame.js'
import { NO_TIMEOUT, buildCall, buildEmpty, buildPing, parseGoAway, parseTrailers } from '../../lib/protocol/payload.js'
import { bounded } from '../helpers/bounded.js'
import { startEnv, unary, type Env } from '../helpers/parity.js'
import { startPluginApp, type PluginApp } from '../helpers/plugin-app.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { TestClient } from '../helpers/test-service.js'

const UNARY = '/test.Test/Unary'

function callFrame (streamId: number, path = UNARY): Uint8Array {
  return buildCall(streamId, { path, timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] })
}

const tick = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

async function app (t: Test, options: Partial<FastifyGrpcWsOptions>): Promise<PluginApp> {
  const started = await startPluginApp(options)
  t.teardown(async () => {
    for (const socket of started.app.websocketServer.clients) socket.terminate()
    await started.app.close()
  })
  return started
}

/** The server's side of the one connection open on `app`. */
function serverSocket (app: PluginApp): WebSocket {
  const [socket] = app.app.websocketServer.clients
  if (socket === undefined) throw new Error('no connection on the server')
  return socket
}

/** `count` sequential unary echo calls from a client on a channel of its own: how many succeeded. */
async function canary (client: any, count: number): Promise<number> {
  let ok = 0
  for (let i = 0; i < count; i++) {
    const { value } = await unary(client, { mode: 'echo', message: `canary ${i}` }, new grpc.Metadata(), { deadline: Date.now() + 5000 })
    if (value.message === `canary ${i}`) ok++
  }
  return ok
}

/** The GOAWAY a raw peer received, if any. */
function goAwayOf (peer: RawPeer): { lastStreamId: number, reason: string } | undefined {
  const frame = peer.frames.find(f => f.type === FrameType.GOAWAY)
  return frame === undefined ? undefined : parseGoAway(frame.payload)
}

// --- rapid reset, on both transports ------------------------------------------

/** CALL and CANCEL, 50 pairs per WebSocket message, until the server closes (at most 5,000 pairs). */
interface Attack { goAway: boolean, closed: boolean, streams: number, peer?: RawPeer }

async function rapidResetWebSocket (env: Env): Promise<Attack> {
  const peer = await new RawPeer(env.wsUrl).open()
  let id = 1
  for (let round = 0; round < 100 && peer.closeCode === null; round++) {
    const frames: Uint8Array[] = []
    for (let i = 0; i < 50; i++, id += 2) frames.push(callFrame(id), buildEmpty(FrameType.CANCEL, id))
    peer.send(...frames)
    await tick()
  }
  await peer.closed(5000)
  peer.close()
  return { goAway: goAwayOf(peer) !== undefined, closed: peer.closeCode !== null, streams: (id - 1) / 2, peer }
}

/** The same over HTTP/2: a request, at once reset with CANCEL, until the server sends GOAWAY (at most 5,000). */
async function rapidResetHttp2 (env: Env): Promise<Attack> {
  const session = http2.connect(`http://${env.http2Address}`)
  session.on('error', () => {})
  let goAway = false
  let closed = false
  session.on('goaway', () => { goAway = true })
  session.on('close', () => { closed = true })
  await bounded('the HTTP/2 session to connect', new Promise(resolve => session.once('connect', resolve)))
  let streams = 0
  for (let round = 0; round < 100 && !goAway && !closed; round++) {
    for (let i = 0; i < 50 && !session.closed && !session.destroyed; i++, streams++) {
      const request = session.request({ ':method': 'POST', ':path': UNARY, 'content-type': 'application/grpc', te: 'trailers' })
      request.on('error', () => {})
      request.close(http2.constants.NGHTTP2_CANCEL)
    }
    await tick()
  }
  await bounded('the HTTP/2 session to close', new Promise<void>(resolve => {
    if (closed) resolve()
    else session.once('close', () => { resolve() })
    session.destroy()
  }))
  return { goAway, closed, streams }
}

const env = await startEnv(t)

for (const transport of env.transports) {
  t.test(`rapid reset: the attacking connection gets GOAWAY and is closed; a client on another connection completes every call [${transport.name}]`, async t => {
    const client = transport.newClient()
    await unary(client, { mode: 'echo' })
    const [attack, served]: [Attack, number] = await Promise.all([
      transport.name === 'http2' ? rapidResetHttp2(env) : rapidResetWebSocket(env),
      canary(client, 30)
    ])
    t.ok(attack.goAway, `GOAWAY after ${attack.streams} streams opened and reset`)
    t.ok(attack.closed, 'the connection is closed')
    t.ok(attack.streams < 5000, 'long before the attack ran out')
    t.equal(served, 30, 'the other connection completed all 30 calls meanwhile')
    if (attack.peer !== undefined) {
      const goAway = goAwayOf(attack.peer)!
      t.equal(goAway.reason, 'too many stream resets')
      t.equal(attack.peer.closeCode, 1008, 'closed with POLICY_VIOLATION')
      t.equal(attack.peer.closeReason, 'too many stream resets')
      // The budget is 1,000 at once plus 33 a second: about 1,000 streams, and no more than twice that.
      const seen = (goAway.lastStreamId + 1) / 2
      t.ok(seen > 1000 && seen < 2000, `the server saw ${seen} streams (burst 1000)`)
      t.ok(attack.peer.frames.every(f => f.type !== FrameType.TRAILERS), 'cancelled streams got no answer')
    }
  })
}

t.test('a client cancelling at a modest rate is never closed; a burst beyond the budget is', async t => {
  const { url } = await app(t, { resetRateLimit: { burst: 5, perSecond: 100 } })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  // One cancel, its PING round trip, then at least 20 ms: never faster than 50 a second.
  let id = 1
  let roundTrips = 0
  for (let i = 0; i < 30; i++, id += 2) {
    const data = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, i)
    peer.send(callFrame(id), buildEmpty(FrameType.CANCEL, id), buildPing(0, data))
    if (await peer.until(frames => frames.some(f => f.type === FrameType.PING && f.payload[7] === i))) roundTrips++
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  t.equal(roundTrips, 30, 'every cancel was followed by its PING round trip')
  t.equal(peer.closeCode, null, 'still open after 30 cancels at a modest rate')
  t.equal(goAwayOf(peer), undefined, 'no GOAWAY')
  const burst: Uint8Array[] = []
  for (let i = 0; i < 10; i++, id += 2) burst.push(callFrame(id), buildEmpty(FrameType.CANCEL, id))
  peer.send(...burst)
  t.equal(await peer.closed(), 1008, '10 at once, beyond a burst of 5, close it')
  t.equal(goAwayOf(peer)?.reason, 'too many stream resets')
})

t.test('refused CALLs spend the reset budget too: GOAWAY, then close 1008', async t => {
  const { url } = await app(t, { resetRateLimit: { burst: 20, perSecond: 1 } })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  const frames: Uint8Array[] = []
  for (let id = 1; id < 100; id += 2) frames.push(callFrame(id, '/no.Such/Method'))
  peer.send(...frames)
  t.equal(await peer.closed(), 1008)
  t.equal(peer.closeReason, 'too many stream resets')
  const refused = peer.frames.filter(f => f.type === FrameType.TRAILERS)
  t.ok(refused.length >= 20 && refused.length <= 22, `${refused.length} CALLs refused with UNIMPLEMENTED first`)
  const goAway = goAwayOf(peer)!
  t.equal(goAway.reason, 'too many stream resets')
  t.equal(goAway.lastStreamId, refused.at(-1)!.streamId, 'GOAWAY names the CALL that spent the budget (refused too)')
  t.ok(peer.frames.indexOf(peer.frames.find(f => f.type === FrameType.GOAWAY)!) === peer.frames.length - 1, 'GOAWAY is the last frame')
})

t.test('malformed CALLs spend the protocol-error budget: GOAWAY, then close 1008; another connection is unaffected', async t => {
  const { url } = await app(t, {})
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => { client.close() })
  await unary(client, { mode: 'echo' })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  const frames: Uint8Array[] = []
  // Three bytes: the timeout is cut short.
  for (let id = 1; id < 400; id += 2) frames.push(encodeFrame(FrameType.CALL, 0, id, Uint8Array.of(0, 0, 0)))
  peer.send(...frames)
  t.equal(await peer.closed(), 1008)
  t.equal(peer.closeReason, 'too many protocol errors')
  t.equal(goAwayOf(peer)?.reason, 'too many protocol errors')
  const refused = peer.frames.filter(f => f.type === FrameType.TRAILERS).length
  t.ok(refused >= 100 && refused <= 102, `${refused} malformed CALLs answered first (burst 100)`)
  const { value } = await unary(client, { mode: 'echo', message: 'unaffected' })
  t.equal(value.message, 'unaffected', 'the other connection still serves calls')
})

t.test('resetRateLimit: false and errorRateLimit: false turn the budgets off', async t => {
  const { url } = await app(t, { resetRateLimit: false, errorRateLimit: false })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  const frames: Uint8Array[] = []
  let id = 1
  for (let i = 0; i < 1500; i++, id += 2) frames.push(callFrame(id), buildEmpty(FrameType.CANCEL, id))
  for (let i = 0; i < 200; i++, id += 2) frames.push(encodeFrame(FrameType.CALL, 0, id, Uint8Array.of(0, 0, 0)))
  frames.push(buildPing(0, new Uint8Array(8)))
  for (let at = 0; at < frames.length; at += 500) peer.send(...frames.slice(at, at + 500))
  t.ok(await peer.until(f => f.some(frame => frame.type === FrameType.PING)), 'all of it handled')
  t.equal(peer.closeCode, null, 'still open')
})

// --- a peer that never reads ---------------------------------------------------------

/**
 * A grpc-ws.v1 client that never reads: its socket is paused from the start.
 * It sends `message` until its own socket backs up (the server stopped
 * reading) or `maxMessages` are out, and tracks the most the server's socket
 * had buffered.
 */
async function floodWithoutReading (app: PluginApp, message: Uint8Array, maxMessages: number): Promise<{ sent: number, serverMost: number, clientBackedUp: boolean, client: WebSocket, server: WebSocket }> {
  const client = new WebSocket(app.url, [SUBPROTOCOL])
  client.on('error', () => {})
  await bounded('the socket to open', new Promise(resolve => client.once('open', resolve)))
  const net = (client as unknown as { _socket: Socket })._socket
  net.pause()
  const server = serverSocket(app)
  let serverMost = 0
  let sent = 0
  const started = Date.now()
  // Bounded in count and in time.
  while (sent < maxMessages && Date.now() - started < 20000 && client.readyState === WebSocket.OPEN) {
    for (let i = 0; i < 20; i++, sent++) client.send(message)
    await tick()
    serverMost = Math.max(serverMost, server.bufferedAmount)
    if (client.bufferedAmount > 4 * 1024 * 1024) {
      // The server no longer reads (its own socket backed up): what is sent stays here.
      if (server.bufferedAmount > 0 || serverMost > backlogOptions.socketHighWaterMark) break
      // Or it still reads, at its share of each turn: wait for it.
      await new Promise(resolve => setTimeout(resolve, 5))
    }
  }
  for (let i = 0; i < 20; i++) {
    await new Promise(resolve => setTimeout(resolve, 10))
    serverMost = Math.max(serverMost, server.bufferedAmount)
  }
  return { sent, serverMost, clientBackedUp: client.bufferedAmount > 4 * 1024 * 1024, client, server }
}

/** Reads the socket again and counts the frames of `type` until `count` arrived (bounded). */
async function readAgain (client: WebSocket, type: number, count: number): Promise<number> {
  const decoder = new FrameDecoder(0x7fffffff)
  let seen = 0
  await bounded(`${count} frames`, new Promise<void>(resolve => {
    client.on('message', (data: Buffer) => {
      for (const frame of decoder.push(data)) if (frame.type === type) seen++
      if (seen >= count) resolve()
    })
    ;(client as unknown as { _socket: Socket })._socket.resume()
  }), 30000).catch(() => {})
  return seen
}

const backlogOptions = { socketHighWaterMark: 64 * 1024, maxFrameSize: 64 * 1024, pingInterval: 0 }
// The limit, plus the answers to what the server had read when it stopped:
// one socket read (64 KiB at most) and the rest of a message begun before it.
const backlogBound = backlogOptions.socketHighWaterMark + backlogOptions.maxFrameSize + 64 * 1024 + backlogOptions.maxFrameSize
// 1,000 PINGs per WebSocket message.
const PINGS = 1000
const pings = Buffer.concat(Array.from({ length: PINGS }, (_, i) => buildPing(0, Uint8Array.of(0, 0, 0, 0, 0, 0, i >> 8, i & 0xff))))

t.test('a peer sending PINGs and never reading: the server stops reading it at a bounded backlog, keepalive off, and answers every PING once it reads', async t => {
  const target = await app(t, backlogOptions)
  const flood = await floodWithoutReading(target, pings, 10000)
  t.teardown(() => { flood.client.terminate() })
  t.ok(flood.clientBackedUp, `the server stopped reading (after ${flood.sent} messages, ${flood.sent * PINGS} PINGs)`)
  t.ok(flood.serverMost > backlogOptions.socketHighWaterMark, `the server's socket did back up (${flood.serverMost} bytes)`)
  t.ok(flood.serverMost <= backlogBound, `the server buffered ${flood.serverMost} bytes at most (bound ${backlogBound})`)
  t.equal(flood.client.readyState, WebSocket.OPEN, 'the connection stays open')
  const answered = await readAgain(flood.client, FrameType.PING, flood.sent * PINGS)
  t.equal(answered, flood.sent * PINGS, 'once read again, every PING got its ACK')
})

t.test('a peer sending CALLs the server refuses, never reading: the backlog stays bounded too', async t => {
  const target = await app(t, { ...backlogOptions, resetRateLimit: false })
  let id = 1
  // Each message: 500 CALLs for a method that does not exist, with ever higher ids.
  const CALLS = 500
  const message = (): Uint8Array => {
    const frames: Uint8Array[] = []
    for (let i = 0; i < CALLS; i++, id += 2) frames.push(callFrame(id, '/no.Such/Method'))
    return Buffer.concat(frames)
  }
  const client = new WebSocket(target.url, [SUBPROTOCOL])
  client.on('error', () => {})
  await bounded('the socket to open', new Promise(resolve => client.once('open', resolve)))
  t.teardown(() => { client.terminate() })
  ;(client as unknown as { _socket: Socket })._socket.pause()
  const server = serverSocket(target)
  let most = 0
  let sent = 0
  const started = Date.now()
  while (sent < 4000 && Date.now() - started < 20000 && client.bufferedAmount <= 4 * 1024 * 1024) {
    for (let i = 0; i < 20; i++, sent++) client.send(message())
    await tick()
    most = Math.max(most, server.bufferedAmount)
  }
  // A refusal is about twice its CALL: twice what was read when reading stopped.
  const bound = backlogOptions.socketHighWaterMark + backlogOptions.maxFrameSize + 2 * (64 * 1024 + backlogOptions.maxFrameSize)
  t.ok(client.bufferedAmount > 4 * 1024 * 1024, `the server stopped reading (after ${sent * CALLS} CALLs)`)
  t.ok(most <= bound, `the server buffered ${most} bytes at most (bound ${bound})`)
  const refused = await readAgain(client, FrameType.TRAILERS, sent * CALLS)
  t.equal(refused, sent * CALLS, 'once read again, every CALL got its refusal')
})

t.test('a peer flooding PINGs that never reads is still cut off by the ping timeout, with a bounded backlog meanwhile', async t => {
  const target = await app(t, { ...backlogOptions, pingInterval: 500, pingTimeout: 1000 })
  const flood = await floodWithoutReading(target, pings, 10000)
  t.teardown(() => { flood.client.terminate() })
  if (flood.server.readyState !== WebSocket.CLOSED) {
    await bounded('the server to cut the connection off', new Promise(resolve => flood.server.once('close', resolve)), 10000)
  }
  t.pass('the server cut the connection off')
  t.ok(flood.serverMost <= backlogBound, `meanwhile the server buffered ${flood.serverMost} bytes at most`)
})

for (const route of ['grpc-ws.v1', 'grpc-websockets'] as const) {
t.test(`a peer flooding WebSocket pings and never reading: bounded too, where ws itself does not cut it off [${route}]`, async t => {
  // ws cuts a peer off with 60 pongs pending by default; an app's own
  // @fastify/websocket may turn that off.
  const target = await startPluginApp(backlogOptions, {
    setup: app => { void app.register(websocket, { options: { maxPendingAutoPongs: 0 } as object }) }
  })
  t.teardown(async () => {
    for (const socket of target.app.websocketServer.clients) socket.terminate()
    await target.app.close()
  })
  const client = route === 'grpc-ws.v1' ? new WebSocket(target.url, [SUBPROTOCOL]) : new WebSocket(`${target.url}/test.Test/Bidi`, ['grpc-websockets'])
  client.on('error', () => {})
  await bounded('the socket to open', new Promise(resolve => client.once('open', resolve)))
  t.teardown(() => { client.terminate() })
  const net = (client as unknown as { _socket: Socket })._socket
  net.pause()
  // 1,000 masked ping frames (mask 0: the payload as is), 125 bytes each, written raw.
  const one = Buffer.concat([Buffer.from([0x89, 0x80 | 125, 0, 0, 0, 0]), Buffer.alloc(125, 7)])
  const burst = Buffer.concat(Array.from({ length: 1000 }, () => one))
  const server = serverSocket(target)
  let most = 0
  let sent = 0
  let stalled = false
  const started = Date.now()
  // Up to 80 MB, bounded in time; past 4 MB unsent here, a drain that does
  // not come within a second means the server stopped reading.
  while (sent < 600 && Date.now() - started < 20000 && server.readyState === WebSocket.OPEN) {
    for (let i = 0; i < 5; i++, sent++) net.write(burst)
    await tick()
    most = Math.max(most, server.bufferedAmount)
    if (net.writableLength > 4 * 1024 * 1024) {
      const drained = await new Promise<boolean>(resolve => {
        const timer = setTimeout(() => { net.off('drain', onDrain); resolve(false) }, 1000)
        function onDrain (): void { clearTimeout(timer); resolve(true) }
        net.once('drain', onDrain)
      })
      most = Math.max(most, server.bufferedAmount)
      if (!drained) { stalled = true; break }
    }
  }
  t.equal(server.readyState, WebSocket.OPEN, 'ws did not cut it off (maxPendingAutoPongs: 0)')
  t.ok(stalled, `the server stopped reading (after ${sent * 1000} pings)`)
  t.ok(most > backlogOptions.socketHighWaterMark, `the server's socket did back up (${most} bytes)`)
  t.ok(most <= backlogBound, `the server buffered ${most} bytes at most (bound ${backlogBound})`)
})
}

// --- options ---------------------------------------------------------------------

t.test('bad resetRateLimit, errorRateLimit and maxConnectionsPerPeer reject register with FST_GRPCWS_INVALID_OPTION', async t => {
  const cases: Array<[Partial<FastifyGrpcWsOptions>, RegExp]> = [
    [{ resetRateLimit: { burst: 0 } }, /"resetRateLimit\.burst"/],
    [{ resetRateLimit: { burst: 1.5 } }, /"resetRateLimit\.burst"/],
    [{ resetRateLimit: { perSecond: -1 } }, /"resetRateLimit\.perSecond"/],
    [{ resetRateLimit: { perSecond: Infinity } }, /"resetRateLimit\.perSecond"/],
    [{ resetRateLimit: true as unknown as false }, /"resetRateLimit"/],
    [{ errorRateLimit: 5 as unknown as false }, /"errorRateLimit"/],
    [{ errorRateLimit: { burst: '1' as unknown as number } }, /"errorRateLimit\.burst"/],
    [{ maxConnectionsPerPeer: -1 }, /"maxConnectionsPerPeer"/]
  ]
  for (const [options, message] of cases) {
    const fastify = Fastify()
    await t.rejects(async () => { await fastify.register(fastifyGrpcWs, options).ready() }, { code: 'FST_GRPCWS_INVALID_OPTION', message }, JSON.stringify(options))
    await fastify.close()
  }
  const fastify = Fastify()
  await fastify.register(fastifyGrpcWs, { resetRateLimit: { burst: 10 }, errorRateLimit: { perSecond: 0.5 }, maxConnectionsPerPeer: 3 })
  await fastify.ready()
  t.pass('partial limits take the defaults for what they leave out')
  await fastify.close()
})

t.test('a frame after one that spent a budget is not handled', async t => {
  const { url } = await app(t, { errorRateLimit: { burst: 1, perSecond: 0 } })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  peer.send(
    encodeFrame(FrameType.CALL, 0, 1, Uint8Array.of(0)),
    encodeFrame(FrameType.CALL, 0, 3, Uint8Array.of(0)),
    buildPing(0, new Uint8Array(8))
  )
  t.equal(await peer.closed(), 1008)
  // The second error spends the budget of one: its refusal, GOAWAY, and nothing for the PING after it.
  t.same(peer.frames.map(f => f.type), [FrameType.SETTINGS, FrameType.TRAILERS, FrameType.TRAILERS, FrameType.GOAWAY])
  t.equal(goAwayOf(peer)?.lastStreamId, 3)
  t.ok(peer.frames.every(f => (f.flags & FrameFlags.ACK) === 0), 'no PING ACK')
})

t.test('stream-level protocol errors (window overruns, MESSAGE after HALF_CLOSE, bad WINDOW_UPDATE) spend errorRateLimit', async t => {
  const { url } = await app(t, { initialWindowSize: 1024, errorRateLimit: { burst: 30, perSecond: 0 } })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  const frames: Uint8Array[] = []
  for (let i = 0; i < 40; i++) {
    const id = 1 + 2 * i
    frames.push(buildCall(id, { path: '/test.Test/Bidi', timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }))
    if (i % 3 === 0) frames.push(encodeFrame(FrameType.MESSAGE, 0, id, new Uint8Array(2000)))
    else if (i % 3 === 1) frames.push(buildEmpty(FrameType.HALF_CLOSE, id), encodeFrame(FrameType.MESSAGE, 0, id, new Uint8Array(1)))
    else frames.push(encodeFrame(FrameType.WINDOW_UPDATE, 0, id, Uint8Array.of(0x7f, 0xff, 0xff, 0xff)))
  }
  peer.send(...frames)
  t.equal(await peer.closed(), 1008)
  t.equal(peer.closeReason, 'too many protocol errors')
  t.equal(goAwayOf(peer)?.reason, 'too many protocol errors')
  // A HALF_CLOSE's handler may end its call with OK before the MESSAGE behind
  // it is handled (frames past the turn's share wait for the next turn):
  // that MESSAGE then finds no stream, and no error is spent. Count resets.
  const resets = peer.frames.filter(f => f.type === FrameType.TRAILERS && parseTrailers(f.payload).code !== grpc.status.OK)
  t.equal(resets.length, 31, 'each error reset its stream, the 31st spent the budget')
})

t.test('a message over maxReceiveMessageSize does not count as a protocol error', async t => {
  const { url } = await app(t, { maxReceiveMessageSize: 10, errorRateLimit: { burst: 1, perSecond: 0 } })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  const frames: Uint8Array[] = []
  for (let i = 0; i < 5; i++) frames.push(callFrame(1 + 2 * i), encodeFrame(FrameType.MESSAGE, 0, 1 + 2 * i, new Uint8Array(100)))
  peer.send(...frames)
  t.ok(await peer.until(fs => fs.filter(f => f.type === FrameType.TRAILERS).length === 5), 'five RESOURCE_EXHAUSTED resets')
  t.equal(peer.closeCode, null, 'the connection stays open')
})

t.test('a peer the server closed that goes on sending instead of replying is dropped past 16 × maxFrameSize', async t => {
  const { app: server, url } = await app(t, { resetRateLimit: { burst: 5, perSecond: 1 }, maxFrameSize: 16384, maxMetadataSize: 8192 })
  const ws = new WebSocket(url, [SUBPROTOCOL], { perMessageDeflate: false })
  ws.on('error', () => {})
  t.teardown(() => { ws.terminate() })
  await new Promise(resolve => ws.once('open', resolve))
  // It never reads: it never sees the close, nor replies to it.
  ;(ws as unknown as { _socket: Socket })._socket.pause()
  const path = '/no.Such/' + 'N'.repeat(4000)
  let id = 1
  let sent = 0
  // Bounded: at most 200 messages of 3 refused CALLs (about 2.4 MB).
  for (let i = 0; i < 200 && server.websocketServer.clients.size > 0 && ws.readyState === WebSocket.OPEN; i++) {
    const message = Buffer.concat([callFrame(id, path), callFrame(id + 2, path), callFrame(id + 4, path)])
    id += 6
    ws.send(message)
    sent += message.byteLength
    await new Promise(resolve => setTimeout(resolve, 2))
  }
  const until = Date.now() + 3000
  while (server.websocketServer.clients.size > 0 && Date.now() < until) await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(server.websocketServer.clients.size, 0, 'the server dropped the socket within 3 s (not read on for ws\'s 30 s close timeout)')
  t.comment(`${(sent / 1e6).toFixed(2)} MB sent`)
})
