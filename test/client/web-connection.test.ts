// The browser client's one shared socket, run in Node over `ws`: lazy
// connection, state, many calls on one socket, drops, restarts, GOAWAY,
// backoff, keepalive pings and the connect timeout.
import Fastify from 'fastify'
import net from 'node:net'
import { EventEmitter } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createClient, Status, type ConnectionState, type GrpcWsClient, type WebSocketConstructor } from '../../lib/client/web/index.js'
import { createTestService, testDefinition } from '../helpers/test-service.js'
import { FrameFlags, FrameType } from '../../lib/protocol/frame.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { buildGoAway, buildHeaders, buildPing, buildTrailers } from '../../lib/protocol/payload.js'
import { startRawServer } from '../helpers/raw-server.js'
import { freePort, startTcpProxy } from '../helpers/tcp-proxy.js'
import { rejection, testRoot, typed, webClient } from '../helpers/web-client.js'

const ResponseType = testRoot.lookupType('test.Response')

async function startApp (port = 0, options: Partial<FastifyGrpcWsOptions> = {}): Promise<{ app: ReturnType<typeof Fastify>, url: string, port: number, upgrades: () => number }> {
  const app = Fastify()
  let upgrades = 0
  app.addHook('onRequest', async request => { if (request.headers.upgrade === 'websocket') upgrades++ })
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: createTestService(new EventEmitter()) }] })
  await app.listen({ port, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  return { app, url: `ws://127.0.0.1:${address.port}/grpc`, port: address.port, upgrades: () => upgrades }
}

/** `ws`, recording when each socket was opened. */
function countingWebSocket (): { WebSocket: WebSocketConstructor, opened: number[] } {
  const opened: number[] = []
  class Counting extends WebSocket {
    constructor (url: string, protocols: string | string[]) {
      super(url, protocols)
      opened.push(Date.now())
    }
  }
  return { WebSocket: Counting as unknown as WebSocketConstructor, opened }
}

/** Resolves when the client reaches `state`; fails after `ms`. */
async function reach (client: GrpcWsClient, state: ConnectionState, ms = 5000): Promise<void> {
  if (client.state === state) return
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { stop(); reject(new Error(`still ${client.state} after ${ms} ms, waiting for ${state}`)) }, ms)
    const stop = client.onStateChange(s => {
      if (s !== state) return
      clearTimeout(timer)
      stop()
      resolve()
    })
  })
}

t.test('Should connect lazily, run 200 concurrent calls on one socket, and report its state', async t => {
  const { app, url, upgrades } = await startApp()
  t.teardown(async () => await app.close())
  const { client, test } = webClient(url)
  const states: ConnectionState[] = []
  client.onStateChange(state => states.push(state))
  t.equal(client.state, 'idle', 'no socket before the first call')
  t.equal(upgrades(), 0)
  const calls = Array.from({ length: 200 }, async (_, i) => await test.unary({ mode: 'echo', message: `m${i}` }))
  t.equal(client.state, 'connecting')
  const results = await Promise.all(calls)
  t.ok(results.every((r, i) => r.message === `m${i}`), 'each call got its own answer')
  t.equal(client.state, 'ready')
  t.equal(upgrades(), 1, 'one WebSocket upgrade for all 200 calls')
  t.equal(app.grpc.connectionCount, 1)
  client.close()
  t.same(states, ['connecting', 'ready', 'closed'])
  const err = await rejection(async () => await test.unary({ mode: 'echo' }))
  t.same([err.code, err.details], [Status.UNAVAILABLE, 'The channel is closed'], 'a closed client fails calls at once')
  client.connect()
  t.equal(client.state, 'closed', 'and stays closed')

  const eager = webClient(url)
  t.teardown(() => { eager.client.close() })
  eager.client.connect()
  await reach(eager.client, 'ready')
  t.equal(upgrades(), 2, 'connect() opens the socket before any call')
})

