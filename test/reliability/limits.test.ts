import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { EventEmitter } from 'node:events'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { FrameType, SUBPROTOCOL } from '../../lib/protocol/frame.js'
import { buildCall, buildEmpty, NO_TIMEOUT } from '../../lib/protocol/payload.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { handlerEvent, parity, startEnv, unary, unaryError } from '../helpers/parity.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startPluginApp, type PluginApp } from '../helpers/plugin-app.js'
import { TestClient, createTestService, testDefinition } from '../helpers/test-service.js'
import { bounded } from '../helpers/bounded.js'

const events = new EventEmitter()
events.setMaxListeners(0)

async function start (options: Partial<FastifyGrpcWsOptions>): Promise<PluginApp> {
  return await startPluginApp(options, { events })
}

async function upgradeStatus (url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  const socket = new WebSocket(url, [SUBPROTOCOL], options)
  return await new Promise<number>(resolve => {
    socket.once('open', () => { socket.terminate(); resolve(101) })
    socket.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); socket.terminate() })
    socket.once('error', () => {})
  })
}

// Message size limits, the same on both transports.
const sizeEnv = await startEnv(t, {
  plugin: { maxReceiveMessageSize: 1024, maxSendMessageSize: 2048 },
  server: { 'grpc.max_receive_message_length': 1024, 'grpc.max_send_message_length': 2048 }
})

parity(t, sizeEnv, 'Should refuse a request over maxReceiveMessageSize with RESOURCE_EXHAUSTED and stay usable', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'echo', payload: Buffer.alloc(2000) })
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
  t.match(err.details, /Received message larger than max/)
  const { value } = await unary(client, { mode: 'echo', message: 'small' })
  t.equal(value.message, 'small', 'the next call on the same channel works')
})

parity(t, sizeEnv, 'Should refuse a response over maxSendMessageSize with RESOURCE_EXHAUSTED', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'size', size: 4000 })
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
  t.match(err.details, /Sent message larger than max/)
})

t.test('Should refuse upgrades beyond maxConnections with HTTP 503', async t => {
  const { app, url } = await start({ maxConnections: 2 })
  t.teardown(async () => await app.close())
  const peers = [await new RawPeer(url).open(), await new RawPeer(url).open()]
  t.teardown(() => { for (const p of peers) p.close() })
  t.equal(await upgradeStatus(url), 503)
  peers[0]!.close()
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(await upgradeStatus(url), 101, 'a freed place can be taken again')
})

// --- connection places: race-free, per peer, on both routes -------------------------

const GRPC_WEBSOCKETS_METHOD = '/test.Test/Unary'

interface Upgrade { status: number, body: string, socket: WebSocket }

/**
 * One upgrade, on the grpc-ws.v1 route (`/grpc`) or the grpc-websockets
 * route (`/grpc/<method>`); a socket that opened stays open (the caller
 * terminates it), so it keeps its place while others are tried.
 */
async function upgrade (base: string, route: 'grpc-ws.v1' | 'grpc-websockets', headers: Record<string, string> = {}): Promise<Upgrade> {
  const socket = route === 'grpc-ws.v1'
    ? new WebSocket(base, [SUBPROTOCOL], { headers })
    : new WebSocket(base + GRPC_WEBSOCKETS_METHOD, ['grpc-websockets'], { headers })
  socket.on('error', () => {})
  return await bounded('the upgrade answer', new Promise<Upgrade>(resolve => {
    socket.once('open', () => { resolve({ status: 101, body: '', socket }) })
    socket.once('unexpected-response', (req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body, socket }); req.destroy() })
    })
  }))
}

const statuses = (upgrades: Upgrade[]): number[] => upgrades.map(u => u.status).sort()

/**
 * The plugin, with a preValidation hook that takes 20 ms, as an
 * authentication lookup would: upgrades overlap between the plugin's
 * guard (onRequest) and the upgrade itself. It refuses upgrades carrying
 * `x-deny` with 401. `trustProxy` takes the client address from X-Forwarded-For.
 */
