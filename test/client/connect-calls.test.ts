// Connect clients (`createClient` from @connectrpc/connect) over the
// WebSocket transport, in Node over `ws`, against the plugin: the four kinds,
// sizes, metadata, statuses, deadlines, aborts, concurrency and flow control.
import { Code, ConnectError, createContextKey, createContextValues, decodeBinaryHeader, encodeBinaryHeader, type Interceptor } from '@connectrpc/connect'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createWebSocketTransport } from '../../lib/client/connect/index.js'
import { createClient as createWebClient } from '../../lib/client/web/index.js'
import { connectClient } from '../helpers/connect-client.js'
import { handlerEvent, nextId, startEnv } from '../helpers/parity.js'
import { sleep, type CallInfo } from '../helpers/test-service.js'

const env = await startEnv(t)
const { transport, test } = connectClient(env.wsUrl)
t.teardown(() => { transport.client.close() })

/** Counts the sockets the server accepts from now on. */
function countConnections (t: Test): () => number {
  let opened = 0
  const count = (): void => { opened++ }
  env.app.websocketServer.on('connection', count)
  t.teardown(() => { env.app.websocketServer.off('connection', count) })
  return () => opened
}

async function rejection (body: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await body()
  } catch (err) {
    if (err instanceof ConnectError) return err
    throw err
  }
  throw new Error('expected a failure, got a result')
}

t.test('Should make each of the four kinds of call', async t => {
  const reply = await test.unary({ mode: 'echo', message: 'hello', payload: new Uint8Array([1, 2, 3]) })
  t.equal(reply.message, 'hello')
  t.same([...reply.payload], [1, 2, 3])
  t.equal(reply.$typeName, 'test.Response', 'a protobuf-es message')

  const streamed: string[] = []
  for await (const m of test.serverStream({ mode: 'count', count: 3, size: 2 })) streamed.push(`${m.message as string}:${m.payload.length as number}`)
  t.same(streamed, ['0:2', '1:2', '2:2'])

  async function * words (): AsyncGenerator<{ message: string }> {
    yield { message: 'x' }
    await sleep(5)
    yield { message: 'y' }
  }
  t.equal((await test.clientStream(words())).message, 'x,y')

  // Full duplex: the second request goes only after the first reply came back.
  const replies: string[] = []
  let answered!: () => void
  const firstReply = new Promise<void>(resolve => { answered = resolve })
  async function * requests (): AsyncGenerator<{ message: string }> {
    yield { message: 'first' }
    await firstReply
    yield { message: 'second' }
  }
  for await (const m of test.bidi(requests())) {
    replies.push(m.message)
    answered()
  }
  t.same(replies, ['FIRST', 'SECOND'])
})

t.test('Should carry empty and 4 MiB messages', async t => {
  const empty = await test.unary({ mode: 'echo' })
  t.equal(empty.message, '')
  t.equal(empty.payload.length, 0)
  const emptyStream: number[] = []
  for await (const m of test.serverStream({ mode: 'count', count: 2 })) emptyStream.push(m.payload.length)
  t.same(emptyStream, [0, 0])
  t.equal((await test.clientStream((async function * () { yield {}; yield {} })())).message, ',')

  const size = 4 * 1024 * 1024 - 16
  const payload = new Uint8Array(size)
  for (let i = 0; i < size; i += 4096) payload[i] = i & 0xff
  const echoed = await test.unary({ mode: 'echo', payload })
  t.equal(echoed.payload.length, size)
  t.ok(Buffer.from(echoed.payload).equals(Buffer.from(payload)), 'the bytes come back unchanged')
  t.equal((await test.unary({ mode: 'size', size })).payload.length, size)
})

t.test('Should hand request headers to the handler, -bin values as bytes', async t => {
  const headers = new Headers()
  headers.append('X-Text', 'some value')
  headers.append('x-repeated', 'a')
  headers.append('x-bin', encodeBinaryHeader(new Uint8Array([0, 1, 254, 255])))
  headers.append('x-bin', encodeBinaryHeader(new Uint8Array([7])))
  const reply = await test.unary({ mode: 'info' }, { headers })
  const info = JSON.parse(reply.message) as CallInfo
  t.same(info.metadata['x-text'], ['some value'])
  t.same(info.metadata['x-repeated'], ['a'])
  t.same(info.metadata['x-bin'], [{ bin: '0001feff' }, { bin: '07' }], 'two binary values, decoded from base64')
  t.equal(info.path, '/test.Test/Unary')
})

