/**
 * The page test/browser/fallback.test.ts loads through a proxy that refuses
 * WebSocket upgrades: the browser client with the HTTP fallback
 * (fastify-grpc-ws/client) at its defaults, calling the test service on the page's own origin.
 */
import protobuf from 'protobufjs/light.js'
import descriptor from 'test-descriptor'
import { createClient, createServiceClient, GrpcError, type BidiStreaming, type ServerStreaming, type Unary } from '../../../lib/client/web/index.js'

interface Request { mode?: string, message?: string, payload?: Uint8Array, code?: number, details?: string, count?: number, id?: string }
interface Response { message: string, payload: Uint8Array }
interface TestService {
  unary: Unary<Request, Response>
  serverStream: ServerStreaming<Request, Response>
  bidi: BidiStreaming<Request, Response>
}

const service = protobuf.Root.fromJSON(descriptor).lookupService('test.Test')
const client = createClient('/grpc', { retryMs: 300, backoff: { initialMs: 100, maxMs: 300 } })
const test = createServiceClient<TestService>(client, service, { conversion: { defaults: true } })

const failure = (err: unknown): { code: number, details: string } => ({ code: (err as GrpcError).code, details: (err as GrpcError).details })

const scenarios = {
  transport: () => client.transport,
  async overHttp (nonAscii: string, id: string) {
    const unary = (await test.unary({ mode: 'echo', message: 'from the page' })).message
    const stream: string[] = []
    for await (const m of test.serverStream({ mode: 'count', count: 3 })) stream.push(m.message)
    const info = JSON.parse((await test.unary({ mode: 'info' }, { metadata: { 'x-text': 'page', 'x-data-bin': new Uint8Array([0, 255]) } })).message).metadata
    let status = { code: 0, details: '' }
    try { await test.unary({ mode: 'status', code: 5, details: nonAscii }) } catch (err) { status = failure(err) }
    const trailerCall = test.unary({ mode: 'trailers' })
    await trailerCall
    const trailer = (await trailerCall.trailers).get('x-trailer')
    let deadline = 0
    try { await test.unary({ mode: 'never', id }, { timeout: 200 }) } catch (err) { deadline = failure(err).code }
    let bidi = { code: 0, details: '' }
    try {
      const call = test.bidi()
      void call.send({ message: 'a' })
      void call.send({ message: 'b' })
      call.close()
      for await (const _ of call) { /* nothing arrives */ }
    } catch (err) { bidi = failure(err) }
    return { unary, stream, info, status, trailer, deadline, bidi, transport: client.transport }
  },
  async bidiOverSocket () {
    const call = test.bidi()
    void call.send({ message: 'back' })
    call.close()
    const out: string[] = []
    for await (const m of call) out.push(m.message)
    return { out, transport: client.transport }
  }
}

export type Scenarios = typeof scenarios
;(globalThis as { scenarios?: Scenarios }).scenarios = scenarios
