// Debian's Chromium calling services the plugin forwards to an upstream
// grpc-js server in another process: the page (the same one as
// client.test.ts) is served by a Fastify app with no handlers of its own.
import Fastify from 'fastify'
import protobuf from 'protobufjs'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { bundle, launchBrowser, pageErrors, within } from '../helpers/browser.js'
import { UpstreamProcess } from '../helpers/upstream-process.js'
import type { Scenarios } from './page/client-page.js'

const descriptor = protobuf.loadSync(fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))).toJSON()
const typesProto = fileURLToPath(new URL('../fixtures/types.proto', import.meta.url))
const script = await bundle(fileURLToPath(new URL('page/client-page.ts', import.meta.url)), {
  'test-descriptor': `export default ${JSON.stringify(descriptor)}`,
  'types-descriptor': `export default ${JSON.stringify(protobuf.loadSync(typesProto).toJSON())}`
})

const upstream = await UpstreamProcess.start()
t.teardown(async () => { await upstream.close() })
const app = Fastify({ forceCloseConnections: true })
await app.register(fastifyGrpcWs, { closeGracePeriod: 100, upstreams: [{ target: upstream.address, services: 'reflection' }] })
app.get('/', async (_request, reply) => await reply.type('text/html').send('<!doctype html><meta charset="utf-8"><title>forward test</title><script type="module" src="/page.js"></script>'))
app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
await app.listen({ port: 0, host: '127.0.0.1' })
t.teardown(async () => await app.close())

async function run<K extends keyof Scenarios> (page: Page, name: K, ...args: Parameters<Scenarios[K]>): Promise<Awaited<ReturnType<Scenarios[K]>>> {
  return await within(page.evaluate(([name, args]) => (globalThis as any).scenarios[name](...args), [name, args] as const), 15_000, `scenario ${name}`)
}
const upstreamSaw = async (id: string): Promise<any> => await within(new Promise(resolve => upstream.events.once(id, resolve)), 5000, `upstream event ${id}`)

const context = await launchBrowser(t)
const page = await context.newPage()
const errors = pageErrors(page)
await page.goto(`http://127.0.0.1:${(app.server.address() as { port: number }).port}/`)
await page.waitForFunction(() => 'scenarios' in globalThis)

t.test('Should make all four kinds of call from the page to the upstream', async t => {
  const result = await run(page, 'kinds')
  t.equal(result.unary, 'from the browser')
  t.same(result.streamed, ['0', '1', '2', '3', '4'])
  t.equal(result.clientStreamed, 'one,two,three')
  t.same(result.echoed, ['PING', 'PONG'], 'bidi, full duplex through the forwarder')
  t.equal(result.bigIntact, true, 'a 100 kB bytes field went both ways intact')
})

t.test('Should carry metadata, headers and binary trailers through the forwarder', async t => {
  const result = await run(page, 'metadata')
  t.same(result.seenByHandler['x-text'], ['from the page'])
  t.same(result.seenByHandler['x-data-bin'], [{ bin: '0001feff' }])
  t.same(result.seenByHandler['x-forwarded-for'], ['127.0.0.1'], 'the browser\'s address')
  // The HTTP/2 hop to the upstream joins repeated header values.
  t.same(result.headers, { text: 'value one', repeated: ['a, b'], bin: ['000102feff', Buffer.from('second').toString('hex')] })
  t.same(result.trailers, { text: 'trailer value', bin: '010203' })
})

t.test('Should pass the upstream\'s statuses through', async t => {
  const result = await run(page, 'statuses')
  result.codes.forEach((failure, i) => {
    t.match(failure, { code: i + 1, details: `details for ${i + 1}`, metadata: { 'x-error-text': ['error value'], 'x-error-bin': ['090807'] } }, `status ${i + 1}`)
  })
  t.match(result.missing, { code: 12, details: 'The server does not implement the method Missing' }, 'the upstream\'s own UNIMPLEMENTED')
})

t.test('Should carry the page\'s deadline and its abort to the upstream handler', async t => {
  const atDeadline = upstreamSaw('forward-deadline')
  t.match(await run(page, 'deadline', 'forward-deadline'), { code: 4, name: 'DEADLINE_EXCEEDED' })
  t.match(await atDeadline, { event: 'cancelled', cancelled: true })
  const aborted = upstreamSaw('forward-abort')
  t.match((await run(page, 'abort', 'forward-abort')).result, { code: 1, name: 'CANCELLED' })
  t.match(await aborted, { event: 'cancelled', cancelled: true })
})

t.test('Should have thrown and logged no error in the page', async t => {
  t.same(errors, [])
})
