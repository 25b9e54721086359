/**
 * Stock HTTP clients, unmodified, in Debian's Chromium against the plugin's
 * HTTP routes: connect-web's gRPC-Web and Connect transports (binary and
 * JSON, and Connect with useHttpGet), the official grpc-web client in text
 * and in binary mode, @improbable-eng/grpc-web's CrossBrowserHttpTransport
 * and nice-grpc-web's FetchTransport, from a
 * page the plugin's app serves (same origin); and the README's CORS recipe
 * with @fastify/cors, from a page of another origin.
 */
import cors from '@fastify/cors'
import Fastify, { type FastifyInstance } from 'fastify'
import protobuf from 'protobufjs'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { bundle, launchBrowser, pageErrors, within } from '../helpers/browser.js'
import { createTestService, testDefinition } from '../helpers/test-service.js'
import type { Scenarios, Summary } from './page/http-page.js'

const NON_ASCII = 'ünïcödé ✓ 🙂 100% done'
const events = new EventEmitter()
events.setMaxListeners(0)

const files = (testDefinition.Unary as unknown as { requestType: { fileDescriptorProtos: Buffer[] } }).requestType.fileDescriptorProtos.map(b => b.toString('base64'))
const script = await bundle(fileURLToPath(new URL('page/http-page.ts', import.meta.url)), {
  'test-descriptor': `export default ${JSON.stringify(protobuf.loadSync(fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))).toJSON())}`,
  'test-files': `export default ${JSON.stringify(files)}`
})
const html = '<!doctype html><meta charset="utf-8"><title>HTTP clients</title><script type="module" src="/page.js"></script>'

async function serve (app: FastifyInstance): Promise<number> {
  app.get('/', async (_request, reply) => await reply.type('text/html').send(html))
  app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
  app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as { port: number }).port
}

// Chromium keeps spare connections open: without forceCloseConnections, close() waits for them.
const app = Fastify({ forceCloseConnections: true })
t.teardown(async () => await app.close())
const httpMethods: string[] = []
app.addHook('onRequest', async request => {
  if (request.method === 'POST') httpMethods.push(`${String(request.headers['content-type'])} ${request.url}`)
  if (request.method === 'GET' && request.url.startsWith('/grpc/')) httpMethods.push(`GET ${request.url}`)
})
await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }] })
const port = await serve(app)

const context = await launchBrowser(t)
const page = await context.newPage()
const errors = pageErrors(page)
await page.goto(`http://127.0.0.1:${port}/`)
await page.waitForFunction(() => 'scenarios' in globalThis)

async function run<K extends keyof Scenarios> (page: Page, name: K, ...args: Parameters<Scenarios[K]>): Promise<Awaited<ReturnType<Scenarios[K]>>> {
  return await within(page.evaluate(([name, args]) => (globalThis as any).scenarios[name](...args), [name, args] as const), 15_000, `scenario ${name}`)
}

let ids = 0
function check (t: any, r: Summary, cancelled: Promise<any>): Promise<void> {
  t.same(r.unary, { message: 'from the page', payload: '0001ff' }, 'unary')
  t.same(r.stream, ['0', '1', '2'], 'server streaming')
  t.same(r.status, { code: 5, message: NON_ASCII }, 'an error status with a non-ASCII message')
  t.match(r.handlerMetadata, { 'x-text': ['from the page'], 'x-data-bin': [{ bin: '0001feff' }] }, 'request metadata, binary too, reaches the handler')
  t.equal(r.trailer, 'trailer value', 'a trailer')
  t.match(r.headerBin, /^AAEC\/v8=/, 'a binary response header, as base64 text')
  t.equal(r.deadline, 4, 'DEADLINE_EXCEEDED')
  return cancelled.then(e => { t.equal(e.event, 'cancelled', 'the handler was cancelled at the deadline') })
}

for (const name of ['grpcWeb', 'connectBinary', 'connectJson', 'connectGetBinary', 'connectGetJson', 'officialText', 'officialBinary', 'improbableCrossBrowser', 'niceFetch'] as const) {
  t.test(`${name} from a page: unary, server streaming, status, metadata both ways, deadline`, async t => {
    const id = `browser-${name}-${++ids}`
    const cancelled = within(new Promise(resolve => events.once(id, resolve)), 5000, `handler event ${id}`)
    await check(t, await run(page, name, NON_ASCII, id), cancelled)
  })
}

t.test('each client used its own protocol', async t => {
  const types = new Set(httpMethods.map(line => line.split(' ')[0]))
  for (const type of ['application/grpc-web+proto', 'application/proto', 'application/json', 'application/grpc-web-text']) t.ok(types.has(type), type)
  const gets = httpMethods.filter(line => line.startsWith('GET '))
  t.ok(gets.some(line => line.includes('/test.Test/Unary?') && line.includes('encoding=proto') && line.includes('base64=1')), 'Connect GET, binary')
  t.ok(gets.some(line => line.includes('/test.Test/Unary?') && line.includes('encoding=json')), 'Connect GET, JSON')
  t.notOk(gets.some(line => !line.includes('/test.Test/Unary?')), 'GET for the side-effect-free method only')
})

t.test('CORS: a page of another origin calls with the README recipe, and is refused without it', async t => {
  const api = Fastify({ forceCloseConnections: true })
  const closed = Fastify({ forceCloseConnections: true })
  const pageApp = Fastify({ forceCloseConnections: true })
  t.teardown(async () => { await api.close(); await closed.close(); await pageApp.close() })
  const pagePort = await serve(pageApp)
  const origin = `http://127.0.0.1:${pagePort}`
  await api.register(cors, {
    origin: [origin],
    methods: ['POST', 'GET'],
    allowedHeaders: ['content-type', 'x-grpc-web', 'x-user-agent', 'grpc-timeout', 'connect-protocol-version', 'connect-timeout-ms', 'x-text'],
    exposedHeaders: ['grpc-status', 'grpc-message', 'grpc-status-details-bin', 'x-header-text']
  })
  await api.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }], allowedOrigins: [origin] })
  await api.listen({ port: 0, host: '127.0.0.1' })
  await closed.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }] })
  await closed.listen({ port: 0, host: '127.0.0.1' })
  const other = await context.newPage()
  const otherErrors: string[] = []
  other.on('pageerror', err => otherErrors.push(err.message))
  await other.goto(`${origin}/`)
  await other.waitForFunction(() => 'scenarios' in globalThis)
  const allowed = await run(other, 'crossOrigin', `http://127.0.0.1:${(api.server.address() as { port: number }).port}/grpc`)
  t.same(allowed, { ok: true, message: 'after headers', header: 'value one' }, 'the call, its metadata and an exposed response header')
  const allowedGet = await run(other, 'crossOrigin', `http://127.0.0.1:${(api.server.address() as { port: number }).port}/grpc`, true)
  t.same(allowedGet, { ok: true, message: 'after headers', header: 'value one' }, 'the same as a Connect GET (preflighted for its x-text header)')
  const refused = await run(other, 'crossOrigin', `http://127.0.0.1:${(closed.server.address() as { port: number }).port}/grpc`)
  t.equal(refused.ok, false, 'no CORS, no call')
  t.same(otherErrors, [])
})

t.test('no page errors', async t => {
  // Chromium logs every non-2xx fetch; Connect answers unary errors with
  // their HTTP status (404 for NOT_FOUND, 504 for DEADLINE_EXCEEDED).
  const expected = /^console: Failed to load resource: the server responded with a status of (404|504) /
  t.same(errors.filter(e => !expected.test(e)), [])
  t.ok(errors.some(e => expected.test(e)), 'the Connect error statuses were seen as such')
})
