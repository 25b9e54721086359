/**
 * The two existing `grpc-websockets` clients, unmodified, against the
 * plugin's compatibility route, in Node 20 over loopback:
 * @improbable-eng/grpc-web's WebsocketTransport and nice-grpc-web's
 * WebsocketTransport. Each runs the same scenarios: the four kinds of call,
 * metadata both ways (binary too), statuses with non-ASCII messages,
 * cancellation reaching the handler, deadlines, size limits, unknown methods.
 *
 * Client quirks worked around here, and why:
 * - Node 20 has no global WebSocket, and improbable's transport uses the
 *   global one (a browser's). `ws` is installed as globalThis.WebSocket: it
 *   has the WHATWG surface improbable uses (onopen/onmessage/onclose,
 *   binaryType 'arraybuffer', a protocols array, readyState constants on the
 *   instance). nice-grpc-web imports isomorphic-ws, which is `ws` under Node:
 *   it needs no global.
 * - improbable needs generated message classes (serializeBinary,
 *   deserializeBinary, toObject); they are built by hand below over the
 *   test proto's grpc-js (de)serializers. nice-grpc-web takes a generic
 *   definition, built from the same grpc-js definition.
 * - improbable's grpc.invoke refuses client-streaming methods: client and
 *   bidi streaming use grpc.client (whose WebsocketTransport does stream).
 * - improbable's metadata holds strings only: a `-bin` value is passed as
 *   base64 text, and response `-bin` values arrive as base64 text.
 *   nice-grpc-web takes and gives Uint8Array for `-bin` keys.
 * - Neither client has a deadline option that reaches the server:
 *   improbable has none, nice-grpc-web's deadline middleware only aborts on
 *   the client. The tests send `grpc-timeout` metadata, as an app would.
 * - improbable reports the first metadata frame through onHeaders, so a
 *   trailers-only response (an error) also shows up as headers.
 * - nice-grpc-web reports a cancel as its own AbortError, not a status.
 */
import improbable from '@improbable-eng/grpc-web'
import * as grpcJs from '@grpc/grpc-js'
import Fastify from 'fastify'
import {
  ClientError, Metadata, Status, WebsocketTransport, createChannel, createClient, type MethodDefinition
} from 'nice-grpc-web'
import { EventEmitter } from 'node:events'
import t from 'tap'
import { WebSocket } from 'ws'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createTestService, testDefinition, type Request, type Response } from '../helpers/test-service.js'
import { bounded } from '../helpers/bounded.js'
import { lockstepBidi } from '../helpers/lockstep.js'

// improbable's WebsocketTransport opens `new WebSocket(url, ['grpc-websockets'])`
// with the global class: `ws` here, also on a Node that has its own, so every
// Node runs the same client code.
;(globalThis as { WebSocket?: unknown }).WebSocket = WebSocket

const { grpc } = improbable
type ImprobableMetadata = InstanceType<typeof grpc.Metadata>

const events = new EventEmitter()
events.setMaxListeners(0)
const apps: Array<ReturnType<typeof Fastify>> = []
t.teardown(async () => { for (const app of apps) await app.close() })

