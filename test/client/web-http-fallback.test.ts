/**
 * The browser client's HTTP fallback (`fastify-grpc-ws/client` at its defaults) in
 * Node (ws, global fetch), through a proxy that passes HTTP and refuses
 * every upgrade with 502, as some corporate proxies do: unary, server
 * streaming, metadata, statuses, deadlines and flow control go over
 * gRPC-Web; a bidi call fails with UNAVAILABLE naming the cause; then the
 * proxy lets upgrades through and new calls move back to the WebSocket.
 */
import Fastify from 'fastify'
import { EventEmitter } from 'node:events'
import { createServer, type AddressInfo, type Socket } from 'node:net'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { Code, ConnectError } from '@connectrpc/connect'
import { createClient, Status, type HttpFallbackOptions } from '../../lib/client/web/index.js'
import WebSocket from 'ws'
import { bounded } from '../helpers/bounded.js'
import { connectClient } from '../helpers/connect-client.js'
import { createTestService, testDefinition } from '../helpers/test-service.js'
import { startUpgradeProxy } from '../helpers/upgrade-proxy.js'
import { rejection, typed } from '../helpers/web-client.js'

const events = new EventEmitter()
events.setMaxListeners(0)
const app = Fastify()
await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }] })
await app.listen({ port: 0, host: '127.0.0.1' })
const appPort = (app.server.address() as { port: number }).port

const proxy = await startUpgradeProxy(t, appPort)
const proxyPort = proxy.port
t.teardown(async () => { await app.close() })

function fallbackClient (url: string, options: HttpFallbackOptions): { client: ReturnType<typeof createClient>, test: ReturnType<typeof typed> } {
  const client = createClient(url, { WebSocket, ...options })
  return { client, test: typed(client) }
}

const { client, test } = fallbackClient(`ws://127.0.0.1:${proxyPort}/grpc`, { retryMs: 200, backoff: { initialMs: 100, maxMs: 200 } })
t.teardown(() => { client.close() })

t.test('behind a proxy that refuses upgrades: unary and server streaming go over HTTP', async t => {
  const reply = await bounded('unary', test.unary({ mode: 'echo', message: 'over http', payload: Buffer.from([1, 2, 3]) }))
  t.equal(reply.message, 'over http')
  t.same([...reply.payload], [1, 2, 3])
  t.equal(client.transport, 'http')
  t.ok(proxy.upgrades.includes('refused'), 'the WebSocket was tried first')
  const got: string[] = []
  for await (const m of test.serverStream({ mode: 'count', count: 4 })) got.push(m.message)
  t.same(got, ['0', '1', '2', '3'])
})

t.test('over HTTP: metadata both ways, statuses with trailers, deadlines reaching the handler, abort', async t => {
  const info = JSON.parse((await test.unary({ mode: 'info' }, { metadata: { 'x-text': 'hi', 'x-data-bin': Buffer.from([0, 255]) } })).message)
  t.same(info.metadata['x-text'], ['hi'])
  t.same(info.metadata['x-data-bin'], [{ bin: '00ff' }])
  const call = test.unary({ mode: 'trailers' })
  await call
  t.equal((await call.trailers).get('x-trailer'), 'trailer value')
  t.same([...(await call.trailers).get('x-trailer-bin') as Uint8Array], [1, 2, 3])
  const headersCall = test.unary({ mode: 'headers' })
  await headersCall
  t.equal((await headersCall.headers).get('x-header-text'), 'value one')
  const err = await rejection(async () => await test.unary({ mode: 'status', code: Status.NOT_FOUND, details: 'ünï ✓' }))
  t.equal(err.code, Status.NOT_FOUND)
  t.equal(err.details, 'ünï ✓')
  t.equal(err.metadata.get('x-error-text'), 'error value')
  const cancelled = bounded('cancelled', new Promise<any>(resolve => events.once('fallback-deadline', resolve)))
  const late = await rejection(async () => await test.unary({ mode: 'never', id: 'fallback-deadline' }, { timeout: 200 }))
  t.equal(late.code, Status.DEADLINE_EXCEEDED)
  t.equal((await cancelled).event, 'cancelled')
  const aborted = bounded('aborted', new Promise<any>(resolve => events.once('fallback-abort', resolve)))
  const controller = new AbortController()
  const stream = test.serverStream({ mode: 'endless', id: 'fallback-abort' }, { signal: controller.signal })
  setTimeout(() => { controller.abort() }, 100)
  t.equal((await rejection(async () => { for await (const _ of stream) { /* ticks */ } })).code, Status.CANCELLED)
  t.equal((await aborted).event, 'cancelled')
})

t.test('over HTTP: a slow for-await makes the handler\'s write() return false', async t => {
  const flooded = bounded('flood', new Promise<any>(resolve => events.once('fallback-flood:flood', resolve)), 15000)
  let bytes = 0
  for await (const m of test.serverStream({ mode: 'flood', id: 'fallback-flood', count: 300, size: 64 * 1024 })) {
    bytes += m.payload.length
    if (bytes < 4 * 64 * 1024) await new Promise(resolve => setTimeout(resolve, 100))
  }
  t.equal(bytes, 300 * 64 * 1024)
  t.ok((await flooded).refusals > 0, 'write() returned false')
})

t.test('over HTTP: bidi fails with UNAVAILABLE saying it needs a WebSocket and why', async t => {
  const call = test.bidi()
  void call.send({ message: 'one' })
  void call.send({ message: 'two' })
  call.close()
  const err = await rejection(async () => { for await (const _ of call) { /* nothing */ } })
  t.equal(err.code, Status.UNAVAILABLE)
  t.match(err.details, /need a WebSocket/)
  t.match(err.details, /could not be opened/)
})

