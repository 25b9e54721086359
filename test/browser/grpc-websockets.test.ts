/**
 * The two existing `grpc-websockets` clients, unmodified, in Debian's
 * Chromium: @improbable-eng/grpc-web (grpc.invoke / grpc.client with
 * grpc.WebsocketTransport()) and nice-grpc-web (createChannel with
 * WebsocketTransport(), createClient). A page bundling both (esbuild, in
 * memory, platform 'browser') is served by the same Fastify app as the
 * plugin, on 127.0.0.1, so its WebSockets to /grpc/test.Test/<Method> are
 * same-origin. The test service's handlers report cancellation through an
 * EventEmitter in this (Node) process.
 *
 * Client quirks worked around (see also test/compat/grpc-websockets-clients.test.ts):
 * - grpc-js and proto-loader are Node-only: the page encodes messages with
 *   protobufjs/light from a JSON descriptor of test/fixtures/test.proto, and
 *   hand-builds improbable's "generated" classes and nice-grpc-web's
 *   definition over it.
 * - improbable's grpc.invoke refuses client-streaming methods: client and
 *   bidi streaming use grpc.client.
 * - improbable's metadata holds strings only: a `-bin` value is sent as
 *   base64 text, and response `-bin` values arrive as base64 text (the page
 *   decodes them). nice-grpc-web takes and gives Uint8Array.
 * - improbable's close() ends the call silently (no onEnd); nice-grpc-web
 *   reports an abort as its own AbortError, not a status. Only the handler's
 *   'cancelled' event shows the cancel reached the server.
 * - Neither client has a deadline the server sees: both send `grpc-timeout`
 *   metadata, as an app would.
 */
import Fastify from 'fastify'
import protobuf from 'protobufjs'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { bundle, launchBrowser, pageErrors, within } from '../helpers/browser.js'
import { createTestService, testDefinition } from '../helpers/test-service.js'
import type { Scenarios } from './page/grpc-websockets-page.js'

const NON_ASCII = 'ünïcödé ✓ 🙂 100% done\r\n'
// Codes, as numbers: the same in both clients.
const OK = 0
const NOT_FOUND = 5
const DEADLINE_EXCEEDED = 4
const RESOURCE_EXHAUSTED = 8

const events = new EventEmitter()
events.setMaxListeners(0)
const descriptor = protobuf.loadSync(fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))).toJSON()
const script = await bundle(fileURLToPath(new URL('page/grpc-websockets-page.ts', import.meta.url)), {
  'test-descriptor': `export default ${JSON.stringify(descriptor)}`
})