t.test('Should report response headers and trailers, -bin values base64', async t => {
  let header: Headers | undefined
  let trailer: Headers | undefined
  await test.unary({ mode: 'headers' }, { onHeader: (h: Headers) => { header = h } })
  t.equal(header?.get('x-header-text'), 'value one')
  t.equal(header?.get('x-header-repeated'), 'a, b')
  t.same(header?.get('x-header-bin')?.split(', ').map(v => [...decodeBinaryHeader(v)]), [[0, 1, 2, 254, 255], [...Buffer.from('second')]])

  await test.unary({ mode: 'trailers' }, { onTrailer: (h: Headers) => { trailer = h } })
  t.equal(trailer?.get('x-trailer'), 'trailer value')
  t.same([...decodeBinaryHeader(trailer!.get('x-trailer-bin')!)], [1, 2, 3])

  const seen: string[] = []
  for await (const m of test.serverStream({ mode: 'end-trailers' }, {
    onHeader: () => { seen.push('header') },
    onTrailer: (h: Headers) => { seen.push(`trailer:${h.get('x-trailer') ?? ''}`) }
  })) seen.push(m.message)
  t.same(seen, ['header', 'one', 'trailer:stream trailer'], 'stream headers first, trailers after the last message')
})

t.test('Should fail with every gRPC status code, its message and metadata', async t => {
  for (let code = 1; code <= 16; code++) {
    const err = await rejection(() => test.unary({ mode: 'status', code, details: `failed with ${code}` }))
    t.equal(err.code, code, `code ${code}`)
    t.equal(err.rawMessage, `failed with ${code}`)
    t.equal(err.metadata.get('x-error-text'), 'error value')
    t.same([...decodeBinaryHeader(err.metadata.get('x-error-bin')!)], [9, 8, 7])
  }
  const streamed: string[] = []
  const err = await rejection(async () => {
    for await (const m of test.serverStream({ mode: 'status-after-write', code: Code.DataLoss, details: 'lost' })) streamed.push(m.message)
  })
  t.same(streamed, ['one'], 'the message before the status arrived')
  t.equal(err.code, Code.DataLoss)
  t.equal(err.rawMessage, 'lost')
  const bidiErr = await rejection(async () => {
    for await (const _ of test.bidi((async function * () { yield { mode: 'status', code: Code.Aborted, details: 'from bidi' } })()));
  })
  t.equal(bidiErr.code, Code.Aborted)
  t.equal(bidiErr.rawMessage, 'from bidi')
})

t.test('Should fail an unimplemented method with unimplemented', async t => {
  const err = await rejection(() => test.missing({}))
  t.equal(err.code, Code.Unimplemented)
})

t.test('Should give the handler the deadline of timeoutMs and cancel it when it passes', async t => {
  const info = JSON.parse((await test.unary({ mode: 'info' }, { timeoutMs: 5000 })).message) as CallInfo
  t.type(info.deadline, 'number')
  t.ok(Math.abs((info.deadline as number) - (Date.now() + 5000)) < 1000, 'the server saw a deadline about 5 s away')

  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  const started = Date.now()
  const err = await rejection(() => test.unary({ mode: 'never', id }, { timeoutMs: 200 }))
  t.equal(err.code, Code.DeadlineExceeded)
  t.ok(Date.now() - started >= 150, 'not before the deadline')
  t.equal((await cancelled).event, 'cancelled', 'the handler saw cancelled')

  const { transport: withDefault, test: defaulted } = connectClient(env.wsUrl, { defaultTimeoutMs: 150 })
  t.teardown(() => { withDefault.client.close() })
  const streamId = nextId()
  const streamCancelled = handlerEvent(env.events, streamId)
  const streamErr = await rejection(async () => { for await (const _ of defaulted.serverStream({ mode: 'endless', id: streamId })); })
  t.equal(streamErr.code, Code.DeadlineExceeded, 'defaultTimeoutMs applies to calls without timeoutMs')
  t.equal((await streamCancelled).event, 'cancelled')
  const noDeadline = JSON.parse((await defaulted.unary({ mode: 'info' }, { timeoutMs: 0 })).message) as CallInfo
  t.equal(noDeadline.deadline, 'Infinity', 'timeoutMs 0 means no deadline, as in Connect')
})

