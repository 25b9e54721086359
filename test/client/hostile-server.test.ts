// Both clients (the grpc-js channel and the browser client) against a
// server that breaks the protocol or abuses it: settings out of range,
// extra responses, GOAWAY before SETTINGS on every connection, floods of
// HEADERS, and a connection running out of stream ids.
import * as grpc from '@grpc/grpc-js'
import t, { type Test } from 'tap'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { ClientSession } from '../../lib/client/session.js'
import { Status } from '../../lib/client/web/index.js'
import { FrameType } from '../../lib/protocol/frame.js'
import { SendWindow } from '../../lib/protocol/flow-control.js'
import { OutboundMessages, buildMessageFrame } from '../../lib/protocol/outbound.js'
import { buildGoAway, buildHeaders, buildSettings, buildTrailers, type Settings } from '../../lib/protocol/payload.js'
import { bounded } from '../helpers/bounded.js'
import { collect, unary, unaryError } from '../helpers/parity.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { startRawServer, type RawConnection, type RawServer } from '../helpers/raw-server.js'
import { TestClient } from '../helpers/test-service.js'
import { catchingUncaught } from '../helpers/uncaught.js'
import { rejection, testRoot, webClient } from '../helpers/web-client.js'

const ResponseType = testRoot.lookupType('test.Response')
const response = (message: string): Uint8Array => ResponseType.encode({ message }).finish()

const goodSettings: Settings = { maxConcurrentStreams: 100, initialWindowSize: 65536, maxFrameSize: 65536, maxMessageSize: 4 << 20, maxMetadataSize: 16384 }

function clientOn (channel: grpc.ChannelInterface): any {
  return new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: channel })
}

async function rawServer (t: Test, ...args: Parameters<typeof startRawServer>): Promise<RawServer> {
  const server = await startRawServer(...args)
  t.teardown(async () => { await server.close() })
  return server
}

/** The CALL frames a connection has received, by stream id. */
function callIds (conn: RawConnection | undefined): number[] {
  return conn?.frames.filter(f => f.type === FrameType.CALL).map(f => f.streamId) ?? []
}

/** One WebSocket message carrying all of `frames`. */
function concat (frames: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0))
  let at = 0
  for (const f of frames) { out.set(f, at); at += f.byteLength }
  return out
}

// --- 14: SETTINGS out of range -------------------------------------------------

const outOfRange: Array<[keyof Settings, number, string]> = [
  ['maxConcurrentStreams', 0, 'MAX_CONCURRENT_STREAMS 0 is outside 1 … 2147483647'],
  ['maxConcurrentStreams', 0x80000000, 'MAX_CONCURRENT_STREAMS 2147483648 is outside 1 … 2147483647'],
  ['initialWindowSize', 1023, 'INITIAL_WINDOW_SIZE 1023 is outside 1024 … 2147483647'],
  ['initialWindowSize', 0x80000000, 'INITIAL_WINDOW_SIZE 2147483648 is outside 1024 … 2147483647'],
  ['maxFrameSize', 5, 'MAX_FRAME_SIZE 5 is outside 16384 … 16777216'],
  ['maxFrameSize', 16777217, 'MAX_FRAME_SIZE 16777217 is outside 16384 … 16777216'],
  ['maxMessageSize', 0x80000000, 'MAX_MESSAGE_SIZE 2147483648 is outside 0 … 2147483647'],
  ['maxMetadataSize', 1023, 'MAX_METADATA_SIZE 1023 is outside 1024 … 16777216'],
  ['maxMetadataSize', 16777217, 'MAX_METADATA_SIZE 16777217 is outside 1024 … 16777216']
]

t.test('Should close 1002 on a SETTINGS value out of range and fail the calls with INTERNAL', async t => {
  for (const [name, value, message] of outOfRange) {
    const server = await rawServer(t, { [name]: value })
    const { client, test } = webClient(server.url)
    t.teardown(() => { client.close() })
    const err = await rejection(async () => await test.unary({ mode: 'echo' }))
    t.same([err.code, err.details], [Status.INTERNAL, `Protocol error from the server: SETTINGS ${message}`], name)
    await server.until(() => server.connections[0]?.closeCode !== null)
    t.same([server.connections[0]!.closeCode, server.connections[0]!.closeReason], [1002, `SETTINGS ${message}`])
    t.same(callIds(server.connections[0]), [], 'no call went out under those settings')
  }
})

