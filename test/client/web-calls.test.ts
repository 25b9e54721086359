// The browser client's calls, run in Node over `ws`. Where grpc-js defines
// the behaviour, the same scenario runs through a stock grpc-js client over
// HTTP/2 and the answers are compared.
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { GrpcError, Metadata, Status, type MethodDescriptor } from '../../lib/client/web/index.js'
import { handlerEvent, nextId, parityMode, startEnv, unary, unaryError } from '../helpers/parity.js'
import type { CallInfo, Response } from '../helpers/test-service.js'
import { rejection, testRoot, webClient } from '../helpers/web-client.js'

const env = await startEnv(t)
const http2 = env.transports.find(transport => transport.name === 'http2')!.client
const { client, test } = webClient(env.wsUrl)
t.teardown(() => { client.close() })

const Request = testRoot.lookupType('test.Request')
const ResponseType = testRoot.lookupType('test.Response')
const bytes = (b: Uint8Array | string | undefined): number[] => b === undefined || typeof b === 'string' ? [] : [...b]

t.test('Should make each of the four kinds of call', async t => {
  const reply = await test.unary({ mode: 'echo', message: 'hello' })
  t.equal(reply.message, 'hello')

  const streamed: string[] = []
  for await (const m of test.serverStream({ mode: 'count', count: 3 })) streamed.push(m.message)
  t.same(streamed, ['0', '1', '2'])

  t.equal((await test.clientStream([{ message: 'a' }, { message: 'b' }])).message, 'a,b', 'from an array')
  async function * words (): AsyncGenerator<{ message: string }> {
    yield { message: 'x' }
    await new Promise(resolve => setTimeout(resolve, 5))
    yield { message: 'y' }
  }
  t.equal((await test.clientStream(words())).message, 'x,y', 'from an async iterable')

  const bidi = test.bidi()
  t.equal(await bidi.send({ message: 'one' }), true, 'send resolves true once the request is on the socket')
  const first = await bidi[Symbol.asyncIterator]().next()
  t.equal(first.value?.message, 'ONE', 'a response arrives before the requests end')
  void bidi.send({ message: 'two' })
  bidi.close()
  t.equal(await bidi.send({ message: 'late' }), false, 'nothing is sent after close()')
  const rest: string[] = []
  for await (const m of bidi) rest.push(m.message)
  t.same(rest, ['TWO'])
})

t.test('Should hand request metadata to the handler as grpc-js over HTTP/2 does', async t => {
  const metadata = new Metadata()
    .append('X-Text', 'some value')
    .append('x-repeated', 'first')
    .append('x-repeated', 'second')
    .append('x-data-bin', new Uint8Array([0, 1, 2, 127, 128, 255]))
    .append('x-data-bin', new Uint8Array([]))
  const web = JSON.parse((await test.unary({ mode: 'info' }, { metadata })).message) as CallInfo
  const grpcMetadata = new grpc.Metadata()
  for (const [key, value] of metadata) grpcMetadata.add(key, typeof value === 'string' ? value : Buffer.from(value))
  const reference = JSON.parse((await unary(http2, { mode: 'info' }, grpcMetadata)).value.message) as CallInfo
  for (const key of ['x-text', 'x-repeated', 'x-data-bin']) t.same(web.metadata[key], reference.metadata[key], key)
  t.same(web.metadata['x-data-bin'], [{ bin: '0001027f80ff' }, { bin: '' }])
  const fromObject = JSON.parse((await test.unary({ mode: 'info' }, { metadata: { 'x-one': 'a', 'x-two': ['b', 'c'] } })).message) as CallInfo
  t.same([fromObject.metadata['x-one'], fromObject.metadata['x-two']], [['a'], ['b, c']], 'a plain object works too')
})

t.test('Should expose response headers and trailers', async t => {
  const call = test.unary({ mode: 'headers', delayMs: 5 })
  const headers = await call.headers
  t.equal(headers.get('x-header-text'), 'value one')
  // Forwarded, the HTTP/2 hop to the upstream has joined them, as HTTP/2 does.
  t.same(headers.getAll('x-header-repeated'), parityMode.upstream ? ['a, b'] : ['a', 'b'], 'repeated values stay separate')
  t.same(headers.getAll('x-header-bin').map(bytes), [[0, 1, 2, 254, 255], [...Buffer.from('second')]], '-bin values are bytes')
  t.equal((await call).message, 'after headers')

  const withTrailers = test.unary({ mode: 'trailers' })
  t.equal((await withTrailers).message, 'with trailers')
  const trailers = await withTrailers.trailers
  t.equal(trailers.get('x-trailer'), 'trailer value')
  t.same(bytes(trailers.get('x-trailer-bin')), [1, 2, 3])

  const stream = test.serverStream({ mode: 'end-trailers' })
  const messages: string[] = []
  for await (const m of stream) messages.push(m.message)
  t.same(messages, ['one'])
  t.equal((await stream.trailers).get('x-trailer'), 'stream trailer')
  t.same((await stream.headers).toJSON(), {}, 'headers the handler never set are empty')
})

