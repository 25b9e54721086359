/**
 * Calls through the installed package, run by scripts/test-package.mjs inside
 * a temporary app against the lowest and the highest peer versions. It takes
 * nothing from this repository but the tarball: one Fastify app with the
 * plugin and a grpc-js Server, the same handlers, and each check made over
 * WebSocket (createWebSocketChannel) and over HTTP/2. Prints TAP lines.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import fastifyGrpcWs from 'fastify-grpc-ws'
import { createWebSocketChannel } from 'fastify-grpc-ws/grpc-js'
import { createRequire } from 'node:module'

interface Message { text: string, count?: number }

const json = {
  serialize: (value: Message): Buffer => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer): Message => JSON.parse(bytes.toString()) as Message
}
function method (name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Message, Message> {
  return {
    path: `/check.Check/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize
  }
}
const definition = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  ClientStream: method('ClientStream', true, false),
  Bidi: method('Bidi', true, true),
  Hang: method('Hang', false, false),
  Throw: method('Throw', false, false)
} satisfies grpc.ServiceDefinition

// What handlers saw, by the request's text: whether 'cancelled' fired, and
// whether the metadata is the app's grpc-js Metadata (one grpc-js copy).
const cancelled = new Set<string>()
const metadataIsAppGrpc: boolean[] = []

const implementation: grpc.UntypedServiceImplementation = {
  Unary: ((call, callback) => {
    metadataIsAppGrpc.push(call.metadata instanceof grpc.Metadata)
    callback(null, { text: call.request.text })
  }) satisfies grpc.handleUnaryCall<Message, Message>,
  ServerStream: (call => {
    for (let i = 1; i <= (call.request.count ?? 0); i++) call.write({ text: `${call.request.text} #${i}` })
    call.end()
  }) satisfies grpc.handleServerStreamingCall<Message, Message>,
  ClientStream: ((call, callback) => {
    const texts: string[] = []
    call.on('data', (m: Message) => texts.push(m.text))
    call.on('end', () => { callback(null, { text: texts.join(' ') }) })
  }) satisfies grpc.handleClientStreamingCall<Message, Message>,
  Bidi: (call => {
    call.on('data', (m: Message) => call.write({ text: m.text.toUpperCase() }))
    call.on('end', () => { call.end() })
  }) satisfies grpc.handleBidiStreamingCall<Message, Message>,
  Hang: (call => {
    // Never answers: the client's deadline or cancel ends it.
    call.on('cancelled', () => cancelled.add(call.request.text))
  }) satisfies grpc.handleUnaryCall<Message, Message>,
  Throw: (() => { throw new Error('thrown in the handler') }) satisfies grpc.handleUnaryCall<Message, Message>
}

const Client = grpc.makeGenericClientConstructor(definition, 'Check')

let n = 0
let failures = 0
function check (ok: boolean, name: string, detail?: unknown): void {
  n++
  if (!ok) failures++
  console.log(`${ok ? 'ok' : 'not ok'} ${n} - ${name}`)
  if (!ok && detail !== undefined) console.log(`  # ${JSON.stringify(detail)}`)
}

function unary (client: grpc.Client, name: string, request: Message, options: grpc.CallOptions = {}): { call: grpc.ClientUnaryCall, result: Promise<{ err: grpc.ServiceError | null, value?: Message }> } {
  let call!: grpc.ClientUnaryCall
  const result = new Promise<{ err: grpc.ServiceError | null, value?: Message }>(resolve => {
    call = client.makeUnaryRequest(`/check.Check/${name}`, json.serialize, json.deserialize, request, new grpc.Metadata(), { deadline: Date.now() + 10_000, ...options },
      (err, value) => { resolve(value === undefined ? { err } : { err, value }) })
  })
  return { call, result }
}

async function collect (stream: AsyncIterable<unknown>): Promise<string[]> {
  const texts: string[] = []
  for await (const m of stream) texts.push((m as Message).text)
  return texts
}

/** Resolves once `predicate` holds, polling at most `ms`. */
async function eventually (predicate: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms
  while (!predicate() && Date.now() < end) await new Promise(resolve => setTimeout(resolve, 20))
  return predicate()
}