t.test('Should accept SETTINGS at the edges of their ranges', async t => {
  const edges: Settings[] = [
    { maxConcurrentStreams: 1, initialWindowSize: 1024, maxFrameSize: 16384, maxMessageSize: 0, maxMetadataSize: 1024 },
    { maxConcurrentStreams: 0x7fffffff, initialWindowSize: 0x7fffffff, maxFrameSize: 16777216, maxMessageSize: 0xffffffff, maxMetadataSize: 16777216 }
  ]
  for (const settings of edges) {
    const server = await rawServer(t, settings, { onFrame: (conn, frame) => {
      if (frame.type !== FrameType.HALF_CLOSE) return
      conn.send(concat([buildHeaders(frame.streamId, []), buildMessageFrame(frame.streamId, 0, response('fine')), buildTrailers(frame.streamId, { code: 0, details: '', metadata: [] })]))
    } })
    const { client, test } = webClient(server.url)
    t.teardown(() => { client.close() })
    t.equal((await test.unary({ mode: 'echo' })).message, 'fine')
  }
})

t.test('Should fail a bidi call with INTERNAL when a second SETTINGS brings MAX_FRAME_SIZE 5, not spin [grpc-js channel]', async t => {
  const server = await rawServer(t)
  const client = clientOn(createWebSocketChannel(server.url))
  t.teardown(() => client.close())
  const call = client.Bidi()
  const result = collect(call)
  call.write({ message: 'a' })
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.MESSAGE) === true)
  server.connections[0]!.send(buildSettings({ ...goodSettings, maxFrameSize: 5 }))
  // Before the fix, the next message looped for ever in the sender.
  setTimeout(() => { call.write({ message: 'b' }) }, 20)
  const { status } = await bounded('the status', result)
  t.same([status.code, status.details], [grpc.status.INTERNAL, 'Protocol error from the server: SETTINGS MAX_FRAME_SIZE 5 is outside 16384 … 16777216'])
  await server.until(() => server.connections[0]!.closeCode !== null)
  t.equal(server.connections[0]!.closeCode, 1002)
})

t.test('Should fail a bidi call with INTERNAL when a second SETTINGS brings MAX_FRAME_SIZE 5, not spin [browser client]', async t => {
  const server = await rawServer(t)
  const { client, test } = webClient(server.url)
  t.teardown(() => { client.close() })
  const call = test.bidi()
  void call.send({ message: 'a' })
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.MESSAGE) === true)
  server.connections[0]!.send(buildSettings({ ...goodSettings, maxFrameSize: 5 }))
  setTimeout(() => { void call.send({ message: 'b' }) }, 20)
  const err = await bounded('the failure', rejection(async () => { for await (const _ of call); }))
  t.same([err.code, err.details], [Status.INTERNAL, 'Protocol error from the server: SETTINGS MAX_FRAME_SIZE 5 is outside 16384 … 16777216'])
  await server.until(() => server.connections[0]!.closeCode !== null)
  t.equal(server.connections[0]!.closeCode, 1002)
})

t.test('Should leave a message queued, not loop, when the frame limit leaves no payload byte', async t => {
  const written: number[] = []
  const sink = { maxFramePayload: -5, canWrite: () => true, write: () => {}, writeMessage: (_id: number, _flags: number, chunk: Uint8Array) => { written.push(chunk.byteLength) } }
  const outbound = new OutboundMessages(1, new SendWindow(65536), sink)
  outbound.send(new Uint8Array(100))
  t.same(written, [], 'nothing written')
  t.equal(outbound.window.available, 65536, 'the window is untouched')
  outbound.send(new Uint8Array(0))
  t.same(written, [], 'an empty message waits behind it')
  sink.maxFramePayload = 16384
  outbound.pump()
  t.same(written, [100, 0], 'both waited, whole and in order, for a frame limit that leaves room')
})

// --- 15: a unary call answered with two messages ---------------------------------

/** Answers every call with two messages and OK in one WebSocket message. */
function twoMessagesThenOk (conn: RawConnection, frame: { type: number, streamId: number }): void {
  if (frame.type !== FrameType.HALF_CLOSE) return
  const id = frame.streamId
  conn.send(concat([buildHeaders(id, []), buildMessageFrame(id, 0, response('one')), buildMessageFrame(id, 0, response('two')), buildTrailers(id, { code: 0, details: '', metadata: [] })]))
}

t.test('Should end a unary call answered with two messages at its deadline, as grpc-js over HTTP/2 [grpc-js channel]', async t => {
  const server = await rawServer(t, {}, { onFrame: twoMessagesThenOk })
  const client = clientOn(createWebSocketChannel(server.url))
  t.teardown(() => client.close())
  const err = await bounded('the status', unaryError(client, { mode: 'echo' }, new grpc.Metadata(), { deadline: Date.now() + 300 }))
  t.equal(err.code, grpc.status.DEADLINE_EXCEEDED, 'the deadline beats the OK that waits for a second read')
})