t.test('Should fail calls in flight with UNAVAILABLE when the socket drops, and reconnect at once', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const { client, test } = webClient(url)
  t.teardown(() => { client.close() })
  await test.unary({ mode: 'echo' })
  const pending = rejection(async () => await test.unary({ mode: 'never' }))
  const stream = test.serverStream({ mode: 'endless' })
  const streamFailure = rejection(async () => { for await (const _ of stream); })
  await new Promise(resolve => setTimeout(resolve, 50))
  for (const socket of app.websocketServer.clients) socket.terminate()
  for (const err of [await pending, await streamFailure]) {
    t.equal(err.code, Status.UNAVAILABLE)
    t.match(err.details, /Connection closed/)
  }
  await reach(client, 'idle')
  const started = Date.now()
  t.equal((await test.unary({ mode: 'echo', message: 'back' })).message, 'back')
  t.ok(Date.now() - started < 900, 'a socket that had been ready is replaced without the backoff delay')
})

t.test('Should fail calls in flight with UNAVAILABLE when the server restarts, then reconnect', async t => {
  const first = await startApp(0, { closeGracePeriod: 50 })
  const { client, test } = webClient(first.url)
  t.teardown(() => { client.close() })
  t.equal((await test.unary({ mode: 'echo', message: 'before' })).message, 'before')
  const pending = rejection(async () => await test.unary({ mode: 'never' }))
  await new Promise(resolve => setTimeout(resolve, 30))
  await first.app.close()
  const err = await pending
  t.equal(err.code, Status.UNAVAILABLE, 'the call on the dropped socket fails, it does not hang')
  const second = await startApp(first.port)
  t.teardown(async () => await second.app.close())
  t.equal((await test.unary({ mode: 'echo', message: 'after' })).message, 'after', 'the next call opens a socket to the new server')
  t.equal(client.state, 'ready')
})

t.test('Should let calls in flight finish on a socket the server is shutting down', async t => {
  const { app, url } = await startApp()
  const { client, test } = webClient(url)
  t.teardown(() => { client.close() })
  await test.unary({ mode: 'echo' })
  const inFlight = test.unary({ mode: 'delay', delayMs: 300, message: 'finished' })
  await new Promise(resolve => setTimeout(resolve, 30))
  const closing = app.close()
  await reach(client, 'idle')
  t.pass('GOAWAY took the socket out of use for new calls')
  t.equal((await inFlight).message, 'finished', 'the call in flight finished on the draining socket')
  await closing
})

t.test('Should honour GOAWAY: streams above its last id fail, the others finish, new calls take a new socket', async t => {
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { client, test } = webClient(server.url)
  t.teardown(() => { client.close() })
  const first = test.unary({ mode: 'echo', message: 'one' })
  const second = test.unary({ mode: 'echo', message: 'two' })
  await server.until(() => server.connections[0]?.frames.filter(f => f.type === FrameType.HALF_CLOSE).length === 2)
  const conn = server.connections[0]!
  t.same(conn.frames.filter(f => f.type === FrameType.CALL).map(f => f.streamId), [1, 3])
  conn.send(buildGoAway({ lastStreamId: 1, reason: 'maintenance' }))
  const err = await rejection(async () => await second)
  t.same([err.code, err.details], [Status.UNAVAILABLE, 'The server is going away: maintenance'], 'stream 3 was not taken: it fails, and may be retried')
  t.equal(client.state, 'idle')
  const third = test.unary({ mode: 'echo', message: 'three' })
  await server.until(() => server.connections.length === 2 && server.connections[1]!.frames.some(f => f.type === FrameType.CALL))
  t.notOk(conn.frames.some(f => f.type === FrameType.CALL && f.streamId > 3), 'no new call on the draining socket')
  t.equal(server.connections[1]!.frames.find(f => f.type === FrameType.CALL)?.streamId, 1, 'the new socket starts its own stream ids')
  const reply = ResponseType.encode({ message: 'done' }).finish()
  conn.send(buildHeaders(1, []), buildMessageFrame(1, 0, reply), buildTrailers(1, { code: 0, details: 'OK', metadata: [] }))
  t.equal((await first).message, 'done', 'stream 1 finished on the draining socket')
  await server.until(() => conn.closeCode !== null)
  t.same([conn.closeCode, conn.closeReason], [1000, 'drained'], 'and the client closed it once it had no stream left')
  server.connections[1]!.send(buildHeaders(1, []), buildMessageFrame(1, 0, reply), buildTrailers(1, { code: 0, details: 'OK', metadata: [] }))
  t.equal((await third).message, 'done')
})

