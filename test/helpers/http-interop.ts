/**
 * The interop list every stock HTTP client runs against the plugin's HTTP
 * routes, with the same assertions: empty and large unary, server
 * streaming, metadata both ways (binary too), every status code with a
 * non-ASCII message, deadline exceeded with the handler cancelled, an abort
 * reaching the handler, unimplemented method and service, 100 concurrent
 * calls, and client streaming where the client can stream a request body.
 */
import Fastify, { type FastifyRequest } from 'fastify'
import { EventEmitter } from 'node:events'
import type { Test } from 'tap'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { bounded } from './bounded.js'
import type { HttpClient } from './http-clients.js'
import { createTestService, testDefinition } from './test-service.js'

export const NON_ASCII = 'ünïcödé ✓ 🙂 100% done'

export interface HttpEnv {
  /** `http://127.0.0.1:<port>/grpc`: the base every client takes. */
  base: string
  events: EventEmitter
  handlerEvent: (id: string) => Promise<any>
  /** `<HTTP method> <path>` of each request the app received. */
  requests: string[]
}

export async function startHttpEnv (t: Test, options: Partial<FastifyGrpcWsOptions> = {}, { http2 = false } = {}): Promise<HttpEnv> {
  const events = new EventEmitter()
  events.setMaxListeners(0)
  // Cleartext HTTP/2 (h2c) when asked: the clients under test speak it with prior knowledge.
  // forceCloseConnections: close() would otherwise wait for the clients' idle sessions.
  const app = (http2 ? Fastify({ http2: true, forceCloseConnections: true }) : Fastify()) as unknown as ReturnType<typeof Fastify>
  const requests: string[] = []
  app.addHook('onRequest', async (request: FastifyRequest) => { requests.push(`${request.method} ${request.url.split('?')[0]!}`) })
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close() })
  return {
    base: `http://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`,
    events,
    requests,
    handlerEvent: async id => await bounded(`the handler event ${id}`, new Promise(resolve => events.once(id, resolve)))
  }
}

let ids = 0