t.test('Should cancel the handler when the signal aborts', async t => {
  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  const controller = new AbortController()
  const call = test.unary({ mode: 'never', id }, { signal: controller.signal })
  setTimeout(() => { controller.abort() }, 50)
  const err = await rejection(() => call)
  t.equal(err.code, Code.Canceled)
  t.equal((await cancelled).event, 'cancelled')

  const streamId = nextId()
  const streamCancelled = handlerEvent(env.events, streamId)
  const streamController = new AbortController()
  let ticks = 0
  const streamErr = await rejection(async () => {
    for await (const _ of test.serverStream({ mode: 'endless', id: streamId }, { signal: streamController.signal })) {
      if (++ticks === 3) streamController.abort()
    }
  })
  t.equal(streamErr.code, Code.Canceled)
  t.equal((await streamCancelled).event, 'cancelled')
})

t.test('Should run 200 concurrent calls on one socket', async t => {
  const { transport: own, test: client } = connectClient(env.wsUrl)
  t.teardown(() => { own.client.close() })
  const opened = countConnections(t)
  const replies = await Promise.all(Array.from({ length: 200 }, async (_, i) => (await client.unary({ mode: 'echo', message: `m${i}` })).message))
  t.same(replies, Array.from({ length: 200 }, (_, i) => `m${i}`))
  t.equal(opened(), 1, 'one socket carried them all')
})

t.test('Should hold the handler\'s write() at false while a for-await loop reads slowly', async t => {
  const id = nextId()
  const size = 64 * 1024
  const flooded = handlerEvent(env.events, `${id}:flood`)
  let received = 0
  let count = 0
  for await (const m of test.serverStream({ mode: 'flood', id, count: 100, size })) {
    received += m.payload.length
    if (++count % 10 === 0) await sleep(10)
  }
  t.equal(received, 100 * size, 'every byte arrived')
  const { refusals } = await flooded
  t.ok(refusals > 0, `the handler's write() returned false ${refusals as number} times`)
})

t.test('Should run Connect interceptors, outermost first, with contextValues', async t => {
  const seen: string[] = []
  const who = createContextKey('nobody')
  const tag = (name: string): Interceptor => next => async req => {
    seen.push(`${name}:${req.url}:${req.contextValues.get(who)}`)
    req.header.set(`x-${name}`, name)
    const res = await next(req)
    seen.push(`${name}:done`)
    return res
  }
  const signals: AbortSignal[] = []
  const keep: Interceptor = next => async req => { signals.push(req.signal); return await next(req) }
  const { transport: own, test: client } = connectClient(env.wsUrl, { interceptors: [tag('outer'), tag('inner'), keep] })
  t.teardown(() => { own.client.close() })
  const contextValues = createContextValues().set(who, 'me')
  const info = JSON.parse((await client.unary({ mode: 'info' }, { contextValues })).message) as CallInfo
  t.same(info.metadata['x-outer'], ['outer'])
  t.same(info.metadata['x-inner'], ['inner'])
  const url = `${env.wsUrl}/test.Test/Unary`
  t.same(seen, [`outer:${url}:me`, `inner:${url}:me`, 'inner:done', 'outer:done'])
  t.equal(signals[0]?.aborted, true, 'req.signal is aborted once the call is over, as in Connect\'s transports')
  seen.length = 0
  for await (const _ of client.serverStream({ mode: 'count', count: 1 }));
  t.same(seen, [`outer:${env.wsUrl}/test.Test/ServerStream:nobody`, `inner:${env.wsUrl}/test.Test/ServerStream:nobody`, 'inner:done', 'outer:done'], 'streams too; a missing context value is its default')
})