t.test('Should reject with one GrpcError carrying what grpc-js reports, for every status', async t => {
  for (let code = 1; code <= 16; code++) {
    const err = await rejection(async () => await test.unary({ mode: 'status', code, details: `details for ${code}` }))
    const reference = await unaryError(http2, { mode: 'status', code, details: `details for ${code}` })
    t.ok(err instanceof GrpcError, `code ${code}: a GrpcError`)
    t.equal(err.code, reference.code)
    t.equal(err.details, reference.details)
    t.equal(err.message, reference.message, 'the same message as a grpc-js ServiceError')
    t.equal(err.metadata.get('x-error-text'), 'error value')
    t.same(bytes(err.metadata.get('x-error-bin')), [9, 8, 7])
  }
  const notFound = await rejection(async () => await test.unary({ mode: 'status', code: Status.NOT_FOUND, details: 'x' }))
  t.equal(notFound.codeName, 'NOT_FOUND')
  t.equal(notFound.name, 'GrpcError')
})

t.test('Should report thrown handlers, unknown methods and OK without a message as grpc-js does', async t => {
  const cases: Array<[string, () => Promise<unknown>, () => Promise<grpc.ServiceError>]> = [
    ['error object', async () => await test.unary({ mode: 'error-object', details: 'plain error' }), async () => await unaryError(http2, { mode: 'error-object', details: 'plain error' })],
    ['throw', async () => await test.unary({ mode: 'throw' }), async () => await unaryError(http2, { mode: 'throw' })],
    ['status 0', async () => await test.unary({ mode: 'status', code: 0, details: 'zero' }), async () => await unaryError(http2, { mode: 'status', code: 0, details: 'zero' })],
    ['missing method', async () => await test.missing({}), async () => await new Promise(resolve => http2.Missing({}, resolve))]
  ]
  for (const [name, web, reference] of cases) {
    const [err, ref] = [await rejection(web), await reference()]
    t.same([err.code, err.details], [ref.code, ref.details], name)
  }
})

t.test('Should enforce unary response counts as grpc-js does', async t => {
  // A unary descriptor pointed at the server-streaming method.
  const asUnary: MethodDescriptor<object, Response> = {
    path: '/test.Test/ServerStream',
    serialize: r => Request.encode(Request.fromObject(r)).finish(),
    deserialize: b => ResponseType.toObject(ResponseType.decode(b)) as Response
  }
  const none = await rejection(async () => await client.unary(asUnary, { mode: 'count', count: 0 }))
  const ref = await new Promise<grpc.ServiceError>(resolve => {
    http2.makeUnaryRequest(asUnary.path, (r: object) => Buffer.from(asUnary.serialize(r)), (b: Buffer) => b, { mode: 'count', count: 0 }, resolve)
  })
  t.same([none.code, none.details], [ref.code, ref.details], 'no response')
  // grpc-js over HTTP/2 never reads a second response (its call hangs), so
  // the reference here is the status its unary client code sets for it.
  const two = await rejection(async () => await client.unary(asUnary, { mode: 'count', count: 2 }))
  t.same([two.code, two.details], [Status.UNIMPLEMENTED, 'Too many responses received'], 'two responses')
})

t.test('Should end a stream that failed after some messages: the messages, then the error', async t => {
  const received: string[] = []
  const err = await rejection(async () => {
    for await (const m of test.serverStream({ mode: 'status-after-write', code: Status.ABORTED, details: 'stopped' })) received.push(m.message)
  })
  t.same(received, ['one'])
  t.same([err.code, err.details, err.metadata.get('x-error-text')], [Status.ABORTED, 'stopped', 'error value'])

  const bidi = test.bidi()
  void bidi.send({ message: 'one' })
  void bidi.send({ mode: 'status', code: Status.OUT_OF_RANGE, details: 'too far' })
  const echoed: string[] = []
  const bidiErr = await rejection(async () => { for await (const m of bidi) echoed.push(m.message) })
  t.same(echoed, ['ONE'])
  t.equal(bidiErr.code, Status.OUT_OF_RANGE)
  t.equal(await bidi.send({ message: 'after' }), false, 'send() on a finished call resolves false')
  t.same((await bidi.headers).toJSON(), {}, 'headers resolve (empty) however the call ends')
})