// Chromium keeps a spare connection open that never carries a request;
// without forceCloseConnections, close() waits for it to time out.
const app = Fastify({ forceCloseConnections: true })
t.teardown(async () => await app.close())
// Every WebSocket the page opens, to show both clients used the compatibility route.
const upgrades: string[] = []
app.addHook('onRequest', async request => {
  if (request.headers.upgrade === 'websocket') upgrades.push(`${request.url} ${String(request.headers['sec-websocket-protocol'])}`)
})
// A 1 KiB receive limit, for the size-limit tests; every other request is far smaller.
await app.register(fastifyGrpcWs, { closeGracePeriod: 100, maxReceiveMessageSize: 1024, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
app.get('/', async (_request, reply) => await reply.type('text/html').send('<!doctype html><meta charset="utf-8"><title>grpc-websockets clients</title><script type="module" src="/page.js"></script>'))
app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
await app.listen({ port: 0, host: '127.0.0.1' })
const port = (app.server.address() as { port: number }).port

// launchBrowser fails loudly (never skips) when Chromium is missing.
const context = await launchBrowser(t)
const page = await context.newPage()
const errors = pageErrors(page)
await page.goto(`http://127.0.0.1:${port}/`)
await page.waitForFunction(() => 'scenarios' in globalThis)

/** Runs a scenario in the page; bounded like every wait here. */
async function run<K extends keyof Scenarios> (page: Page, name: K, ...args: Parameters<Scenarios[K]>): Promise<Awaited<ReturnType<Scenarios[K]>>> {
  return await within(page.evaluate(([name, args]) => (globalThis as any).scenarios[name](...args), [name, args] as const), 15_000, `scenario ${name}`)
}

const handlerSaw = async (id: string): Promise<any> => await within(new Promise(resolve => events.once(id, resolve)), 5000, `handler event ${id}`)

const hexOf = (bytes: number[] | Buffer): string => Buffer.from(bytes).toString('hex')
const SEEN_BY_HANDLER = { 'x-text': ['from the page'], 'x-multi': ['a, b'], 'x-data-bin': [{ bin: '0001feff' }] }

// --- the four kinds ---------------------------------------------------------------------------

t.test('improbable: unary and server streaming (grpc.invoke), client streaming and bidi (grpc.client)', async t => {
  const r = await run(page, 'improbableKinds')
  t.match(r.unary, { code: OK, messages: [{ message: 'from the browser', payload: '0001ff' }] }, 'unary')
  t.equal(r.unary.messages.length, 1)
  t.equal(r.serverStream.code, OK)
  t.same(r.serverStream.messages, ['0', '1', '2', '3', '4'].map((message, i) => ({ message, payload: hexOf([i, i]) })), 'server streaming')
  t.equal(r.clientStream.code, OK)
  t.same(r.clientStream.messages.map(m => [m.message, Buffer.from(m.payload, 'hex').toString()]), [['a,b,c', '30']], 'client streaming: three requests, 30 payload bytes')
  t.equal(r.bidi.code, OK)
  t.same(r.bidi.messages.map(m => m.message), ['PING', 'PONG', 'DONE'], 'bidi in lockstep')
})

t.test('nice-grpc-web: unary, server streaming, client streaming and bidi (async iterables)', async t => {
  const r = await run(page, 'niceKinds')
  t.same(r.unary, { message: 'from the browser', payload: '0001ff' }, 'unary')
  t.same(r.serverStream, ['0', '1', '2', '3', '4'].map((message, i) => ({ message, payload: hexOf([i, i]) })), 'server streaming')
  t.same(r.clientStream, { message: 'a,b,c', payload: '30' }, 'client streaming from an async generator')
  t.same(r.bidi, ['PING', 'PONG', 'DONE'], 'bidi in lockstep')
})

// --- metadata both ways ----------------------------------------------------------------------------

t.test('improbable: request metadata (a -bin value too) reaches the handler; response headers and trailers come back', async t => {
  const r = await run(page, 'improbableMetadata')
  t.equal(r.code, OK)
  t.match(r.seenByHandler.metadata, SEEN_BY_HANDLER, 'repeated values joined as HTTP/2 joins them; the base64 -bin value arrives as bytes')
  t.equal(r.seenByHandler.path, '/test.Test/Unary')
  t.same(r.headers['x-header-text'], ['value one'])
  t.same(r.headers['x-header-repeated'], ['a', 'b'])
  t.same(r.headerBin, ['000102feff', hexOf(Buffer.from('second'))], 'binary headers, as base64 text')
  t.same(r.headersMessages, ['first'])
  t.equal(r.trailersCode, OK)
  t.same(r.trailers['x-trailer'], ['trailer value'])
  t.same(r.trailerBin, ['010203'], 'a binary trailer, as base64 text')
})

t.test('nice-grpc-web: request metadata (a -bin value too) reaches the handler; response headers and trailers come back', async t => {
  const r = await run(page, 'niceMetadata')
  t.match(r.seenByHandler.metadata, SEEN_BY_HANDLER, 'the same handler metadata as improbable\'s')
  t.equal(r.seenByHandler.path, '/test.Test/Unary')
  t.same(r.headers['x-header-text'], ['value one'])
  t.same(r.headers['x-header-repeated'], ['a, b'], 'nice-grpc-web\'s Metadata joins ASCII values, as HTTP/2 does')
  t.same(r.headers['x-header-bin'], ['bin:000102feff', `bin:${hexOf(Buffer.from('second'))}`], 'binary headers, as bytes')
  t.same(r.headersMessages, ['first'])
  t.equal(r.trailersMessage, 'with trailers')
  t.same(r.trailers['x-trailer'], ['trailer value'])
  t.same(r.trailers['x-trailer-bin'], ['bin:010203'], 'a binary trailer, as bytes')
})

// --- an error status ----------------------------------------------------------------------------------

t.test('improbable: an error status with a non-ASCII message and trailing metadata', async t => {
  const r = await run(page, 'improbableStatus', NON_ASCII)
  t.same([r.code, r.message], [NOT_FOUND, NON_ASCII])
  t.same(r.messages, [])
  t.same(r.trailers['x-error-text'], ['error value'])
  t.same(r.trailers['x-error-bin'], [Buffer.from([9, 8, 7]).toString('base64')])
})

t.test('nice-grpc-web: an error status with a non-ASCII message and trailing metadata', async t => {
  const r = await run(page, 'niceStatus', NON_ASCII)
  t.same([r.kind, r.code, r.details], ['ClientError', NOT_FOUND, NON_ASCII])
  t.same(r.trailers['x-error-text'], ['error value'])
  t.same(r.trailers['x-error-bin'], ['bin:090807'])
})

// --- cancellation -----------------------------------------------------------------------------------------

t.test('improbable: close() on an endless stream reaches the handler as \'cancelled\'', async t => {
  const cancelled = handlerSaw('browser-imp-cancel')
  const r = await run(page, 'improbableCancel', 'browser-imp-cancel')
  t.same(r, { closed: true, endedAfterClose: false }, 'improbable ends the call silently on close()')
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

t.test('nice-grpc-web: an aborted signal on an endless stream reaches the handler as \'cancelled\'', async t => {
  const cancelled = handlerSaw('browser-nice-cancel')
  const r = await run(page, 'niceCancel', 'browser-nice-cancel')
  t.equal(r.received, 1, 'aborted after the first message')
  t.match(r, { kind: 'other', name: 'AbortError' }, 'the client sees its own AbortError')
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

// --- deadlines ------------------------------------------------------------------------------------------------

t.test('improbable: grpc-timeout 200m on a call that never answers gives DEADLINE_EXCEEDED, and the handler is cancelled', async t => {
  const cancelled = handlerSaw('browser-imp-deadline')
  const r = await run(page, 'improbableDeadline', 'browser-imp-deadline')
  t.same([r.code, r.message], [DEADLINE_EXCEEDED, 'Deadline exceeded'])
  t.ok(r.elapsed >= 190 && r.elapsed < 3000, `failed after ${Math.round(r.elapsed)} ms (deadline 200 ms)`)
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

t.test('nice-grpc-web: grpc-timeout 200m on a call that never answers gives DEADLINE_EXCEEDED, and the handler is cancelled', async t => {
  const cancelled = handlerSaw('browser-nice-deadline')
  const r = await run(page, 'niceDeadline', 'browser-nice-deadline')
  t.same([r.kind, r.code, r.details], ['ClientError', DEADLINE_EXCEEDED, 'Deadline exceeded'])
  t.ok(r.elapsed >= 190 && r.elapsed < 3000, `failed after ${Math.round(r.elapsed)} ms (deadline 200 ms)`)
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

// --- the size limit -----------------------------------------------------------------------------------------------

t.test('improbable: a 2000-byte payload over maxReceiveMessageSize 1024 gives RESOURCE_EXHAUSTED; 900 bytes pass', async t => {
  const r = await run(page, 'improbableSize')
  t.same([r.big.code, r.big.message], [RESOURCE_EXHAUSTED, `Received message larger than max (${r.requestSize} vs 1024)`])
  t.same(r.big.messages, [])
  t.same(r.fits, { code: OK, payload: '00'.repeat(900) }, 'the 900 bytes echoed')
})

t.test('nice-grpc-web: a 2000-byte payload over maxReceiveMessageSize 1024 gives RESOURCE_EXHAUSTED; 900 bytes pass', async t => {
  const r = await run(page, 'niceSize')
  t.same([r.big.kind, r.big.code, r.big.details], ['ClientError', RESOURCE_EXHAUSTED, `Received message larger than max (${r.requestSize} vs 1024)`])
  t.equal(r.fits, 900)
})

t.test('Should have opened every WebSocket on the grpc-websockets route, one per call', async t => {
  t.equal(upgrades.length, 24, 'one WebSocket for each of the 24 calls the page made')
  t.same(upgrades.filter(u => !/^\/grpc\/test\.Test\/(Unary|ServerStream|ClientStream|Bidi) grpc-websockets$/.test(u)), [], 'all to /grpc/test.Test/<Method>, offering only grpc-websockets')
})

t.test('Should have thrown and logged no error in the page', async t => {
  t.same(errors, [])
})
