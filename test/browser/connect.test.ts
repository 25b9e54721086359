// Connect clients in Debian's Chromium: a page bundling @connectrpc/connect
// and fastify-grpc-ws/connect (esbuild, in memory) is served by the same
// Fastify app as the plugin, on 127.0.0.1, and makes every kind of call,
// client streaming and full-duplex bidi included, over one WebSocket.
import Fastify from 'fastify'
import * as loader from '@grpc/proto-loader'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { bundle, launchBrowser, pageErrors, within } from '../helpers/browser.js'
import { createTestService, testDefinition } from '../helpers/test-service.js'
import type { ConnectScenarios } from './page/connect-page.js'

const events = new EventEmitter()
events.setMaxListeners(0)
const definition = loader.loadSync(fileURLToPath(new URL('../fixtures/test.proto', import.meta.url)))
const files = (definition['test.Request'] as { fileDescriptorProtos: Buffer[] }).fileDescriptorProtos.map(b => b.toString('base64'))
const script = await bundle(fileURLToPath(new URL('page/connect-page.ts', import.meta.url)), {
  'test-file-descriptors': `export default ${JSON.stringify(files)}`
})

// Chromium keeps a spare connection open that never carries a request;
// without forceCloseConnections, close() waits for it to time out.
const app = Fastify({ forceCloseConnections: true })
let upgrades = 0
app.addHook('onRequest', async request => { if (request.headers.upgrade === 'websocket') upgrades++ })
await app.register(fastifyGrpcWs, { closeGracePeriod: 100, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
app.get('/', async (_request, reply) => await reply.type('text/html').send('<!doctype html><meta charset="utf-8"><title>connect test</title><script type="module" src="/page.js"></script>'))
app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
await app.listen({ port: 0, host: '127.0.0.1' })
t.teardown(async () => await app.close())

async function run<K extends keyof ConnectScenarios> (page: Page, name: K, ...args: Parameters<ConnectScenarios[K]>): Promise<Awaited<ReturnType<ConnectScenarios[K]>>> {
  return await within(page.evaluate(([name, args]) => (globalThis as any).scenarios[name](...args), [name, args] as const), 15_000, `scenario ${name}`)
}
const handlerSaw = async (id: string): Promise<any> => await within(new Promise(resolve => events.once(id, resolve)), 5000, `handler event ${id}`)

const context = await launchBrowser(t)
const page = await context.newPage()
const errors = pageErrors(page)
await page.goto(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/`)
await page.waitForFunction(() => 'scenarios' in globalThis)

t.test('Should make the four kinds of call, bidi full duplex, from the page', async t => {
  const result = await run(page, 'kinds')
  t.equal(result.unary, 'from the browser')
  t.same(result.streamed, ['0', '1', '2'])
  t.equal(result.clientStreamed, 'one,two', 'client streaming, which fetch-based transports cannot do')
  t.same(result.echoed, ['PING', 'PONG'], 'the second request went after the first reply')
  t.equal(result.bigIntact, true, 'a 100 kB bytes field went both ways intact')
})

t.test('Should carry headers both ways, -bin values as base64 in Headers', async t => {
  const result = await run(page, 'metadata')
  t.same(result.seenByHandler['x-text'], ['from the page'])
  t.same(result.seenByHandler['x-data-bin'], [{ bin: '0001feff' }], 'decoded to bytes on the wire')
  t.same(result.header, { text: 'value one', bin: ['000102feff', Buffer.from('second').toString('hex')] }, 'two -bin values, comma-joined base64 as Connect joins them')
  t.same(result.trailer, { text: 'trailer value', bin: '010203' })
})

t.test('Should reject with ConnectError carrying each gRPC code, its message and metadata', async t => {
  const result = await run(page, 'statuses')
  result.codes.forEach((failure, i) => {
    const code = i + 1
    t.match(failure, { code, message: `details for ${code}`, isConnectError: true, metadata: { 'x-error-text': 'error value', 'x-error-bin': '090807' } }, `status ${code}`)
  })
  t.match(result.missing, { code: 12, name: 'Unimplemented' })
})

t.test('Should end a call at its deadline, and the handler sees cancelled', async t => {
  const cancelled = handlerSaw('connect-deadline')
  const { result, elapsed } = await run(page, 'deadline', 'connect-deadline')
  t.match(result, { code: 4, name: 'DeadlineExceeded' })
  t.ok(elapsed >= 190 && elapsed < 2000, `failed after ${elapsed} ms (deadline 200 ms)`)
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

t.test('Should cancel through an AbortSignal, which reaches the handler as cancelled', async t => {
  const cancelled = handlerSaw('connect-abort')
  const { received, result } = await run(page, 'abort', 'connect-abort')
  t.equal(received, 3)
  t.match(result, { code: 1, name: 'Canceled' })
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

t.test('Should have done it all on one WebSocket, with no error in the page', async t => {
  t.equal(await run(page, 'state'), 'ready')
  t.equal(upgrades, 1)
  t.same(errors, [])
})