t.test('Should end a call at its deadline, on both sides', async t => {
  const ways = [() => ({ timeout: 150 }), () => ({ deadline: new Date(Date.now() + 150) }), () => ({ deadline: Date.now() + 150, timeout: 60_000 })]
  for (const way of ways) {
    const options = way()
    const id = nextId()
    const cancelled = handlerEvent(env.events, id)
    const started = Date.now()
    const err = await rejection(async () => await test.unary({ mode: 'never', id }, options))
    t.equal(err.code, Status.DEADLINE_EXCEEDED)
    t.equal(err.details, 'Deadline exceeded')
    t.ok(Date.now() - started >= 140, 'not before the deadline')
    t.equal((await cancelled).event, 'cancelled', 'the handler saw cancelled')
  }
  const id = nextId()
  const info = JSON.parse((await test.unary({ mode: 'info', id }, { timeout: 60_000 })).message) as CallInfo
  t.ok((info.deadline as number) > Date.now() + 50_000, 'the server got the deadline')
  // Collected, not asserted one by one: how many ticks fit before the deadline varies.
  const ticks: string[] = []
  const ended = await rejection(async () => { for await (const m of test.serverStream({ mode: 'endless' }, { timeout: 100 })) ticks.push(m.message) })
  t.same([...new Set(ticks)], ['tick'], 'the stream delivered its messages until then')
  t.equal(ended.code, Status.DEADLINE_EXCEEDED, 'a stream too')
})

t.test('Should fail at once, without a socket, when the deadline has passed or the signal is aborted', async t => {
  const { client: fresh, test: freshTest } = webClient(env.wsUrl)
  t.teardown(() => { fresh.close() })
  const late = await rejection(async () => await freshTest.unary({ mode: 'echo' }, { deadline: Date.now() - 1 }))
  t.equal(late.code, Status.DEADLINE_EXCEEDED)
  const aborted = await rejection(async () => await freshTest.unary({ mode: 'echo' }, { signal: AbortSignal.abort(new Error('gone')) }))
  t.equal(aborted.code, Status.CANCELLED)
  t.equal(aborted.cause.message, 'gone', 'the abort reason is the cause')
  t.equal(fresh.state, 'idle', 'no socket was opened')
})

t.test('Should cancel with an AbortSignal and reach the handler as cancelled', async t => {
  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  const controller = new AbortController()
  const received: string[] = []
  const err = await rejection(async () => {
    for await (const m of test.serverStream({ mode: 'endless', id }, { signal: controller.signal })) {
      received.push(m.message)
      controller.abort()
    }
  })
  t.same([err.code, err.details], [Status.CANCELLED, 'Cancelled on client'])
  t.ok(received.length >= 1)
  const event = await cancelled
  t.same([event.event, event.cancelled], ['cancelled', true])

  const unaryId = nextId()
  const unaryCancelled = handlerEvent(env.events, unaryId)
  const unaryController = new AbortController()
  const pending = test.unary({ mode: 'never', id: unaryId }, { signal: unaryController.signal })
  setTimeout(() => { unaryController.abort() }, 30)
  t.equal((await rejection(async () => await pending)).code, Status.CANCELLED)
  t.equal((await unaryCancelled).event, 'cancelled')
})

t.test('Should cancel when a loop leaves early, or on cancel()', async t => {
  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  for await (const m of test.serverStream({ mode: 'endless', id })) {
    t.equal(m.message, 'tick')
    break
  }
  t.equal((await cancelled).event, 'cancelled', 'break cancelled the call')

  const bidiId = nextId()
  const bidiCancelled = handlerEvent(env.events, bidiId)
  const bidi = test.bidi()
  void bidi.send({ message: 'hello', id: bidiId })
  const iterator = bidi[Symbol.asyncIterator]()
  t.equal((await iterator.next()).value?.message, 'HELLO')
  bidi.cancel()
  const err = await rejection(async () => await iterator.next())
  t.equal(err.code, Status.CANCELLED)
  t.equal((await bidiCancelled).event, 'cancelled')
})

t.test('Should cancel a client-streaming call whose request iterable throws', async t => {
  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  async function * failing (): AsyncGenerator<{ message: string, id: string }> {
    yield { message: 'first', id }
    await new Promise(resolve => setTimeout(resolve, 20))
    throw new Error('no more input')
  }
  const err = await rejection(async () => await test.clientStream(failing()))
  t.equal(err.code, Status.CANCELLED)
  t.equal(err.details, 'The request stream failed: no more input')
  t.equal(err.cause.message, 'no more input')
  t.equal((await cancelled).event, 'cancelled')
})