t.test('Should fail a unary call answered with two messages with UNIMPLEMENTED [browser client]', async t => {
  const server = await rawServer(t, {}, { onFrame: twoMessagesThenOk })
  const { client, test } = webClient(server.url)
  t.teardown(() => { client.close() })
  const err = await bounded('the failure', rejection(async () => await test.unary({ mode: 'echo' })))
  t.same([err.code, err.details], [Status.UNIMPLEMENTED, 'Too many responses received'])
  const withDeadline = await bounded('the failure', rejection(async () => await test.unary({ mode: 'echo' }, { timeout: 300 })))
  t.equal(withDeadline.code, Status.UNIMPLEMENTED, 'the same with a deadline: the call does not hang')
})

// --- 16: GOAWAY before SETTINGS on every connection ---------------------------------

t.test('Should fail calls waiting for a connection that sends GOAWAY before SETTINGS with UNAVAILABLE', async t => {
  const server = await rawServer(t, {}, { sendSettings: false, onConnection: conn => { conn.send(buildGoAway({ lastStreamId: 0, reason: 'not today' })) } })
  const client = clientOn(createWebSocketChannel(server.url))
  t.teardown(() => client.close())
  const err = await bounded('the failure of a call without a deadline', unaryError(client, { mode: 'echo' }))
  t.same([err.code, err.details], [grpc.status.UNAVAILABLE, 'The server is going away: not today'])
  // The WebSocket's report: with the HTTP fallback, a GOAWAY before SETTINGS sends the call to HTTP.
  const web = webClient(server.url, { transports: ['websocket'] })
  t.teardown(() => { web.client.close() })
  const webErr = await bounded('the failure of a call without a deadline', rejection(async () => await web.test.unary({ mode: 'echo' })))
  t.same([webErr.code, webErr.details], [Status.UNAVAILABLE, 'The server is going away: not today'])
  t.equal(server.connections.length, 2, 'one attempt each')
})

t.test('Should space connection attempts by the backoff after each GOAWAY before SETTINGS', async t => {
  const server = await rawServer(t, {}, { sendSettings: false, onConnection: conn => { conn.send(buildGoAway({ lastStreamId: 0, reason: 'not today' })) } })
  // grpc-js's default backoff: attempts at 0 and about 1 s (± 20 %), the third after about 2.6 s.
  const client = clientOn(createWebSocketChannel(server.url))
  t.teardown(() => client.close())
  let stop = false
  let calls = 0
  const codes = new Set<number>()
  // An application that retries every failure at once.
  const loop = (async () => {
    while (!stop && calls < 10000) {
      calls++
      codes.add((await unaryError(client, { mode: 'echo' })).code)
    }
  })()
  await new Promise(resolve => setTimeout(resolve, 1500))
  const seen = server.connections.length
  stop = true
  client.close()
  await bounded('the retry loop', loop)
  t.ok(seen >= 1 && seen <= 3, `${seen} connections in 1.5 s (${calls} calls)`)
  t.same([...codes], [grpc.status.UNAVAILABLE])
})

t.test('Should fail a call waiting out a long backoff after connectTimeoutMs', async t => {
  const server = await rawServer(t, {}, { sendSettings: false, onConnection: conn => { conn.send(buildGoAway({ lastStreamId: 0, reason: 'not today' })) } })
  const client = clientOn(createWebSocketChannel(server.url, { connectTimeoutMs: 300, backoff: { initialMs: 60000 } }))
  t.teardown(() => client.close())
  t.equal((await unaryError(client, { mode: 'echo' })).code, grpc.status.UNAVAILABLE)
  const err = await bounded('the failure', unaryError(client, { mode: 'echo' }))
  t.same([err.code, err.details], [grpc.status.UNAVAILABLE, `Connection to ${server.url} not ready after 300 ms`])
  t.equal(server.connections.length, 1, 'no attempt before the backoff is over')
})

// --- 18: application callbacks that throw -------------------------------------------

