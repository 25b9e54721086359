import websocket from '@fastify/websocket'
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import fp from 'fastify-plugin'
import { fork } from 'node:child_process'
import { EventEmitter } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import fastifyGrpcWs, { SUBPROTOCOL, defaults, fastifyGrpcWs as named } from '../index.js'
import { createWebSocketChannel } from '../lib/client/grpc-js/index.js'
import { collect, unary } from './helpers/parity.js'
import { TestClient, createTestService, testDefinition } from './helpers/test-service.js'

const service = (): { definition: grpc.ServiceDefinition, implementation: any } => ({ definition: testDefinition, implementation: createTestService(new EventEmitter()) })

async function listen (app: ReturnType<typeof Fastify>): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  return `ws://127.0.0.1:${address.port}/grpc`
}

function wsClient (url: string): any {
  return new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
}

t.test('Should export the plugin as default and by name', async t => {
  t.equal(fastifyGrpcWs, named)
  t.equal(SUBPROTOCOL, 'grpc-ws.v1')
  t.equal(defaults.maxReceiveMessageSize, 4 * 1024 * 1024)
})

t.test('Should refuse invalid options with coded errors', async t => {
  const cases: Array<[string, object, RegExp]> = [
    ['path', { path: 'grpc' }, /invalid option "path"/],
    ['services', { services: {} }, /invalid option "services"/],
    ['service entry', { services: [null] }, /invalid service/],
    ['empty definition', { services: [{ definition: {}, implementation: {} }] }, /non-empty/],
    ['bad method', { services: [{ definition: { X: {} }, implementation: {} }] }, /definition\.X is not a grpc-js MethodDefinition/],
    ['implementation', { services: [{ definition: testDefinition, implementation: null }] }, /implementation must be an object/],
    ['grpcServer', { grpcServer: {} }, /invalid option "grpcServer"/],
    ['interceptors', { interceptors: [1] }, /invalid option "interceptors"/],
    ['maxReceiveMessageSize', { maxReceiveMessageSize: -2 }, /invalid option "maxReceiveMessageSize"/],
    ['maxConcurrentStreams', { maxConcurrentStreams: 0 }, /invalid option "maxConcurrentStreams"/],
    ['initialWindowSize', { initialWindowSize: 1.5 }, /invalid option "initialWindowSize"/],
    ['maxFrameSize', { maxFrameSize: 100 }, /invalid option "maxFrameSize"/],
    ['maxMetadataSize beside maxFrameSize', { maxFrameSize: 16384, maxMetadataSize: 16384 }, /invalid option "maxMetadataSize"/]
  ]
  for (const [name, options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifyGrpcWs, options as any) }, { message, code: /^FST_GRPCWS_INVALID_(OPTION|SERVICE)$/ }, name)
    await app.close()
  }
})

t.test('Should accept -1 for no message size limit', async t => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(fastifyGrpcWs, { maxReceiveMessageSize: -1, maxSendMessageSize: -1, services: [service()] })
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), {
    channelOverride: createWebSocketChannel(await listen(app), { maxReceiveMessageSize: -1 })
  })
  t.teardown(() => client.close())
  const { value } = await unary(client, { mode: 'echo', payload: Buffer.alloc(5 * 1024 * 1024 - 64) })
  t.equal(value.payload.length, 5 * 1024 * 1024 - 64)
})

t.test('Should add services through app.grpc.addService before ready, to both transports', async t => {
  const app = Fastify()
  const grpcServer = new grpc.Server()
  t.teardown(async () => { await app.close(); grpcServer.forceShutdown() })
  await app.register(fastifyGrpcWs, { grpcServer })
  const { definition, implementation } = service()
  app.grpc.addService(definition, implementation)
  t.throws(() => { app.grpc.addService(definition, implementation) }, { code: 'FST_GRPCWS_DUPLICATE_METHOD' })
  const url = await listen(app)
  t.throws(() => { app.grpc.addService(definition, implementation) }, { code: 'FST_GRPCWS_ADD_SERVICE_TOO_LATE' })
  const port = await new Promise<number>((resolve, reject) => grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => { e === null ? resolve(p) : reject(e) }))
  const clients = [wsClient(url), new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure())]
  t.teardown(() => { for (const c of clients) c.close() })
  for (const client of clients) {
    const { value } = await unary(client, { mode: 'echo', message: 'added' })
    t.equal(value.message, 'added')
  }
  t.equal(app.grpc.subprotocol, 'grpc-ws.v1')
  t.equal(app.grpc.connectionCount, 1)
})

t.test('Should reuse @fastify/websocket when the app registered it', async t => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(websocket)
  await app.register(fastifyGrpcWs, { services: [service()], path: '/rpc' })
  app.get('/other', { websocket: true }, socket => { socket.send('other route') })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const client = wsClient(`ws://127.0.0.1:${port}/rpc`)
  t.teardown(() => client.close())
  const { value } = await unary(client, { mode: 'echo', message: 'shared' })
  t.equal(value.message, 'shared')
  const other = new WebSocket(`ws://127.0.0.1:${port}/other`)
  const [data] = await new Promise<[Buffer]>(resolve => other.once('message', (d: Buffer) => resolve([d])))
  t.equal(data.toString(), 'other route', 'the app keeps its own WebSocket routes')
  other.close()
})