t.test('Should fail the call with INTERNAL on bad metadata, an unserializable request or an unparsable response', async t => {
  const badKey = await rejection(async () => await test.unary({ mode: 'echo' }, { metadata: { 'bad key': 'x' } }))
  t.equal(badKey.code, Status.INTERNAL)
  t.match(badKey.details, /illegal characters/)
  const badValue = await rejection(async () => await test.unary({ mode: 'echo' }, { metadata: { 'x-bin': 'not bytes' } }))
  t.match(badValue.details, /needs a binary value/)

  const broken: MethodDescriptor<string, string> = {
    path: '/test.Test/Unary',
    serialize: () => { throw new Error('cannot encode') },
    deserialize: () => 'unused'
  }
  const encode = await rejection(async () => await client.unary(broken, 'x'))
  t.same([encode.code, encode.details], [Status.INTERNAL, 'Request message serialization failure: cannot encode'])
  const decode = await rejection(async () => await client.unary({
    path: '/test.Test/Unary',
    serialize: () => Request.encode(Request.fromObject({ mode: 'echo' })).finish(),
    deserialize: () => { throw new Error('cannot decode') }
  }, null))
  t.same([decode.code, decode.details], [Status.INTERNAL, 'Response message parsing error: cannot decode'])
})

t.test('Should fail a stream whose response cannot be parsed, whether its reader waited or the response was queued', async t => {
  // Parses the first response, fails on the second.
  const failingSecond = (): MethodDescriptor<object, Response> => {
    let n = 0
    return {
      path: '/test.Test/ServerStream',
      serialize: r => Request.encode(Request.fromObject(r)).finish(),
      deserialize: b => {
        if (++n === 2) throw new Error('cannot decode')
        return ResponseType.toObject(ResponseType.decode(b)) as Response
      }
    }
  }
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  // The reader waits: each response goes straight to it.
  const waitedId = nextId()
  const waitedCancelled = handlerEvent(env.events, waitedId)
  const waited: string[] = []
  const waitedErr = await rejection(async () => {
    for await (const m of client.serverStream(failingSecond(), { mode: 'endless', id: waitedId })) waited.push(m.message)
  })
  t.same([waitedErr.code, waitedErr.details], [Status.INTERNAL, 'Response message parsing error: cannot decode'])
  t.same(waited, ['tick'], 'the response before it was read')
  t.equal((await waitedCancelled).event, 'cancelled', 'the server was told')

  // The reference: a stock grpc-js client over HTTP/2, with the same descriptor.
  const refId = nextId()
  const refCancelled = handlerEvent(env.events, refId)
  const refDescriptor = failingSecond()
  const refMessages: string[] = []
  const ref = await new Promise<grpc.ServiceError>(resolve => {
    const call = http2.makeServerStreamRequest(refDescriptor.path, (r: object) => Buffer.from(refDescriptor.serialize(r)), (b: Buffer) => refDescriptor.deserialize(b), { mode: 'endless', id: refId })
    call.on('data', (m: Response) => { refMessages.push(m.message) })
    call.on('error', resolve)
  })
  t.same([waitedErr.code, waitedErr.details], [ref.code, ref.details], 'as grpc-js over HTTP/2 ends it')
  t.same(waited, refMessages, 'with the same responses before it')
  t.equal((await refCancelled).event, 'cancelled', 'whose server was told too')

  // Nobody reads until responses are queued: the second fails when taken.
  const stream = client.serverStream(failingSecond(), { mode: 'count', count: 3 })
  await stream.headers
  await new Promise(resolve => setTimeout(resolve, 50))
  const iterator = stream[Symbol.asyncIterator]()
  t.equal((await iterator.next()).value?.message, '0')
  const queuedErr = await rejection(async () => await iterator.next())
  t.same([queuedErr.code, queuedErr.details], [Status.INTERNAL, 'Response message parsing error: cannot decode'])
  const after = await rejection(async () => await iterator.next())
  t.equal(after, queuedErr, 'the iteration stays failed: the third response was dropped')
  await new Promise(resolve => setImmediate(resolve))
  t.same(unhandled, [], 'no promise left rejected unhandled')
})

t.test('Should refuse a response over maxReceiveMessageSize with RESOURCE_EXHAUSTED and stay usable', async t => {
  const { client: small, test: smallTest } = webClient(env.wsUrl, { maxReceiveMessageSize: 1000 })
  t.teardown(() => { small.close() })
  const err = await rejection(async () => await smallTest.unary({ mode: 'size', size: 5000 }))
  t.equal(err.code, Status.RESOURCE_EXHAUSTED)
  t.match(err.details, /Received message larger than max/)
  t.equal((await smallTest.unary({ mode: 'echo', message: 'still usable' })).message, 'still usable')
})

t.test('Should carry bytes fields both ways', async t => {
  const payload = new Uint8Array(70_000).map((_, i) => i & 0xff)
  const reply = await test.unary({ mode: 'echo', payload: Buffer.from(payload) })
  t.same(bytes(reply.payload), [...payload], 'a message larger than one frame arrives whole')
})