t.test('Should surface an exception from a state listener as uncaught and carry on [browser client]', async t => {
  const { app, url } = await startPluginApp()
  t.teardown(async () => await app.close())
  const { client, test } = webClient(url)
  t.teardown(() => { client.close() })
  const thrown: unknown[] = []
  const reply = await catchingUncaught(thrown, async () => {
    // Runs inside the handling of the server's SETTINGS.
    client.onStateChange(state => { if (state === 'ready') throw new Error('a bug in the listener') })
    const reply = await bounded('the call', test.unary({ mode: 'echo', message: 'still fine' }))
    for (let i = 0; i < 100 && thrown.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
    return reply
  })
  t.equal(reply.message, 'still fine', 'the call on that socket succeeded')
  t.same(thrown.map(err => (err as Error).message), ['a bug in the listener'])
  t.equal(client.state, 'ready')
})

// --- 19: HEADERS after the first -------------------------------------------------------

function headersFlood (conn: RawConnection, frame: { type: number, streamId: number }): void {
  if (frame.type !== FrameType.HALF_CLOSE) return
  const id = frame.streamId
  const frames = [buildHeaders(id, [['x-first', 'yes']])]
  for (let i = 0; i < 10000; i++) frames.push(buildHeaders(id, [['x-later', String(i)]]))
  frames.push(buildMessageFrame(id, 0, response('done')), buildTrailers(id, { code: 0, details: '', metadata: [] }))
  conn.send(concat(frames))
}

t.test('Should deliver the first of 10,000 HEADERS only, as grpc-js [grpc-js channel]', async t => {
  const server = await rawServer(t, {}, { onFrame: headersFlood })
  const client = clientOn(createWebSocketChannel(server.url))
  t.teardown(() => client.close())
  const seen: grpc.Metadata[] = []
  const done = new Promise<{ err: grpc.ServiceError | null, value: any }>(resolve => {
    const call = client.Unary({ mode: 'echo' }, (err: grpc.ServiceError | null, value: any) => { resolve({ err, value }) })
    call.on('metadata', (md: grpc.Metadata) => { seen.push(md) })
  })
  const { err, value } = await bounded('the call', done)
  t.same([err, value.message], [null, 'done'])
  t.equal(seen.length, 1, "one 'metadata' event")
  t.same(seen[0]!.get('x-first'), ['yes'])
})

t.test('Should deliver the first of 10,000 HEADERS only [browser client]', async t => {
  const server = await rawServer(t, {}, { onFrame: headersFlood })
  const { client, test } = webClient(server.url)
  t.teardown(() => { client.close() })
  const call = test.unary({ mode: 'echo' })
  t.equal((await bounded('the call', call)).message, 'done')
  const headers = await call.headers
  t.same([headers.get('x-first'), headers.get('x-later')], ['yes', null])
})

// --- 20: stream ids running out ------------------------------------------------------

t.test('Should move new calls to a new connection before stream ids run out, and let calls in flight finish [grpc-js channel]', async t => {
  const first = ClientSession.firstStreamId
  t.teardown(() => { ClientSession.firstStreamId = first })
  // Three ids left per connection: 0xfffffffb, 0xfffffffd, 0xffffffff.
  ClientSession.firstStreamId = 0xfffffffb
  const server = await rawServer(t)
  const client = clientOn(createWebSocketChannel(server.url))
  t.teardown(() => client.close())
  const inFlight = [1, 2, 3].map(i => unary(client, { mode: 'echo', message: `old ${i}` }))
  await server.until(() => callIds(server.connections[0]).length === 3)
  const later = unary(client, { mode: 'echo' })
  await server.until(() => callIds(server.connections[1]).length === 1)
  t.same(callIds(server.connections[0]), [0xfffffffb, 0xfffffffd, 0xffffffff])
  t.same(callIds(server.connections[1]), [0xfffffffb], 'the fourth call went to a new connection, ids starting over')
  t.equal(server.connections[0]!.closeCode, null, 'the old connection stays open for its calls')
  const answer = (conn: RawConnection, id: number, message: string): void => {
    conn.send(concat([buildHeaders(id, []), buildMessageFrame(id, 0, response(message)), buildTrailers(id, { code: 0, details: '', metadata: [] })]))
  }
  answer(server.connections[0]!, 0xfffffffb, 'a')
  answer(server.connections[0]!, 0xfffffffd, 'b')
  t.same((await Promise.all(inFlight.slice(0, 2))).map(r => r.value.message), ['a', 'b'])
  t.equal(server.connections[0]!.closeCode, null, 'still open: one call left on it')
  answer(server.connections[0]!, 0xffffffff, 'c')
  t.equal((await inFlight[2]!).value.message, 'c')
  await server.until(() => server.connections[0]!.closeCode !== null)
  t.same([server.connections[0]!.closeCode, server.connections[0]!.closeReason], [1000, 'drained'], 'closed once drained')
  answer(server.connections[1]!, 0xfffffffb, 'd')
  t.equal((await later).value.message, 'd')
  t.equal(server.connections.length, 2)
})

t.test('Should carry calls across connections whose ids run out, against the plugin [browser client]', async t => {
  const first = ClientSession.firstStreamId
  t.teardown(() => { ClientSession.firstStreamId = first })
  ClientSession.firstStreamId = 0xfffffffb
  const { app, url } = await startPluginApp()
  t.teardown(async () => await app.close())
  let upgrades = 0
  app.websocketServer.on('connection', () => { upgrades++ })
  const { client, test } = webClient(url)
  t.teardown(() => { client.close() })
  const replies: string[] = []
  for (let i = 0; i < 7; i++) replies.push((await test.unary({ mode: 'echo', message: `m${i}` })).message)
  t.same(replies, ['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6'], 'every call succeeded')
  t.equal(upgrades, 3, 'three ids per connection: seven calls took three connections')
})