/** Starts the plugin; returns the http:// base both clients take (they turn it into ws://). */
async function start (options: Partial<FastifyGrpcWsOptions> = {}): Promise<string> {
  const app = Fastify()
  apps.push(app)
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`
}

const host = await start()


function handlerEvent (id: string): Promise<any> {
  return bounded(`the handler event ${id}`, new Promise(resolve => events.once(id, resolve)))
}

const NON_ASCII = 'ünïcödé ✓ 🙂 100% done\r\n'

// --- @improbable-eng/grpc-web: hand-built "generated" descriptors --------------------

const unaryDefinition = testDefinition.Unary!

class RequestMessage {
  constructor (readonly value: Request = {}) {}
  toObject (): Request { return this.value }
  serializeBinary (): Uint8Array { return unaryDefinition.requestSerialize(this.value) }
  static deserializeBinary (bytes: Uint8Array): RequestMessage { return new RequestMessage(unaryDefinition.requestDeserialize(Buffer.from(bytes))) }
}

class ResponseMessage {
  constructor (readonly value: Response = { message: '', payload: Buffer.alloc(0) }) {}
  toObject (): Response { return this.value }
  serializeBinary (): Uint8Array { return unaryDefinition.responseSerialize(this.value) }
  static deserializeBinary (bytes: Uint8Array): ResponseMessage { return new ResponseMessage(unaryDefinition.responseDeserialize(Buffer.from(bytes))) }
}

function descriptor (methodName: string, requestStream: boolean, responseStream: boolean) {
  return {
    methodName,
    service: { serviceName: 'test.Test' },
    requestStream,
    responseStream,
    requestType: RequestMessage,
    responseType: ResponseMessage
  }
}

const Test = {
  Unary: descriptor('Unary', false, false),
  ServerStream: descriptor('ServerStream', false, true),
  ClientStream: descriptor('ClientStream', true, false),
  Bidi: descriptor('Bidi', true, true),
  Missing: descriptor('Missing', false, false),
  Nope: descriptor('Nope', false, false)
}

interface ImprobableResult {
  code: number
  message: string
  headers: ImprobableMetadata | null
  trailers: ImprobableMetadata
  messages: Response[]
}

/** A call through grpc.client (all four kinds); `drive` sends the requests. */
function improbableCall (
  method: ReturnType<typeof descriptor>,
  drive: (client: ReturnType<typeof grpc.client<RequestMessage, ResponseMessage, ReturnType<typeof descriptor>>>, messages: Response[]) => void,
  options: { metadata?: Record<string, string | string[]>, host?: string } = {}
): Promise<ImprobableResult> {
  return bounded(`improbable ${method.methodName}`, new Promise(resolve => {
    const client = grpc.client<RequestMessage, ResponseMessage, typeof method>(method, { host: options.host ?? host, transport: grpc.WebsocketTransport() })
    let headers: ImprobableMetadata | null = null
    const messages: Response[] = []
    client.onHeaders(h => { headers = h })
    client.onMessage(m => { messages.push(m.value) })
    client.onEnd((code, message, trailers) => { resolve({ code, message, headers, trailers, messages }) })
    client.start(options.metadata)
    drive(client, messages)
  }))
}

/** One request, then the end of the request stream (unary and server streaming). */
async function improbableOne (method: ReturnType<typeof descriptor>, request: Request, options: { metadata?: Record<string, string | string[]>, host?: string } = {}): Promise<ImprobableResult> {
  return await improbableCall(method, client => {
    client.send(new RequestMessage(request))
    client.finishSend()
  }, options)
}

// --- nice-grpc-web: a generic definition from the grpc-js one ------------------------------

function niceMethod<RS extends boolean, SS extends boolean> (method: grpcJs.MethodDefinition<Request, Response>, requestStream: RS, responseStream: SS): MethodDefinition<Request, Request, Response, Response, RS, SS> {
  return {
    path: method.path,
    requestStream,
    responseStream,
    requestSerialize: value => method.requestSerialize(value),
    requestDeserialize: bytes => method.requestDeserialize(Buffer.from(bytes)),
    responseSerialize: value => method.responseSerialize(value),
    responseDeserialize: bytes => method.responseDeserialize(Buffer.from(bytes)),
    options: {}
  }
}

const niceDefinition = {
  unary: niceMethod(testDefinition.Unary!, false, false),
  serverStream: niceMethod(testDefinition.ServerStream!, false, true),
  clientStream: niceMethod(testDefinition.ClientStream!, true, false),
  bidi: niceMethod(testDefinition.Bidi!, true, true),
  missing: niceMethod(testDefinition.Missing!, false, false),
  nope: { ...niceMethod(testDefinition.Unary!, false, false), path: '/test.Test/Nope' }
}

const niceClient = (base = host) => createClient(niceDefinition, createChannel(base, WebsocketTransport()))
const nice = niceClient()

async function niceError (call: Promise<unknown>): Promise<ClientError> {
  try {
    await bounded('a nice-grpc-web error', call)
  } catch (err) {
    if (err instanceof ClientError) return err
    throw err
  }
  throw new Error('the call succeeded')
}

async function * from<T> (items: T[]): AsyncIterable<T> {
  for (const item of items) yield item
}

async function collect<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}

// --- the four kinds ---------------------------------------------------------------------------

t.test('improbable: unary', async t => {
  const result = await improbableOne(Test.Unary, { mode: 'echo', message: 'hi', payload: Buffer.from([0, 1, 255]) })
  t.equal(result.code, grpc.Code.OK)
  t.equal(result.messages.length, 1)
  t.equal(result.messages[0]!.message, 'hi')
  t.same([...result.messages[0]!.payload], [0, 1, 255])
})

t.test('nice-grpc-web: unary', async t => {
  const response = await bounded('unary', nice.unary({ mode: 'echo', message: 'hi', payload: Buffer.from([0, 1, 255]) }))
  t.equal(response.message, 'hi')
  t.same([...response.payload], [0, 1, 255])
})

t.test('improbable: server streaming', async t => {
  const result = await improbableOne(Test.ServerStream, { mode: 'count', count: 5, size: 3 })
  t.equal(result.code, grpc.Code.OK)
  t.same(result.messages.map(m => m.message), ['0', '1', '2', '3', '4'])
  t.same(result.messages.map(m => [...m.payload]), [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]])
})

t.test('nice-grpc-web: server streaming', async t => {
  const messages = await bounded('the stream', collect(nice.serverStream({ mode: 'count', count: 5, size: 3 })))
  t.same(messages.map(m => m.message), ['0', '1', '2', '3', '4'])
})

t.test('improbable: client streaming (its WebsocketTransport streams requests)', async t => {
  const result = await improbableCall(Test.ClientStream, client => {
    for (const message of ['a', 'b', 'c']) client.send(new RequestMessage({ message, payload: Buffer.alloc(10) }))
    client.finishSend()
  })
  t.equal(result.code, grpc.Code.OK)
  t.equal(result.messages[0]!.message, 'a,b,c')
  t.equal(result.messages[0]!.payload.toString(), '30', 'the handler counted 30 payload bytes')
})

t.test('nice-grpc-web: client streaming', async t => {
  const response = await bounded('client stream', nice.clientStream(from(['a', 'b', 'c'].map(message => ({ message, payload: Buffer.alloc(10) })))))
  t.equal(response.message, 'a,b,c')
  t.equal(Buffer.from(response.payload).toString(), '30')
})

t.test('improbable: bidi, each request sent only after the previous answer arrived', async t => {
  const words = ['ping', 'pong', 'done']
  const result = await improbableCall(Test.Bidi, (client, messages) => {
    client.send(new RequestMessage({ message: words[0] }))
    client.onMessage(() => {
      if (messages.length < words.length) client.send(new RequestMessage({ message: words[messages.length] }))
      else client.finishSend()
    })
  })
  t.equal(result.code, grpc.Code.OK)
  t.same(result.messages.map(m => m.message), ['PING', 'PONG', 'DONE'])
})

t.test('nice-grpc-web: bidi, each request sent only after the previous answer arrived', async t => {
  t.same(await lockstepBidi(requests => nice.bidi(requests), ['ping', 'pong', 'done']), ['PING', 'PONG', 'DONE'])
})

// --- metadata both ways ---------------------------------------------------------------------------

t.test('improbable: request metadata (repeated, binary as base64) reaches the handler as grpc-js metadata', async t => {
  const result = await improbableOne(Test.Unary, { mode: 'info' }, {
    metadata: { authorization: 'Bearer t', 'x-multi': ['a', 'b'], 'x-id-bin': [Buffer.from([0, 1, 254, 255]).toString('base64'), Buffer.from('two').toString('base64')] }
  })
  const info = JSON.parse(result.messages[0]!.message)
  t.same(info.metadata, {
    authorization: ['Bearer t'],
    'x-multi': ['a, b'],
    'x-id-bin': [{ bin: '0001feff' }, { bin: '74776f' }]
  }, 'improbable joins repeated values with ", ": the handler sees them as over HTTP/2')
  t.equal(info.path, '/test.Test/Unary')
})

t.test('nice-grpc-web: request metadata (repeated, binary) reaches the handler as grpc-js metadata', async t => {
  const response = await bounded('info', nice.unary({ mode: 'info' }, {
    metadata: Metadata({ authorization: 'Bearer t', 'x-multi': ['a', 'b'], 'x-id-bin': [new Uint8Array([0, 1, 254, 255]), new TextEncoder().encode('two')] })
  }))
  t.same(JSON.parse(response.message).metadata, {
    authorization: ['Bearer t'],
    'x-multi': ['a, b'],
    'x-id-bin': [{ bin: '0001feff' }, { bin: '74776f' }]
  }, 'the same handler metadata as improbable\'s (nice-grpc-web joins ASCII values itself, and sends a line for each binary value)')
})

t.test('improbable: response headers and trailers, binary values as base64 text', async t => {
  const headers = await improbableOne(Test.ServerStream, { mode: 'headers-first' })
  t.same(headers.headers?.get('x-header-text'), ['value one'])
  t.same(headers.headers?.get('x-header-repeated'), ['a', 'b'])
  t.same(headers.headers?.get('x-header-bin').map(v => Buffer.from(v, 'base64').toString('hex')), ['000102feff', Buffer.from('second').toString('hex')])
  t.same(headers.messages.map(m => m.message), ['first'])
  const trailers = await improbableOne(Test.Unary, { mode: 'trailers' })
  t.equal(trailers.code, grpc.Code.OK)
  t.same(trailers.trailers.get('x-trailer'), ['trailer value'])
  t.same(trailers.trailers.get('x-trailer-bin'), ['AQID'])
})

t.test('nice-grpc-web: response headers and trailers, binary values decoded', async t => {
  let headers: Metadata | undefined
  const messages = await bounded('stream', collect(nice.serverStream({ mode: 'headers-first' }, { onHeader: h => { headers = h } })))
  t.same(messages.map(m => m.message), ['first'])
  t.same(headers?.getAll('x-header-repeated'), ['a, b'], 'two lines on the wire; nice-grpc-web\'s Metadata joins ASCII values, as HTTP/2 does')
  t.same(headers?.getAll('x-header-bin').map(v => Buffer.from(v).toString('hex')), ['000102feff', Buffer.from('second').toString('hex')])
  let trailer: Metadata | undefined
  await bounded('unary', nice.unary({ mode: 'trailers' }, { onTrailer: tr => { trailer = tr } }))
  t.same(trailer?.get('x-trailer'), 'trailer value')
  t.same([...(trailer?.get('x-trailer-bin') ?? [])], [1, 2, 3])
})

// --- statuses ----------------------------------------------------------------------------------------------

t.test('improbable: every status code 1..16 with a non-ASCII message and trailing metadata', async t => {
  for (let code = 1; code <= 16; code++) {
    const result = await improbableOne(Test.Unary, { mode: 'status', code, details: `${NON_ASCII} #${code}` })
    t.equal(result.code, code, `code ${code}`)
    t.equal(result.message, `${NON_ASCII} #${code}`)
    t.same(result.trailers.get('x-error-text'), ['error value'])
    t.same(result.trailers.get('x-error-bin'), [Buffer.from([9, 8, 7]).toString('base64')])
  }
  const thrown = await improbableOne(Test.Unary, { mode: 'error-object', details: 'plain Error' })
  t.same([thrown.code, thrown.message], [grpc.Code.Unknown, 'plain Error'], 'an Error maps to UNKNOWN as with grpc-js')
})