t.test('Should serve calls over permessage-deflate when the app\'s @fastify/websocket negotiates it', async t => {
  // With an extension ws must frame (and may compress) every message itself:
  // batches go through ws.send, not straight to the socket.
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(websocket, { options: { perMessageDeflate: true } })
  await app.register(fastifyGrpcWs, { services: [service()] })
  const client = wsClient(await listen(app))
  t.teardown(() => client.close())
  const payload = Buffer.alloc(100_000, 3)
  const [large, small] = await Promise.all([
    unary(client, { mode: 'echo', message: 'large', payload }),
    unary(client, { mode: 'echo', message: 'small' })
  ])
  t.equal(large.value.message, 'large')
  t.ok(Buffer.from(large.value.payload).equals(payload), 'a 100,000-byte payload comes back whole')
  t.equal(small.value.message, 'small')
  const [socket] = [...app.websocketServer.clients]
  t.match(socket?.extensions, /permessage-deflate/, 'the connection did negotiate permessage-deflate')
})

t.test('Should serve the app\'s own WebSocket routes after the plugin, with the @fastify/websocket it registered', async t => {
  // The plugin registers @fastify/websocket at the app's root: the app adds
  // { websocket: true } routes after it with no second registration (which
  // would throw @fastify/websocket's own "decorator 'ws' has already been added").
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(fastifyGrpcWs, { services: [service()] })
  t.ok(app.hasPlugin('@fastify/websocket'))
  app.get('/chat', { websocket: true }, socket => { socket.send('chat route') })
  const url = await listen(app)
  const client = wsClient(url)
  t.teardown(() => client.close())
  t.equal((await unary(client, { mode: 'echo', message: 'beside it' })).value.message, 'beside it')
  const chat = new WebSocket(url.replace('/grpc', '/chat'))
  const [data] = await new Promise<[Buffer]>(resolve => chat.once('message', (d: Buffer) => resolve([d])))
  t.equal(data.toString(), 'chat route')
  chat.close()
})

t.test('Should end with a coded error that says to register it first when @fastify/websocket is registered after the plugin', async t => {
  // A synchronous throw from its plugin function is uncaught in avvio: a child process shows what the app sees.
  const child = fork(new URL('./fixtures/websocket-after.ts', import.meta.url), [], { execArgv: process.execArgv, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
  const message = await new Promise<any>(resolve => { child.once('message', resolve) })
  const code = await new Promise<number | null>(resolve => { child.once('exit', resolve) })
  t.equal(message.uncaught, 'FST_GRPCWS_WEBSOCKET_ORDER')
  t.match(message.message, /register @fastify\/websocket before fastify-grpc-ws/)
  t.equal(code, 1)
})

t.test('Should leave decorateRequest as it was once the app is ready', async t => {
  const app = Fastify()
  const original = app.decorateRequest
  await app.register(fastifyGrpcWs, { services: [service()] })
  t.not(app.decorateRequest, original, 'guarded while plugins load')
  // Other request decorators pass through the guard.
  await app.register(fp(async (app) => { app.decorateRequest('user', '') }))
  await app.ready()
  t.ok(app.hasRequestDecorator('user'))
  t.equal(app.decorateRequest, original)
  await app.close()
})

t.test('Should refuse an upgrade that does not offer the subprotocol with HTTP 400', async t => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(fastifyGrpcWs, { services: [service()] })
  const url = await listen(app)
  const socket = new WebSocket(url, ['something-else'])
  const status = await new Promise<number>(resolve => socket.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0) }))
  t.equal(status, 400)
})

t.test('Should shut down gracefully: go away, finish calls in flight, refuse new ones, close with 1001', async t => {
  const app = Fastify()
  await app.register(fastifyGrpcWs, { services: [service()], closeGracePeriod: 2000 })
  const url = await listen(app)
  const client = wsClient(url)
  t.teardown(() => client.close())
  const inFlight = unary(client, { mode: 'delay', delayMs: 200, message: 'finished' })
  const stream = collect(client.ServerStream({ mode: 'count', count: 3 }))
  await new Promise(resolve => setTimeout(resolve, 50))
  const raw = new WebSocket(url, [SUBPROTOCOL])
  await new Promise(resolve => raw.once('open', resolve))
  const closed = new Promise<number>(resolve => raw.once('close', (code: number) => { resolve(code) }))
  const closing = app.close()
  const { value } = await inFlight
  t.equal(value.message, 'finished', 'a call in flight finishes')
  t.equal((await stream).status.code, grpc.status.OK)
  await closing
  t.equal(await closed, 1001, 'sockets close with 1001')
})

