// The browser client in Debian's Chromium: a page bundling it (esbuild, in
// memory) is served by the same Fastify app as the plugin, on 127.0.0.1, and
// calls the test service over one WebSocket.
import Fastify, { type FastifyInstance } from 'fastify'
import protobuf from 'protobufjs'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { bundle, launchBrowser, pageErrors, requireChromium, within } from '../helpers/browser.js'
import { createTestService, testDefinition } from '../helpers/test-service.js'
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import type { Scenarios } from './page/client-page.js'

const events = new EventEmitter()
events.setMaxListeners(0)
const descriptor = protobuf.loadSync(fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))).toJSON()
const typesProto = fileURLToPath(new URL('../fixtures/types.proto', import.meta.url))
const script = await bundle(fileURLToPath(new URL('page/client-page.ts', import.meta.url)), {
  'test-descriptor': `export default ${JSON.stringify(descriptor)}`,
  'types-descriptor': `export default ${JSON.stringify(protobuf.loadSync(typesProto).toJSON())}`
})
// types.Types, with proto-loader's `longs: String` as a Node server would load it: an echo.
const typesDefinition = (grpc.loadPackageDefinition(loader.loadSync(typesProto, { longs: String, defaults: true })) as any).types.Types.service as grpc.ServiceDefinition
const typesEcho = { Echo: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => { callback(null, call.request) } }

interface Server { app: FastifyInstance, upgrades: () => number }

async function startServer (port = 0): Promise<Server> {
  // Chromium keeps a spare connection open that never carries a request;
  // without this, close() waits for it to time out.
  const app = Fastify({ forceCloseConnections: true })
  let upgrades = 0
  app.addHook('onRequest', async request => { if (request.headers.upgrade === 'websocket') upgrades++ })
  await app.register(fastifyGrpcWs, { closeGracePeriod: 100, services: [{ definition: testDefinition, implementation: createTestService(events) }, { definition: typesDefinition, implementation: typesEcho }] })
  app.get('/', async (_request, reply) => await reply.type('text/html').send('<!doctype html><meta charset="utf-8"><title>client test</title><script type="module" src="/page.js"></script>'))
  app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
  app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
  await app.listen({ port, host: '127.0.0.1' })
  return { app, upgrades: () => upgrades }
}

/** Runs a scenario in the page; bounded like every wait here. */
async function run<K extends keyof Scenarios> (page: Page, name: K, ...args: Parameters<Scenarios[K]>): Promise<Awaited<ReturnType<Scenarios[K]>>> {
  return await within(page.evaluate(([name, args]) => (globalThis as any).scenarios[name](...args), [name, args] as const), 15_000, `scenario ${name}`)
}

const handlerSaw = async (id: string): Promise<any> => await within(new Promise(resolve => events.once(id, resolve)), 5000, `handler event ${id}`)

t.test('Should fail, not skip, without Chromium, saying how to install it', async t => {
  t.throws(() => { requireChromium('/nonexistent/chromium') }, { message: /apt-get update && apt-get install -y chromium/ })
})

let server = await startServer()
const port = (server.app.server.address() as { port: number }).port
t.teardown(async () => await server.app.close())
const context = await launchBrowser(t)
const page = await context.newPage()
const errors = pageErrors(page)
await page.goto(`http://127.0.0.1:${port}/`)
await page.waitForFunction(() => 'scenarios' in globalThis)

t.test('Should make all four kinds of call from the page', async t => {
  const result = await run(page, 'kinds')
  t.equal(result.unary, 'from the browser')
  t.same(result.streamed, ['0', '1', '2', '3', '4'])
  t.equal(result.clientStreamed, 'one,two,three', 'client streaming from an async generator')
  t.equal(result.fromArray, 'a,b', 'client streaming from an array')
  t.same(result.echoed, ['PING', 'PONG'], 'bidi: a reply, then a further request on the same call')
  t.equal(result.bigIntact, true, 'a 100 kB bytes field went both ways intact')
  t.equal(result.bigIsUint8Array, true)
})