t.test('nice-grpc-web: every status code 1..16 with a non-ASCII message and trailing metadata', async t => {
  for (let code = 1; code <= 16; code++) {
    let trailer: Metadata | undefined
    const err = await niceError(nice.unary({ mode: 'status', code, details: `${NON_ASCII} #${code}` }, { onTrailer: tr => { trailer = tr } }))
    t.equal(err.code, code, `code ${code}`)
    t.equal(err.details, `${NON_ASCII} #${code}`)
    t.same(trailer?.get('x-error-text'), 'error value')
    t.same([...(trailer?.get('x-error-bin') ?? [])], [9, 8, 7])
  }
  const thrown = await niceError(nice.unary({ mode: 'error-object', details: 'plain Error' }))
  t.same([thrown.code, thrown.details], [Status.UNKNOWN, 'plain Error'])
})

t.test('improbable: a status after messages, on a stream', async t => {
  const result = await improbableOne(Test.ServerStream, { mode: 'status-after-write', code: grpc.Code.Aborted, details: NON_ASCII })
  t.same(result.messages.map(m => m.message), ['one'])
  t.same([result.code, result.message], [grpc.Code.Aborted, NON_ASCII])
})

t.test('nice-grpc-web: a status after messages, on a stream', async t => {
  const got: string[] = []
  const err = await niceError((async () => { for await (const m of nice.serverStream({ mode: 'status-after-write', code: Status.ABORTED, details: NON_ASCII })) got.push(m.message) })())
  t.same(got, ['one'])
  t.same([err.code, err.details], [Status.ABORTED, NON_ASCII])
})