t.test('Should fail with resource_exhausted past readMaxBytes and writeMaxBytes', async t => {
  const { transport: own, test: client } = connectClient(env.wsUrl, { readMaxBytes: 1000, writeMaxBytes: 1000 })
  t.teardown(() => { own.client.close() })
  const write = await rejection(() => client.unary({ mode: 'echo', payload: new Uint8Array(2000) }))
  t.equal(write.code, Code.ResourceExhausted)
  t.match(write.rawMessage, /writeMaxBytes 1000/)
  const read = await rejection(() => client.unary({ mode: 'size', size: 2000 }))
  t.equal(read.code, Code.ResourceExhausted)
  t.match(read.rawMessage, /readMaxBytes 1000/)
  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  const streamWrite = await rejection(async () => {
    for await (const _ of client.bidi((async function * () { yield { id, message: 'small' }; await sleep(20); yield { payload: new Uint8Array(2000) } })()));
  })
  t.equal(streamWrite.code, Code.ResourceExhausted, 'a request too large ends a stream')
  t.equal((await cancelled).event, 'cancelled', 'and the handler sees it cancelled')
  const streamRead = await rejection(async () => { for await (const _ of client.serverStream({ mode: 'count', count: 2, size: 2000 })); })
  t.equal(streamRead.code, Code.ResourceExhausted)
  t.equal((await client.unary({ mode: 'echo', message: 'still fine' })).message, 'still fine')
})

t.test('Should share the socket of an existing GrpcWsClient', async t => {
  const shared = createWebClient(env.wsUrl, { WebSocket })
  t.teardown(() => { shared.close() })
  const { transport: own, test: client } = connectClient('', { client: shared })
  t.equal(own.client, shared)
  const opened = countConnections(t)
  t.equal((await client.unary({ mode: 'echo', message: 'via shared' })).message, 'via shared')
  t.equal(shared.state, 'ready', 'the shared client opened its socket for the Connect call')
  await shared.unary({ path: '/test.Test/Unary', serialize: (b: Uint8Array) => b, deserialize: (b: Uint8Array) => b }, new Uint8Array([10, 4, 101, 99, 104, 111]))
  t.equal(opened(), 1, 'the Connect call and a plain call of the client on one socket')
})

t.test('Should reject bad options with FST_GRPCWS_INVALID_CLIENT_OPTION', async t => {
  const code = 'FST_GRPCWS_INVALID_CLIENT_OPTION'
  t.throws(() => createWebSocketTransport({} as any), { code, message: /"baseUrl"/ })
  t.throws(() => createWebSocketTransport(null as any), { code })
  t.throws(() => createWebSocketTransport({ baseUrl: env.wsUrl, WebSocket, nope: 1 } as any), { code, message: /"nope": unknown option/ })
  t.throws(() => createWebSocketTransport({ client: {} as any }), { code, message: /"client"/ })
  const shared = createWebClient(env.wsUrl, { WebSocket })
  t.throws(() => createWebSocketTransport({ client: shared, baseUrl: env.wsUrl }), { code, message: /"baseUrl"/ })
  t.throws(() => createWebSocketTransport({ client: shared, keepaliveIntervalMs: 5 }), { code, message: /"keepaliveIntervalMs"/ })
  t.throws(() => createWebSocketTransport({ baseUrl: env.wsUrl, WebSocket, readMaxBytes: 0 }), { code, message: /"readMaxBytes"/ })
  t.throws(() => createWebSocketTransport({ baseUrl: env.wsUrl, WebSocket, writeMaxBytes: 1.5 }), { code, message: /"writeMaxBytes"/ })
  t.throws(() => createWebSocketTransport({ baseUrl: env.wsUrl, WebSocket, defaultTimeoutMs: -1 }), { code, message: /"defaultTimeoutMs"/ })
  t.throws(() => createWebSocketTransport({ baseUrl: env.wsUrl, WebSocket, interceptors: [42 as any] }), { code, message: /"interceptors"/ })
  shared.close()
})
