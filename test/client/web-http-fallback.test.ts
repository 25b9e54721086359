/**
 * The browser client's HTTP fallback (`fastify-grpc-ws/client/http`) in
 * Node (ws, global fetch), through a proxy that passes HTTP and refuses
 * every upgrade with 502, as some corporate proxies do: unary, server
 * streaming, metadata, statuses, deadlines and flow control go over
 * gRPC-Web; a bidi call fails with UNAVAILABLE naming the cause; then the
 * proxy lets upgrades through and new calls move back to the WebSocket.
 */
import Fastify from 'fastify'
import { EventEmitter } from 'node:events'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { Status } from '../../lib/client/web/index.js'
import { createClient, type HttpFallbackOptions } from '../../lib/client/web/http.js'
import WebSocket from 'ws'
import { bounded } from '../helpers/bounded.js'
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

t.test('the fallback entry bundles for browsers with no Node built-ins', async t => {
  const { build } = await import('esbuild')
  const { gzipSync } = await import('node:zlib')
  const result = await build({ entryPoints: [new URL('../../lib/client/web/http.ts', import.meta.url).pathname], bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, metafile: true, logLevel: 'silent' })
  t.same(result.errors, [])
  const inputs = Object.keys(result.metafile.inputs)
  t.notOk(inputs.some(path => path.includes('node_modules')), `only the package's own modules: ${inputs.join(', ')}`)
  const code = result.outputFiles[0]!.text
  for (const pattern of [/\bBuffer\b/, /\bprocess\b/, /\brequire\(/, /node:/]) t.notMatch(code, pattern, `no ${String(pattern)}`)
  // The whole browser client plus the fallback.
  t.ok(gzipSync(result.outputFiles[0]!.contents, { level: 9 }).byteLength < 13 * 1024, 'under 13 KB gzipped')
})