t.test('improbable: unknown and unimplemented methods give UNIMPLEMENTED', async t => {
  const nope = await improbableOne(Test.Nope, {})
  t.same([nope.code, nope.message], [grpc.Code.Unimplemented, 'The server does not implement the method /test.Test/Nope'])
  const missing = await improbableOne(Test.Missing, {})
  t.same([missing.code, missing.message], [grpc.Code.Unimplemented, 'The server does not implement the method Missing'], 'grpc-js\'s own answer for a method left out')
})

t.test('nice-grpc-web: unknown and unimplemented methods give UNIMPLEMENTED', async t => {
  const nope = await niceError(nice.nope({}))
  t.same([nope.code, nope.details], [Status.UNIMPLEMENTED, 'The server does not implement the method /test.Test/Nope'])
  const missing = await niceError(nice.missing({}))
  t.same([missing.code, missing.details], [Status.UNIMPLEMENTED, 'The server does not implement the method Missing'])
})

// --- cancellation ----------------------------------------------------------------------------------------------

t.test('improbable: close() reaches the handler as \'cancelled\', after the half-close and before it', async t => {
  const streamCancelled = handlerEvent('imp-cancel-stream')
  const stream = grpc.client(Test.ServerStream, { host, transport: grpc.WebsocketTransport() })
  const firstTick = new Promise<void>(resolve => { stream.onMessage(() => { resolve() }) })
  stream.start()
  stream.send(new RequestMessage({ mode: 'endless', id: 'imp-cancel-stream' }))
  stream.finishSend()
  await bounded('the first message', firstTick)
  stream.close()
  t.match(await streamCancelled, { event: 'cancelled', cancelled: true }, 'server stream, cancelled after the half-close')

  const bidiCancelled = handlerEvent('imp-cancel-bidi')
  const bidi = grpc.client(Test.Bidi, { host, transport: grpc.WebsocketTransport() })
  const echoed = new Promise<void>(resolve => { bidi.onMessage(() => { resolve() }) })
  bidi.start()
  bidi.send(new RequestMessage({ id: 'imp-cancel-bidi', message: 'x' }))
  await bounded('the echo', echoed)
  bidi.close()
  t.match(await bidiCancelled, { event: 'cancelled', cancelled: true }, 'bidi, cancelled before the half-close')
})