t.test('Should answer the server\'s PINGs', async t => {
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { client } = webClient(server.url)
  t.teardown(() => { client.close() })
  client.connect()
  await reach(client, 'ready')
  const data = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])
  server.connections[0]!.send(buildPing(0, data))
  await server.until(() => server.connections[0]!.frames.some(f => f.type === FrameType.PING))
  const answer = server.connections[0]!.frames.find(f => f.type === FrameType.PING)!
  t.same([answer.flags, [...answer.payload]], [FrameFlags.ACK, [...data]])
})

t.test('Should space reconnection attempts with exponential backoff, and reset it once connected', async t => {
  const port = await freePort()
  const { WebSocket: Counting, opened } = countingWebSocket()
  // The WebSocket's backoff: the HTTP fallback would take these calls to HTTP.
  const client = createClient(`ws://127.0.0.1:${port}/grpc`, { WebSocket: Counting, transports: ['websocket'], backoff: { initialMs: 100, multiplier: 2, maxMs: 300, jitter: 0 } })
  t.teardown(() => { client.close() })
  const test = typed(client)
  for (let i = 0; i < 5; i++) {
    const call = test.unary({ mode: 'echo' })
    if (i > 0) t.equal(client.state, 'connecting', 'a call waiting out the delay shows connecting')
    const err = await rejection(async () => await call)
    t.equal(err.code, Status.UNAVAILABLE)
  }
  const gaps = opened.slice(1).map((at, i) => at - opened[i]!)
  const expected = [100, 200, 300, 300]
  t.equal(gaps.length, 4)
  gaps.forEach((gap, i) => t.ok(gap >= expected[i]! - 5 && gap < expected[i]! + 250, `attempt ${i + 2} came ${gap} ms after the previous one (delay ${expected[i]!})`))

  const waiting = test.unary({ mode: 'echo', message: 'x' })
  client.close()
  t.same([(await rejection(async () => await waiting)).code], [Status.UNAVAILABLE], 'close() fails a call waiting out the delay')

  const again = createClient(`ws://127.0.0.1:${port}/grpc`, { WebSocket: Counting, backoff: { initialMs: 100, multiplier: 2, jitter: 0 } })
  t.teardown(() => { again.close() })
  const againTest = typed(again)
  await rejection(async () => await againTest.unary({ mode: 'echo' }))
  const { app } = await startApp(port)
  t.teardown(async () => await app.close())
  t.equal((await againTest.unary({ mode: 'echo', message: 'up' })).message, 'up', 'the server is back: the next attempt connects')
  for (const socket of app.websocketServer.clients) socket.terminate()
  await reach(again, 'idle')
  await new Promise(resolve => setTimeout(resolve, 20))
  const started = Date.now()
  await againTest.unary({ mode: 'echo' })
  t.ok(opened.at(-1)! - started < 50, 'after a success the next attempt is not delayed')
})

t.test('Should find a dead socket with PINGs and fail its calls with UNAVAILABLE', async t => {
  const { app, port } = await startApp()
  const proxy = await startTcpProxy(port)
  const { client, test } = webClient(`ws://127.0.0.1:${proxy.port}/grpc`, { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 200 })
  t.teardown(async () => {
    client.close()
    await proxy.close()
    await app.close()
  })
  t.equal((await test.unary({ mode: 'delay', delayMs: 500, message: 'alive' })).message, 'alive', 'answered PINGs keep a quiet call alive')
  const pending = rejection(async () => await test.unary({ mode: 'never' }))
  await new Promise(resolve => setTimeout(resolve, 20))
  proxy.freeze()
  const started = Date.now()
  const err = await pending
  t.equal(err.code, Status.UNAVAILABLE)
  t.equal(err.details, 'Connection lost: no answer to PING within 200 ms')
  t.ok(Date.now() - started < 1000, `found within ${Date.now() - started} ms`)
  t.equal(client.state, 'idle')
})