t.test('when upgrades pass again, new calls move back to the WebSocket', async t => {
  proxy.refuse = false
  await bounded('the WebSocket back', new Promise<void>(resolve => {
    const check = setInterval(() => { if (client.transport === 'websocket') { clearInterval(check); resolve() } }, 20)
  }), 5000)
  t.equal(client.state, 'ready')
  const replies = await bounded('bidi over the socket', (async () => {
    const call = test.bidi()
    void call.send({ message: 'back' })
    call.close()
    const out: string[] = []
    for await (const m of call) out.push(m.message)
    return out
  })())
  t.same(replies, ['BACK'], 'bidi works again')
  t.ok(proxy.upgrades.includes('passed'))
})

t.test('transports: [\'websocket\'] turns the fallback off', async t => {
  proxy.refuse = true
  const { client: only, test: onlyTest } = fallbackClient(`ws://127.0.0.1:${proxyPort}/grpc`, { transports: ['websocket'], connectTimeoutMs: 500, backoff: { initialMs: 100, maxMs: 100 } })
  t.teardown(() => { only.close() })
  const err = await rejection(async () => await onlyTest.unary({ mode: 'echo' }))
  t.equal(err.code, Status.UNAVAILABLE)
  t.equal(only.transport, 'websocket')
})

t.test('the Connect transport falls back too: unary and server streaming over HTTP, bidi UNAVAILABLE', async t => {
  proxy.refuse = true
  const { transport, test: connect } = connectClient(`ws://127.0.0.1:${proxyPort}/grpc`, { retryMs: 200, backoff: { initialMs: 100, maxMs: 200 } })
  t.teardown(() => { transport.client.close() })
  const reply: { message: string } = await bounded('unary', connect.unary({ mode: 'echo', message: 'connect over http' }))
  t.equal(reply.message, 'connect over http')
  t.equal((transport.client as ReturnType<typeof createClient>).transport, 'http')
  const got: string[] = []
  for await (const m of connect.serverStream({ mode: 'count', count: 3 })) got.push(m.message)
  t.same(got, ['0', '1', '2'])
  const err = await bounded('bidi', (async () => {
    try {
      for await (const _ of connect.bidi((async function * () { yield { message: 'one' }; yield { message: 'two' } })())) { /* nothing */ }
    } catch (err) { return err }
    return null
  })())
  t.ok(err instanceof ConnectError, String(err))
  t.equal((err as ConnectError).code, Code.Unavailable)
  t.match((err as ConnectError).rawMessage, /need a WebSocket/)
})

t.test('a server that cannot be reached at all: UNAVAILABLE naming the HTTP failure and the WebSocket\'s', async t => {
  const closed = Fastify()
  await closed.listen({ port: 0, host: '127.0.0.1' })
  const port = (closed.server.address() as { port: number }).port
  await closed.close()
  const { client: gone, test: goneTest } = fallbackClient(`ws://127.0.0.1:${port}/grpc`, { backoff: { initialMs: 100, maxMs: 100 } })
  t.teardown(() => { gone.close() })
  const err = await bounded('unary', rejection(async () => await goneTest.unary({ mode: 'echo' })))
  t.equal(err.code, Status.UNAVAILABLE)
  t.match(err.details, `HTTP request to http://127.0.0.1:${port}/grpc/test.Test/Unary: failed`)
  t.match(err.details, new RegExp(`, and the WebSocket could not be opened: Connection to ws://127\\.0\\.0\\.1:${port}/grpc failed: connect ECONNREFUSED 127\\.0\\.0\\.1:${port}$`))
  t.type(err.cause, Error, 'the failed fetch is the cause')
  t.equal(gone.transport, 'http')
})

t.test('a server that accepts connections and never answers: the HTTP request times out too', async t => {
  const sockets = new Set<Socket>()
  const silent = createServer(socket => { sockets.add(socket) })
  await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise(resolve => silent.close(resolve))
  })
  const port = (silent.address() as AddressInfo).port
  const { client: stuck, test: stuckTest } = fallbackClient(`ws://127.0.0.1:${port}/grpc`, { connectTimeoutMs: 200 })
  t.teardown(() => { stuck.close() })
  const err = await bounded('unary', rejection(async () => await stuckTest.unary({ mode: 'echo' })))
  t.equal(err.code, Status.UNAVAILABLE)
  t.equal(err.details, `HTTP request to http://127.0.0.1:${port}/grpc/test.Test/Unary: no response within 200 ms, and the WebSocket could not be opened: Connection to ws://127.0.0.1:${port}/grpc not ready after 200 ms`)
})

t.test('close() before the first attempt ends fails the calls waiting for it', async t => {
  proxy.refuse = true
  const { client: closing, test: closingTest } = fallbackClient(`ws://127.0.0.1:${proxyPort}/grpc`, {})
  const call = rejection(async () => await closingTest.unary({ mode: 'echo' }))
  closing.close()
  const err = await bounded('the waiting call', call)
  t.equal(err.code, Status.UNAVAILABLE)
  t.equal(err.details, 'The channel is closed')
})

t.test('transports other than [\'websocket\', \'http\'] or [\'websocket\'] are refused', async t => {
  for (const transports of [['http'], [], ['websocket', 'smoke-signals'], 'websocket']) {
    t.throws(() => createClient('ws://127.0.0.1:1/grpc', { WebSocket, transports: transports as any }), { code: 'FST_GRPCWS_INVALID_CLIENT_OPTION', message: /"transports"/ }, JSON.stringify(transports))
  }
})