t.test('nice-grpc-web: an aborted signal reaches the handler as \'cancelled\', after the half-close and before it', async t => {
  const streamCancelled = handlerEvent('nice-cancel-stream')
  const controller = new AbortController()
  const stream = (async () => {
    for await (const _ of nice.serverStream({ mode: 'endless', id: 'nice-cancel-stream' }, { signal: controller.signal })) controller.abort()
  })()
  await t.rejects(bounded('the abort', stream), { name: 'AbortError' }, 'the client sees its own AbortError')
  t.match(await streamCancelled, { event: 'cancelled', cancelled: true }, 'server stream, cancelled after the half-close')

  const bidiCancelled = handlerEvent('nice-cancel-bidi')
  const bidiController = new AbortController()
  async function * requests (): AsyncIterable<Request> {
    yield { id: 'nice-cancel-bidi', message: 'x' }
    await new Promise(resolve => bidiController.signal.addEventListener('abort', resolve))
  }
  const bidi = (async () => {
    for await (const _ of nice.bidi(requests(), { signal: bidiController.signal })) bidiController.abort()
  })()
  await t.rejects(bounded('the abort', bidi), { name: 'AbortError' })
  t.match(await bidiCancelled, { event: 'cancelled', cancelled: true }, 'bidi, cancelled before the half-close')
})

// --- deadlines -------------------------------------------------------------------------------------------------

t.test('improbable: grpc-timeout gives DEADLINE_EXCEEDED, and the handler is cancelled', async t => {
  const cancelled = handlerEvent('imp-deadline')
  const started = Date.now()
  const result = await improbableOne(Test.Unary, { mode: 'never', id: 'imp-deadline' }, { metadata: { 'grpc-timeout': '200m' } })
  const elapsed = Date.now() - started
  t.same([result.code, result.message], [grpc.Code.DeadlineExceeded, 'Deadline exceeded'])
  t.ok(elapsed >= 190 && elapsed < 3000, `after ${elapsed} ms`)
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
  const bad = await improbableOne(Test.Unary, { mode: 'echo' }, { metadata: { 'grpc-timeout': 'soon' } })
  t.same([bad.code, bad.message], [grpc.Code.Internal, 'Invalid grpc-timeout value "soon"'])
})