async function run (client: grpc.Client, transport: string): Promise<Record<string, unknown>> {
  const seen: Record<string, unknown> = {}

  const u = await unary(client, 'Unary', { text: 'hi' }).result
  check(u.err === null && u.value?.text === 'hi', `${transport}: unary`, u)

  const ss = client.makeServerStreamRequest('/check.Check/ServerStream', json.serialize, json.deserialize, { text: 'tick', count: 3 }, new grpc.Metadata(), { deadline: Date.now() + 10_000 })
  const ticks = await collect(ss)
  check(ticks.join(',') === 'tick #1,tick #2,tick #3', `${transport}: server streaming`, ticks)

  const joined = await new Promise<Message | undefined>((resolve, reject) => {
    const cs = client.makeClientStreamRequest('/check.Check/ClientStream', json.serialize, json.deserialize, new grpc.Metadata(), { deadline: Date.now() + 10_000 },
      (err, value) => { if (err !== null) reject(err); else resolve(value) })
    cs.write({ text: 'one' })
    cs.write({ text: 'two' })
    cs.end()
  })
  check(joined?.text === 'one two', `${transport}: client streaming`, joined)

  const bidi = client.makeBidiStreamRequest('/check.Check/Bidi', json.serialize, json.deserialize, new grpc.Metadata(), { deadline: Date.now() + 10_000 })
  bidi.write({ text: 'ping' })
  bidi.write({ text: 'pong' })
  bidi.end()
  const echoed = await collect(bidi)
  check(echoed.join(',') === 'PING,PONG', `${transport}: bidi`, echoed)

  const deadlineKey = `deadline-${transport}`
  const d = await unary(client, 'Hang', { text: deadlineKey }, { deadline: Date.now() + 300 }).result
  check(d.err?.code === grpc.status.DEADLINE_EXCEEDED, `${transport}: deadline exceeded`, d.err?.message)
  check(await eventually(() => cancelled.has(deadlineKey)), `${transport}: the handler sees 'cancelled' at the deadline`)

  const cancelKey = `cancel-${transport}`
  const c = unary(client, 'Hang', { text: cancelKey })
  setTimeout(() => { c.call.cancel() }, 100)
  const cr = await c.result
  check(cr.err?.code === grpc.status.CANCELLED, `${transport}: cancel`, cr.err?.message)
  check(await eventually(() => cancelled.has(cancelKey)), `${transport}: the handler sees 'cancelled' on cancel`)

  const thrown = await unary(client, 'Throw', { text: 'x' }).result
  seen.thrown = { code: thrown.err?.code, details: thrown.err?.details }
  check(thrown.err?.code === grpc.status.UNKNOWN, `${transport}: a throwing handler gives UNKNOWN`, seen.thrown)
  return seen
}

const grpcServer = new grpc.Server()
const app = Fastify()
await app.register(fastifyGrpcWs, { path: '/grpc', services: [{ definition, implementation }], grpcServer })
await app.listen({ host: '127.0.0.1', port: 0 })
const address = app.server.address()
const wsPort = typeof address === 'object' && address !== null ? address.port : 0
const grpcPort = await new Promise<number>((resolve, reject) => {
  grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => { if (err !== null) reject(err); else resolve(port) })
})

const overHttp2 = new Client(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure())
const overWebSocket = new Client('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(`ws://127.0.0.1:${wsPort}/grpc`) })
try {
  check(app.grpc.subprotocol === 'grpc-ws.v1', 'app.grpc is decorated (and typed: this file type-checks)')
  const http2 = await run(overHttp2, 'http/2')
  const websocket = await run(overWebSocket, 'websocket')
  // The same details both ways, whichever grpc-js: 1.14.0-1.14.4 always put
  // the message in, later ones only with GRPC_NODE_DEBUG_SEND_ERROR_DETAILS.
  check(JSON.stringify(websocket.thrown) === JSON.stringify(http2.thrown), 'a throwing handler: the same status over both', { websocket: websocket.thrown, http2: http2.thrown })
  check(metadataIsAppGrpc.length === 2 && metadataIsAppGrpc.every(Boolean), 'handlers get the app\'s grpc.Metadata (one copy of grpc-js)', metadataIsAppGrpc)

  // Serving never loads light-my-request (fastify.inject's, which pulls in
  // cookie, whose engines say node >= 22): fastify requires it on first inject.
  const loaded = Object.keys(createRequire(import.meta.url).cache)
  check(!loaded.some(file => /[/\\](light-my-request|cookie)[/\\]/.test(file)), 'serving loads neither light-my-request nor cookie')
  const injected = await app.inject({ url: '/nothing-here', cookies: { a: 'b' } })
  check(injected.statusCode === 404, `fastify.inject runs on Node ${process.version}`, injected.statusCode)
} finally {
  overHttp2.close()
  overWebSocket.close()
  await app.close()
  await new Promise<void>(resolve => { grpcServer.tryShutdown(() => { resolve() }) })
}
console.log(`1..${n}`)
process.exitCode = failures === 0 ? 0 : 1
