/**
 * The browser client's HTTP fallback in Debian's Chromium: a page served
 * through a proxy that passes HTTP and refuses every WebSocket upgrade
 * (HTTP 502). Unary, server streaming, metadata, statuses and deadlines work
 * over gRPC-Web; a bidi call fails with UNAVAILABLE naming the cause;
 * `client.transport` is 'http'. Then the proxy lets upgrades through and the
 * page moves to 'websocket'.
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
import { startUpgradeProxy } from '../helpers/upgrade-proxy.js'
import type { Scenarios } from './page/fallback-page.js'

const NON_ASCII = 'ünïcödé ✓ 🙂 100% done'
const events = new EventEmitter()
events.setMaxListeners(0)
const script = await bundle(fileURLToPath(new URL('page/fallback-page.ts', import.meta.url)), {
  'test-descriptor': `export default ${JSON.stringify(protobuf.loadSync(fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))).toJSON())}`
})

const app = Fastify({ forceCloseConnections: true })
await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }] })
app.get('/', async (_request, reply) => await reply.type('text/html').send('<!doctype html><meta charset="utf-8"><title>fallback</title><script type="module" src="/page.js"></script>'))
app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
await app.listen({ port: 0, host: '127.0.0.1' })
t.teardown(async () => await app.close())
const proxy = await startUpgradeProxy(t, (app.server.address() as { port: number }).port)

const context = await launchBrowser(t)
const page = await context.newPage()
const errors = pageErrors(page)
await page.goto(`http://127.0.0.1:${proxy.port}/`)
await page.waitForFunction(() => 'scenarios' in globalThis)

async function run<K extends keyof Scenarios> (page: Page, name: K, ...args: Parameters<Scenarios[K]>): Promise<Awaited<ReturnType<Scenarios[K]>>> {
  return await within(page.evaluate(([name, args]) => (globalThis as any).scenarios[name](...args), [name, args] as const), 15_000, `scenario ${name}`)
}

t.test('behind a proxy that refuses upgrades, at the defaults plus the fallback entry: calls go over HTTP', async t => {
  const cancelled = within(new Promise<any>(resolve => events.once('page-fallback-deadline', resolve)), 5000, 'the handler cancelled')
  const r = await run(page, 'overHttp', NON_ASCII, 'page-fallback-deadline')
  t.equal(r.unary, 'from the page')
  t.same(r.stream, ['0', '1', '2'])
  t.match(r.info, { 'x-text': ['page'], 'x-data-bin': [{ bin: '00ff' }] }, 'metadata reaches the handler')
  t.same(r.status, { code: 5, details: NON_ASCII })
  t.equal(r.trailer, 'trailer value')
  t.equal(r.deadline, 4, 'DEADLINE_EXCEEDED')
  t.equal((await cancelled).event, 'cancelled', 'the handler was cancelled at the deadline')
  t.equal(r.bidi.code, 14, 'bidi: UNAVAILABLE')
  t.match(r.bidi.details, /need a WebSocket.*could not be opened/)
  t.equal(r.transport, 'http')
  t.ok(proxy.upgrades.length > 0 && proxy.upgrades.every(u => u === 'refused'), 'every upgrade was refused')
})

t.test('once upgrades pass, the page moves to the WebSocket', async t => {
  proxy.refuse = false
  await within(page.waitForFunction(() => (globalThis as any).scenarios.transport() === 'websocket', undefined, { timeout: 10_000 }), 11_000, 'the move back')
  const r = await run(page, 'bidiOverSocket')
  t.same(r, { out: ['BACK'], transport: 'websocket' })
  t.ok(proxy.upgrades.includes('passed'))
})

t.test('no page errors but the refused upgrades', async t => {
  t.same(errors.filter(e => !/WebSocket connection to .* failed|status of 502/.test(e)), [])
})