t.test('nice-grpc-web: grpc-timeout gives DEADLINE_EXCEEDED, and the handler is cancelled', async t => {
  const cancelled = handlerEvent('nice-deadline')
  const started = Date.now()
  const err = await niceError(nice.unary({ mode: 'never', id: 'nice-deadline' }, { metadata: Metadata({ 'grpc-timeout': '200m' }) }))
  const elapsed = Date.now() - started
  t.same([err.code, err.details], [Status.DEADLINE_EXCEEDED, 'Deadline exceeded'])
  t.ok(elapsed >= 190 && elapsed < 3000, `after ${elapsed} ms`)
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

// --- limits -------------------------------------------------------------------------------------------------------

const limited = await start({ maxReceiveMessageSize: 1024, maxSendMessageSize: 1024 })
const niceLimited = niceClient(limited)

t.test('improbable: request and response messages over the limits give RESOURCE_EXHAUSTED', async t => {
  const request: Request = { mode: 'echo', payload: Buffer.alloc(2000) }
  const big = await improbableOne(Test.Unary, request, { host: limited })
  t.same([big.code, big.message], [grpc.Code.ResourceExhausted, `Received message larger than max (${unaryDefinition.requestSerialize(request).length} vs 1024)`])
  const bigResponse = await improbableOne(Test.Unary, { mode: 'size', size: 2000 }, { host: limited })
  t.same([bigResponse.code, bigResponse.message], [grpc.Code.ResourceExhausted, 'Sent message larger than max (2008 vs. 1024)'])
  const fits = await improbableOne(Test.Unary, { mode: 'echo', payload: Buffer.alloc(1000) }, { host: limited })
  t.equal(fits.code, grpc.Code.OK, 'a message under the limit goes through')
})

t.test('nice-grpc-web: request and response messages over the limits give RESOURCE_EXHAUSTED', async t => {
  const request: Request = { mode: 'echo', payload: Buffer.alloc(2000) }
  const big = await niceError(niceLimited.unary(request))
  t.same([big.code, big.details], [Status.RESOURCE_EXHAUSTED, `Received message larger than max (${unaryDefinition.requestSerialize(request).length} vs 1024)`])
  const bigResponse = await niceError(niceLimited.unary({ mode: 'size', size: 2000 }))
  t.same([bigResponse.code, bigResponse.details], [Status.RESOURCE_EXHAUSTED, 'Sent message larger than max (2008 vs. 1024)'])
})

t.test('both: request and response messages larger than maxFrameSize pass (up to the message size limits)', async t => {
  // Both clients send a whole request in one WebSocket message; the plugin
  // accepts messages up to maxReceiveMessageSize on this route for them.
  const payload = Buffer.alloc(300 * 1024, 1)
  const imp = await improbableOne(Test.Unary, { mode: 'echo', payload })
  t.equal(imp.messages[0]?.payload.length, payload.length, 'improbable')
  const niceOk = await bounded('unary', nice.unary({ mode: 'echo', payload }))
  t.equal(niceOk.payload.length, payload.length, 'nice-grpc-web')
  const bigResponse = await bounded('unary', nice.unary({ mode: 'size', size: 3 * 1024 * 1024 }))
  t.equal(bigResponse.payload.length, 3 * 1024 * 1024, 'a 3 MiB response')
})

// --- a measure ------------------------------------------------------------------------------------------------------

t.test('both: 200 sequential unary calls and a 2,000-message stream complete (timings in the comments)', async t => {
  let started = performance.now()
  for (let i = 0; i < 200; i++) {
    const r = await improbableOne(Test.Unary, { mode: 'echo', message: String(i) })
    if (r.messages[0]?.message !== String(i)) { t.fail(`improbable call ${i}`); return }
  }
  const improbableUnaryMs = (performance.now() - started) / 200
  started = performance.now()
  for (let i = 0; i < 200; i++) {
    const r = await bounded(`nice call ${i}`, nice.unary({ mode: 'echo', message: String(i) }))
    if (r.message !== String(i)) { t.fail(`nice call ${i}`); return }
  }
  const niceUnaryMs = (performance.now() - started) / 200
  started = performance.now()
  const impStream = await improbableOne(Test.ServerStream, { mode: 'count', count: 2000, size: 1024 })
  const improbableStreamMs = performance.now() - started
  started = performance.now()
  const niceStream = await bounded('stream', collect(nice.serverStream({ mode: 'count', count: 2000, size: 1024 })))
  const niceStreamMs = performance.now() - started
  t.equal(impStream.messages.length, 2000)
  t.equal(niceStream.length, 2000)
  t.comment(`improbable: ${improbableUnaryMs.toFixed(2)} ms per unary call (socket each), 2,000 x 1 KiB stream in ${improbableStreamMs.toFixed(0)} ms`)
  t.comment(`nice-grpc-web: ${niceUnaryMs.toFixed(2)} ms per unary call (socket each), 2,000 x 1 KiB stream in ${niceStreamMs.toFixed(0)} ms`)
})