t.test('Should count any frame as a sign of life while a PING answer is late', async t => {
  // This server never answers PINGs (its answers could be stuck behind a
  // large backlog); it sends a message every 20 ms for 600 ms, then nothing.
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { client, test } = webClient(server.url, { keepaliveIntervalMs: 50, keepaliveTimeoutMs: 200 })
  t.teardown(() => { client.close() })
  const stream = test.serverStream({ mode: 'count' })
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.CALL) === true)
  const conn = server.connections[0]!
  const message = ResponseType.encode({ message: 'tick' }).finish()
  conn.send(buildHeaders(1, []))
  const started = Date.now()
  const timer = setInterval(() => { conn.send(buildMessageFrame(1, 0, message)) }, 20)
  setTimeout(() => { clearInterval(timer) }, 600)
  t.teardown(() => { clearInterval(timer) })
  let received = 0
  const err = await rejection(async () => { for await (const _ of stream) received++ })
  const lasted = Date.now() - started
  t.ok(conn.frames.filter(f => f.type === FrameType.PING).length >= 2, 'the client kept pinging')
  t.same([err.code, err.details], [Status.UNAVAILABLE, 'Connection lost: no answer to PING within 200 ms'])
  t.ok(received >= 10, `${received} messages arrived first`)
  t.ok(lasted >= 600 && lasted < 600 + 1000, `declared dead ${lasted - 600} ms after the last message, not while messages flowed`)
})

t.test('Should fail calls waiting for a socket that never becomes ready', async t => {
  const sockets = new Set<net.Socket>()
  const silent = net.createServer(socket => { sockets.add(socket) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise(resolve => silent.close(resolve))
  })
  const url = `ws://127.0.0.1:${(silent.address() as net.AddressInfo).port}/grpc`
  // The WebSocket's timeout (web-http-fallback.test.ts has the fallback's).
  const { client, test } = webClient(url, { connectTimeoutMs: 200, transports: ['websocket'] })
  t.teardown(() => { client.close() })
  const err = await rejection(async () => await test.unary({ mode: 'echo' }))
  t.same([err.code, err.details], [Status.UNAVAILABLE, `Connection to ${url} not ready after 200 ms`])
})

t.test('Should use the global WebSocket, need one otherwise, and resolve URLs against the page', async t => {
  const global = globalThis as { WebSocket?: unknown, location?: unknown }
  const saved = { WebSocket: global.WebSocket, location: global.location }
  t.teardown(() => {
    global.WebSocket = saved.WebSocket
    global.location = saved.location
  })
  delete global.WebSocket
  t.throws(() => createClient('ws://127.0.0.1:1/grpc'), { name: 'TypeError', code: 'FST_GRPCWS_INVALID_CLIENT_OPTION', message: /no global WebSocket here/ })

  global.WebSocket = WebSocket
  global.location = { href: 'https://example.com/app/page.html' }
  t.equal(createClient('/grpc').url, 'wss://example.com/grpc')
  t.equal(createClient('rpc').url, 'wss://example.com/app/rpc')
  t.equal(createClient('http://127.0.0.1:8080/grpc').url, 'ws://127.0.0.1:8080/grpc')
  t.equal(createClient('wss://example.org/x').url, 'wss://example.org/x')

  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const client = createClient(url)
  t.teardown(() => { client.close() })
  t.equal((await typed(client).unary({ mode: 'echo', message: 'global' })).message, 'global')
})

t.test('Should offer further subprotocol values for the upgrade\'s authentication', async t => {
  let offered: string | undefined
  const app = Fastify()
  await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(new EventEmitter()) }] })
  app.addHook('onRequest', async (request, reply) => {
    if (!request.ws) return
    offered = request.headers['sec-websocket-protocol']
    if (offered?.includes('bearer.secret') !== true) return await reply.code(401).send({ message: 'sign in first' })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const url = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`
  const { client, test } = webClient(url, { protocols: ['bearer.secret'] })
  t.teardown(() => { client.close() })
  t.equal((await test.unary({ mode: 'echo', message: 'signed in' })).message, 'signed in')
  t.equal(offered, 'grpc-ws.v1,bearer.secret', 'grpc-ws.v1 first, then the application\'s values')
  // The WebSocket only: this hook guards upgrades alone, so over the HTTP fallback the call would pass.
  const anonymous = webClient(url, { transports: ['websocket'] })
  t.teardown(() => { anonymous.client.close() })
  const err = await rejection(async () => await anonymous.test.unary({ mode: 'echo' }))
  t.equal(err.code, Status.UNAVAILABLE, 'a refused upgrade fails the call with UNAVAILABLE')
})