t.test('Should cancel calls still running when the grace period ends', async t => {
  const app = Fastify()
  const events = new EventEmitter()
  await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }], closeGracePeriod: 100 })
  const url = await listen(app)
  const client = wsClient(url)
  t.teardown(() => client.close())
  const cancelled = new Promise(resolve => events.once('stuck', resolve))
  const call = unary(client, { mode: 'never', id: 'stuck' }).catch(err => err)
  await new Promise(resolve => setTimeout(resolve, 50))
  await app.close()
  t.match(await cancelled, { event: 'cancelled' }, 'the handler sees cancelled')
  const err = await call
  t.equal(err.code, grpc.status.UNAVAILABLE, 'the client sees UNAVAILABLE, not a hang')
})

t.test('Should close with 1009 a message over maxFrameSize even when the app\'s own @fastify/websocket allows more', async t => {
  const app = Fastify()
  t.teardown(async () => await app.close())
  await app.register(websocket)
  await app.register(fastifyGrpcWs, { services: [service()], maxFrameSize: 16384, maxMetadataSize: 8192 })
  const url = await listen(app)
  const socket = new WebSocket(url, [SUBPROTOCOL])
  await new Promise(resolve => socket.once('open', resolve))
  const closed = new Promise<number>(resolve => socket.once('close', (code: number) => { resolve(code) }))
  socket.send(new Uint8Array(20000))
  t.equal(await closed, 1009)
})

t.test('Should finish closing when an upgrade arrives while the app is closing', async t => {
  const app = Fastify()
  await app.register(fastifyGrpcWs, { services: [service()], closeGracePeriod: 2000 })
  const url = await listen(app)
  const client = wsClient(url)
  t.teardown(() => client.close())
  const inFlight = unary(client, { mode: 'delay', delayMs: 300, message: 'finished' })
  await new Promise(resolve => setTimeout(resolve, 50))
  const closing = app.close()
  // A new client knocks during the grace period.
  const late = new WebSocket(url, [SUBPROTOCOL])
  late.on('error', () => {})
  const refused = await new Promise<string>(resolve => {
    late.once('open', () => { resolve('opened') })
    late.once('unexpected-response', (_req, res) => { resolve(`HTTP ${res.statusCode ?? 0}`) })
    late.once('close', () => { resolve('closed') })
  })
  t.not(refused, 'opened', `the late upgrade is refused (${refused})`)
  t.equal((await inFlight).value.message, 'finished')
  let timer: ReturnType<typeof setTimeout> | undefined
  const done = await Promise.race([closing.then(() => 'closed'), new Promise(resolve => { timer = setTimeout(() => resolve('still closing'), 5000) })])
  clearTimeout(timer)
  t.equal(done, 'closed', 'app.close() completes')
  late.terminate()
})

t.test('Should refuse an unknown option at register, naming the nearest options', async t => {
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ maxMessageSize: 10 }, 'fastify-grpc-ws: invalid option "maxMessageSize": unknown option; did you mean "maxSendMessageSize" or "maxReceiveMessageSize"?'],
    [{ maxConnectionPerPeer: 1 }, 'fastify-grpc-ws: invalid option "maxConnectionPerPeer": unknown option; did you mean "maxConnectionsPerPeer"?'],
    [{ pingIntervalMs: 1000 }, 'fastify-grpc-ws: invalid option "pingIntervalMs": unknown option; did you mean "pingInterval"?'],
    [{ colour: 'blue' }, 'fastify-grpc-ws: invalid option "colour": unknown option']
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifyGrpcWs, options as object).ready() }, { code: 'FST_GRPCWS_INVALID_OPTION', message })
    await app.close()
  }
  const app = Fastify()
  await app.register(fastifyGrpcWs, { prefix: '/under', logLevel: 'warn', maxSendMessageSize: 1024 } as object)
  await app.ready()
  t.pass("Fastify's own register options (prefix, logLevel, logSerializers) are not the plugin's to refuse")
  await app.close()
})

t.test('Should warn through the app\'s logger about definition methods that have no implementation', async t => {
  const lines: Array<{ level: number, msg: string, methods?: string[] }> = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  // The test service implements every method of its definition but Missing.
  await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(new EventEmitter()) }] })
  await app.ready()
  t.teardown(async () => { await app.close() })
  const warnings = lines.filter(l => l.level === 40)
  t.equal(warnings.length, 1)
  t.same(warnings[0]?.methods, ['/test.Test/Missing'])
  t.equal(warnings[0]?.msg, 'fastify-grpc-ws: no implementation for /test.Test/Missing: calls to it get UNIMPLEMENTED')
  const full = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  const implementation = { ...createTestService(new EventEmitter()), Missing: () => {} }
  await full.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation }] })
  await full.ready()
  await full.close()
  t.equal(lines.filter(l => l.level === 40).length, 1, 'no warning once every method has a handler')
})