export function interop (t: Test, env: HttpEnv, client: HttpClient): void {
  const id = (what: string): string => `${client.name}-${what}-${++ids}`

  t.test(`${client.name}: empty unary`, async t => {
    const out = await bounded('unary', client.unary({ mode: 'echo' }))
    t.equal(out.code, 0, out.details)
    t.equal(out.messages.length, 1)
    t.equal(out.messages[0]?.message, '')
    t.equal(out.messages[0]?.payload.length, 0)
  })

  const big = client.maxUnaryRequest ?? 1024 * 1024
  t.test(`${client.name}: large unary, ${big === 1024 * 1024 ? '1 MiB each way' : `a ${big} B request (the largest it can send), 2 MiB back`}`, async t => {
    const payload = Buffer.alloc(big)
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff
    const echoed = await bounded('echo', client.unary({ mode: 'echo', message: 'big', payload }))
    t.equal(echoed.code, 0, echoed.details)
    t.ok(Buffer.from(echoed.messages[0]!.payload).equals(payload), 'the same bytes back')
    const sized = await bounded('size', client.unary({ mode: 'size', size: 2 * 1024 * 1024 }))
    t.equal(sized.code, 0, sized.details)
    t.equal(sized.messages[0]?.payload.length, 2 * 1024 * 1024)
  })

  t.test(`${client.name}: server streaming`, async t => {
    const out = await bounded('stream', client.serverStream({ mode: 'count', count: 5, size: 3 }))
    t.equal(out.code, 0, out.details)
    t.same(out.messages.map(m => m.message), ['0', '1', '2', '3', '4'])
    t.same(out.messages.map(m => [...m.payload]), [[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]])
  })

  t.test(`${client.name}: request metadata, text and binary, reaches the handler as grpc-js metadata`, async t => {
    const out = await bounded('info', client.unary({ mode: 'info' }, { metadata: { 'x-text': 'value one', 'x-bin': new Uint8Array([0, 1, 2, 254, 255]) } }))
    t.equal(out.code, 0, out.details)
    const info = JSON.parse(out.messages[0]!.message)
    t.same(info.metadata['x-text'], ['value one'])
    t.same(info.metadata['x-bin'], [{ bin: '000102feff' }])
    for (const key of ['host', 'content-type', 'content-length', 'x-grpc-web', 'grpc-timeout', 'connection', 'connect-protocol-version']) {
      t.notOk(key in info.metadata, `no ${key} in the handler's metadata`)
    }
    t.equal(info.path, '/test.Test/Unary')
    t.match(info.peer, /^127\.0\.0\.1:\d+$/)
  })

  t.test(`${client.name}: response headers and trailers, binary values decoded`, async t => {
    const headers = await bounded('headers', client.unary({ mode: 'headers' }))
    t.equal(headers.code, 0, headers.details)
    t.equal(headers.headers['x-header-text'], 'value one')
    t.equal(headers.headers['x-header-bin'], '000102feff')
    const trailers = await bounded('trailers', client.unary({ mode: 'trailers' }))
    t.equal(trailers.code, 0, trailers.details)
    t.equal(trailers.messages[0]?.message, 'with trailers')
    t.equal(trailers.trailers['x-trailer'], 'trailer value')
    t.equal(trailers.trailers['x-trailer-bin'], '010203')
  })

  t.test(`${client.name}: every status code 1..16 with a non-ASCII message`, async t => {
    for (let code = 1; code <= 16; code++) {
      const out = await bounded(`status ${code}`, client.unary({ mode: 'status', code, details: `${NON_ASCII} #${code}` }))
      t.equal(out.code, code, `code ${code}`)
      t.equal(out.details, `${NON_ASCII} #${code}`, `message of code ${code}`)
      t.equal(out.trailers['x-error-text'], 'error value', `trailers of code ${code}`)
    }
    const streamed = await bounded('status after a message', client.serverStream({ mode: 'status-after-write', code: 10, details: NON_ASCII }))
    t.equal(streamed.code, 10)
    t.equal(streamed.details, NON_ASCII)
    t.same(streamed.messages.map(m => m.message), ['one'], 'the message before the status arrived')
  })

  t.test(`${client.name}: deadline exceeded, and the handler is cancelled`, async t => {
    const name = id('deadline')
    const cancelled = env.handlerEvent(name)
    const out = await bounded('deadline', client.unary({ mode: 'never', id: name }, { timeoutMs: 200 }))
    t.equal(out.code, 4, `DEADLINE_EXCEEDED (${out.details})`)
    t.equal((await cancelled).event, 'cancelled')
  })

  t.test(`${client.name}: an abort reaches the handler as 'cancelled'`, async t => {
    const name = id('abort')
    const cancelled = env.handlerEvent(name)
    const controller = new AbortController()
    const out = client.serverStream({ mode: 'endless', id: name }, { signal: controller.signal })
    setTimeout(() => { controller.abort() }, 100)
    t.equal((await bounded('abort', out)).code, 1, 'CANCELLED on the client')
    t.equal((await cancelled).event, 'cancelled', 'the handler saw it')
  })

  t.test(`${client.name}: unimplemented method and service give UNIMPLEMENTED`, async t => {
    const missing = await bounded('missing', client.missing())
    t.equal(missing.code, 12, missing.details)
    const unknown = await bounded('unknown service', client.unknownService())
    t.equal(unknown.code, 12, unknown.details)
    t.match(unknown.details, /test\.Nope/)
  })

  t.test(`${client.name}: 100 concurrent calls`, async t => {
    const outs = await bounded('100 calls', Promise.all(Array.from({ length: 100 }, async (_, i) => await client.unary({ mode: 'echo', message: `m${i}` }))), 15000)
    t.same(outs.map(o => o.code), outs.map(() => 0))
    t.same(outs.map(o => o.messages[0]?.message), outs.map((_, i) => `m${i}`))
  })

  if (client.bidi !== undefined) {
    const bidi = client.bidi
    t.test(`${client.name}: bidi, each request sent only after the previous answer arrived (full duplex)`, async t => {
      t.same(await bounded('bidi', bidi(['ping', 'pong', 'done'])), ['PING', 'PONG', 'DONE'])
    })
  }

  if (client.clientStream !== undefined) {
    const clientStream = client.clientStream
    t.test(`${client.name}: client streaming`, async t => {
      const out = await bounded('client stream', clientStream(['a', 'b', 'c'].map(message => ({ message, payload: Buffer.alloc(10) }))))
      t.equal(out.code, 0, out.details)
      t.equal(out.messages[0]?.message, 'a,b,c')
      t.equal(Buffer.from(out.messages[0]!.payload).toString(), '30')
    })
  }
}