async function startSlowAuth (t: Test, options: Partial<FastifyGrpcWsOptions>, trustProxy = false): Promise<{ url: string, connections: () => number }> {
  const app = Fastify({ trustProxy })
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
  app.addHook('preValidation', async (request, reply) => {
    if (!request.ws) return
    await new Promise(resolve => setTimeout(resolve, 20))
    if (request.headers['x-deny'] !== undefined) return await reply.code(401).send({ message: 'denied' })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => {
    for (const socket of app.websocketServer.clients) socket.terminate()
    await app.close()
  })
  return { url: `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`, connections: () => app.grpc.connectionCount }
}

/** Upgrades from `headers` until one is accepted (a place freed by a socket that closed): bounded. */
async function upgradeOnceFree (base: string, route: 'grpc-ws.v1' | 'grpc-websockets', headers: Record<string, string> = {}): Promise<Upgrade> {
  for (let attempt = 0; ; attempt++) {
    const answer = await upgrade(base, route, headers)
    if (answer.status === 101 || attempt === 50) return answer
    await new Promise(resolve => setTimeout(resolve, 20))
  }
}

t.test('Should count upgrades in flight against maxConnections: of 12 at once over both routes, 3 get in', async t => {
  const { url, connections } = await startSlowAuth(t, { maxConnections: 3 })
  const answers: Upgrade[] = []
  t.teardown(() => { for (const answer of answers) answer.socket.terminate() })
  answers.push(...await Promise.all(Array.from({ length: 12 }, async (_, i) => await upgrade(url, i % 2 === 0 ? 'grpc-ws.v1' : 'grpc-websockets'))))
  t.same(statuses(answers), [101, 101, 101, ...Array(9).fill(503)], 'exactly maxConnections upgrades succeed')
  t.match(JSON.parse(answers.find(a => a.status === 503)!.body), { error: 'Service Unavailable', message: 'Too many WebSocket connections (limit 3)' })
  t.equal(connections(), 3)
  // A place comes back when its socket closes, whichever route it was on.
  answers.find(a => a.status === 101)!.socket.terminate()
  const again = await upgradeOnceFree(url, 'grpc-websockets')
  answers.push(again)
  t.equal(again.status, 101, 'a freed place can be taken again')
})

t.test('Should refuse upgrades beyond maxConnectionsPerPeer with HTTP 429, by client address, over both routes', async t => {
  const { url } = await startSlowAuth(t, { maxConnectionsPerPeer: 2 }, true)
  const answers: Upgrade[] = []
  t.teardown(() => { for (const answer of answers) answer.socket.terminate() })
  const one = { 'x-forwarded-for': '192.0.2.1' }
  const two = { 'x-forwarded-for': '192.0.2.2' }
  answers.push(...await Promise.all(Array.from({ length: 6 }, async (_, i) => await upgrade(url, i % 2 === 0 ? 'grpc-ws.v1' : 'grpc-websockets', one))))
  t.same(statuses(answers), [101, 101, 429, 429, 429, 429], 'two of six concurrent upgrades from one address get in')
  t.match(JSON.parse(answers.find(a => a.status === 429)!.body), {
    error: 'Too Many Requests',
    message: 'Too many WebSocket connections from this address (maxConnectionsPerPeer 2)'
  })
  const other = await Promise.all([upgrade(url, 'grpc-ws.v1', two), upgrade(url, 'grpc-websockets', two)])
  answers.push(...other)
  t.same(statuses(other), [101, 101], 'another address still gets its two')
  t.equal((await upgrade(url, 'grpc-websockets', two)).status, 429, 'and no third')
  answers.find(a => a.status === 101)!.socket.terminate()
  const again = await upgradeOnceFree(url, 'grpc-ws.v1', one)
  answers.push(again)
  t.equal(again.status, 101, 'a place freed by a closed socket is the address\'s again')
})

t.test('Should give a place back when a later hook refuses the upgrade', async t => {
  const { url } = await startSlowAuth(t, { maxConnections: 1, maxConnectionsPerPeer: 1 })
  const answers: Upgrade[] = []
  t.teardown(() => { for (const answer of answers) answer.socket.terminate() })
  for (let i = 0; i < 3; i++) answers.push(await upgrade(url, i % 2 === 0 ? 'grpc-ws.v1' : 'grpc-websockets', { 'x-deny': 'yes' }))
  t.same(statuses(answers), [401, 401, 401])
  const allowed = await upgradeOnceFree(url, 'grpc-ws.v1')
  answers.push(allowed)
  t.equal(allowed.status, 101, 'the refused upgrades hold no place once their sockets closed')
})

t.test('Should count every client as the proxy\'s address unless trustProxy is set', async t => {
  const { app, url } = await start({ maxConnectionsPerPeer: 1 })
  const answers: Upgrade[] = []
  t.teardown(async () => {
    for (const answer of answers) answer.socket.terminate()
    await app.close()
  })
  answers.push(await upgrade(url, 'grpc-ws.v1'))
  t.equal(answers[0]!.status, 101)
  answers.push(await upgrade(url, 'grpc-websockets', { 'x-forwarded-for': '192.0.2.7' }))
  t.equal(answers[1]!.status, 429, 'X-Forwarded-For is not trusted: the same address, 127.0.0.1')
})

t.test('Should refuse cross-origin browser upgrades unless allowed', async t => {
  const same = await start({})
  t.teardown(async () => await same.app.close())
  const host = new URL(same.url).host
  t.equal(await upgradeStatus(same.url), 101, 'no Origin (a backend) is allowed')
  t.equal(await upgradeStatus(same.url, { origin: `http://${host}` }), 101, 'same origin is allowed')
  t.equal(await upgradeStatus(same.url, { origin: 'https://evil.example' }), 403, 'another origin is refused by default')
  t.equal(await upgradeStatus(same.url, { origin: 'not a url' }), 403)

  const listed = await start({ allowedOrigins: ['https://app.example'] })
  t.teardown(async () => await listed.app.close())
  t.equal(await upgradeStatus(listed.url, { origin: 'https://app.example' }), 101)
  t.equal(await upgradeStatus(listed.url, { origin: 'https://evil.example' }), 403)

  const fn = await start({ allowedOrigins: origin => origin.endsWith('.trusted.example') })
  t.teardown(async () => await fn.app.close())
  t.equal(await upgradeStatus(fn.url, { origin: 'https://a.trusted.example' }), 101)
  t.equal(await upgradeStatus(fn.url, { origin: 'https://trusted.example.evil' }), 403)

  const any = await start({ allowedOrigins: '*' })
  t.teardown(async () => await any.app.close())
  t.equal(await upgradeStatus(any.url, { origin: 'https://anywhere.example' }), 101)
})

t.test('Should close a connection left idle, and the channel reconnects for the next call', async t => {
  const { app, url } = await start({ idleTimeout: 100 })
  t.teardown(async () => await app.close())
  const peer = await new RawPeer(url).open()
  t.teardown(() => peer.close())
  t.equal(await peer.closed(2000), 1000)
  t.equal(peer.closeReason, 'idle timeout')
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => client.close())
  await unary(client, { mode: 'echo' })
  await new Promise(resolve => setTimeout(resolve, 300))
  const { value } = await unary(client, { mode: 'echo', message: 'after idle' })
  t.equal(value.message, 'after idle')
})