t.test('Should carry metadata both ways: request metadata, response headers and trailers', async t => {
  const result = await run(page, 'metadata')
  t.same(result.seenByHandler['x-text'], ['from the page'])
  t.same(result.seenByHandler['x-repeated'], ['a, b'], 'joined as HTTP/2 joins them')
  t.same(result.seenByHandler['x-data-bin'], [{ bin: '0001feff' }], '-bin values arrive as bytes')
  t.match(result.seenByHandler['user-agent']?.[0], /Chrome\//, 'the handler sees the browser\'s user-agent')
  t.same(result.headers, { text: 'value one', repeated: ['a', 'b'], bin: ['000102feff', Buffer.from('second').toString('hex')] })
  t.same(result.trailers, { text: 'trailer value', bin: '010203' })
})

t.test('Should reject with one GrpcError class carrying code, details and metadata', async t => {
  const result = await run(page, 'statuses')
  result.codes.forEach((failure, i) => {
    const code = i + 1
    t.match(failure, { code, details: `details for ${code}`, isGrpcError: true, metadata: { 'x-error-text': ['error value'], 'x-error-bin': ['090807'] } }, `status ${code}`)
  })
  t.match(result.codes[4], { name: 'NOT_FOUND' })
  t.match(result.missing, { code: 12, name: 'UNIMPLEMENTED', details: 'The server does not implement the method Missing' })
  t.match(result.thrown, { code: 2, details: 'Unknown error' })
  t.same(result.midStream, ['one'], 'the message before the failure arrived')
  t.match(result.stream, { code: 10, details: 'stopped' })
})

t.test('Should end a call at its deadline, and the handler sees cancelled', async t => {
  const cancelled = handlerSaw('browser-deadline')
  const result = await run(page, 'deadline', 'browser-deadline')
  t.match(result, { code: 4, name: 'DEADLINE_EXCEEDED', details: 'Deadline exceeded' })
  t.ok(result.elapsed >= 190 && result.elapsed < 2000, `failed after ${result.elapsed} ms (deadline 200 ms)`)
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

t.test('Should cancel through an AbortSignal, which reaches the handler as cancelled', async t => {
  const cancelled = handlerSaw('browser-abort')
  const result = await run(page, 'abort', 'browser-abort')
  t.equal(result.received, 3, 'the loop aborted after its third message')
  t.match(result.result, { code: 1, name: 'CANCELLED', details: 'Cancelled on client' })
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

t.test('Should run 200 concurrent calls on one WebSocket', async t => {
  const before = server.upgrades()
  const result = await run(page, 'concurrent', 200)
  t.equal(result.answered, 200, 'each call got its own answer')
  t.equal(result.state, 'ready')
  t.equal(server.upgrades() - before, 0, 'no new socket was opened')
  t.equal(server.app.grpc.connectionCount, 1, 'one WebSocket connection on the server')
})

t.test('Should fail calls in flight with UNAVAILABLE when the server restarts, then reconnect', async t => {
  await run(page, 'start', 'restart')
  await new Promise(resolve => setTimeout(resolve, 50))
  await within(server.app.close(), 5000, 'server close')
  const failed = await run(page, 'settle', 'restart')
  t.match(failed, { code: 14, name: 'UNAVAILABLE' }, 'the call on the dropped socket failed instead of hanging')
  t.equal((await run(page, 'state')).state, 'idle')
  server = await startServer(port)
  t.equal(await run(page, 'echo', 'after the restart'), 'after the restart', 'a new call reconnected to the new server')
  const { state, states } = await run(page, 'state')
  t.equal(state, 'ready')
  t.same(states, ['connecting', 'ready', 'idle', 'connecting', 'ready'])
  t.equal(server.upgrades(), 1)
})

t.test('Should give 64-bit integers as exact strings by default, and take bigints', async t => {
  t.same(await run(page, 'types'), {
    i64: '-9007199254740993',
    u64: '18446744073709551615',
    fromBigint: '-9223372036854775808',
    list: ['1', '-2'],
    color: 2,
    data: [0, 1, 254, 255],
    dataIsUint8Array: true,
    defaultI64: '0'
  })
})

t.test('Should say what a browser can know of a refused upgrade', async t => {
  const result = await run(page, 'refused', '/wrong', false)
  const url = `ws://127.0.0.1:${port}/wrong`
  t.same(result, {
    code: 14,
    details: `Connection to ${url} closed before it was ready (code 1006); browsers hide the HTTP status of a refused upgrade`,
    url
  })
  // Chromium logs the refusal itself (with the status, in the console only): that line is expected.
  const logged = errors.findIndex(line => line.includes(`WebSocket connection to '${url}' failed`))
  t.not(logged, -1, `Chromium's own console line: ${errors.join(' | ')}`)
  errors.splice(logged, 1)
})

t.test('Should say, with the HTTP fallback, what the HTTP call got and why the WebSocket failed', async t => {
  const result = await run(page, 'refused', '/wrong', true)
  const url = `ws://127.0.0.1:${port}/wrong`
  t.same(result, {
    code: 12,
    details: `HTTP 404 from http://127.0.0.1:${port}/wrong/test.Test/Unary, and the WebSocket could not be opened: Connection to ${url} closed before it was ready (code 1006); browsers hide the HTTP status of a refused upgrade`,
    url
  })
  // Chromium's own console lines: the refused upgrade, and the 404 of the fetch.
  for (const expected of [`WebSocket connection to '${url}' failed`, 'status of 404']) {
    const logged = errors.findIndex(line => line.includes(expected))
    t.not(logged, -1, `Chromium's own console line "${expected}": ${errors.join(' | ')}`)
    if (logged !== -1) errors.splice(logged, 1)
  }
})

t.test('Should have thrown and logged no error in the page', async t => {
  t.same(errors, [])
})