t.test('Should keep a connection with a call open past the idle timeout', async t => {
  const { app, url } = await start({ idleTimeout: 100 })
  t.teardown(async () => await app.close())
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => client.close())
  const { value } = await unary(client, { mode: 'delay', delayMs: 400, message: 'slow but alive' })
  t.equal(value.message, 'slow but alive')
})

t.test('Should detect a stalled peer by the ping timeout and cancel its calls', async t => {
  const { app, url } = await start({ pingInterval: 50, pingTimeout: 100 })
  t.teardown(async () => await app.close())
  // A peer that never answers pings, as a frozen tab or a dead network would.
  const stalled = await new RawPeer(url, { autoPong: false }).open()
  t.teardown(() => stalled.close())
  const cancelled = handlerEvent(events, 'stalled-call')
  stalled.send(
    buildCall(1, { path: '/test.Test/Unary', timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }),
    buildMessageFrame(1, 0, testDefinition.Unary!.requestSerialize({ mode: 'never', id: 'stalled-call' })),
    buildEmpty(FrameType.HALF_CLOSE, 1)
  )
  const event = await cancelled
  t.equal(event.event, 'cancelled', 'the handler sees cancelled')
  t.not(await stalled.closed(2000), null, 'the socket is closed')
  // A peer that answers pings stays.
  const healthy = await new RawPeer(url).open()
  t.teardown(() => healthy.close())
  await new Promise(resolve => setTimeout(resolve, 400))
  t.equal(healthy.closeCode, null, 'a peer that answers pings is kept')
  t.ok(healthy.frames.every(f => f.type !== FrameType.TRAILERS))
})
