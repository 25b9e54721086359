// The grpc-js channel where the application or the server misbehaves, with
// the same assertions over HTTP/2 (stock client, grpc-js Server) and over
// the WebSocket channel (stock client, the plugin).
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import t from 'tap'
import fastifyGrpcWs from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { bounded } from '../helpers/bounded.js'
import { nextId, parity, startEnv, unary, unaryError } from '../helpers/parity.js'
import { TestClient, testDefinition } from '../helpers/test-service.js'
import { catchingUncaught } from '../helpers/uncaught.js'

t.test('An application listener that throws', async t => {
  const env = await startEnv(t)
  parity(t, env, "Should surface a 'data' listener's exception as uncaught, and leave the other calls on the channel alone", async (t, transport) => {
    const client = transport.newClient()
    const thrown: unknown[] = []
    const { inFlight, after } = await catchingUncaught(thrown, async () => {
      const inFlight = unary(client, { mode: 'delay', message: 'in flight', delayMs: 200 })
      const call = client.ServerStream({ mode: 'count', count: 3 })
      call.once('data', () => { throw new Error('a bug in the application') })
      call.on('error', () => {})
      // Until the exception has surfaced: it is the application's, and uncaught.
      for (let i = 0; i < 100 && thrown.length === 0; i++) await new Promise(resolve => setTimeout(resolve, 10))
      const result = await bounded('the call in flight', inFlight)
      const later = await bounded('a later call', unary(client, { mode: 'echo', message: 'after' }))
      // Whatever became of the call whose listener threw, it is over now.
      call.cancel()
      return { inFlight: result, after: later }
    })
    t.same(thrown.map(err => (err as Error).message), ['a bug in the application'], 'one uncaught exception, the application\'s')
    t.equal(inFlight.value.message, 'in flight', 'the call in flight on the same channel succeeded')
    t.equal(after.value.message, 'after', 'and so does a later one')
  })
})

t.test('An application write callback that throws', async t => {
  const env = await startEnv(t)
  parity(t, env, 'Should surface the exception as uncaught, and leave the other calls on the channel alone', async (t, transport) => {
    const client = transport.newClient()
    const thrown: unknown[] = []
    const replies = await catchingUncaught(thrown, async () => {
      const inFlight = unary(client, { mode: 'delay', message: 'in flight', delayMs: 200 })
      const call = client.Bidi()
      call.on('data', () => {})
      call.on('error', () => {})
      call.write({ mode: 'echo', message: 'x' }, () => { throw new Error('a bug in the write callback') })
      const replies = [(await bounded('the call in flight', inFlight)).value.message, (await bounded('a later call', unary(client, { mode: 'echo', message: 'after' }))).value.message]
      call.cancel()
      return replies
    })
    t.same(replies, ['in flight', 'after'], 'the other calls on the same channel succeeded')
    t.same(thrown.map(err => (err as Error).message), ['a bug in the write callback'], 'one uncaught exception, the application\'s')
  })
})

/** The test service's Unary path, answered by a server-streaming handler: two messages, then OK. */
const twoResponses = { ...testDefinition, Unary: { ...testDefinition.Unary, responseStream: true } } as unknown as grpc.ServiceDefinition
const twoResponsesImplementation = {
  Unary (call: grpc.ServerWritableStream<any, any>) {
    call.write({ message: 'one' })
    call.write({ message: 'two' })
    call.end()
  }
}

t.test('A unary call answered with two messages then OK', async t => {
  const grpcServer = new grpc.Server()
  grpcServer.addService(twoResponses, twoResponsesImplementation)
  const port = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const app = Fastify()
  await app.register(fastifyGrpcWs, { services: [{ definition: twoResponses, implementation: twoResponsesImplementation }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const wsUrl = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`
  const clients = {
    http2: new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()),
    websocket: new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl) })
  }
  t.teardown(async () => {
    for (const client of Object.values(clients)) client.close()
    await app.close()
    grpcServer.forceShutdown()
  })
  for (const [name, client] of Object.entries(clients)) {
    t.test(`Should end at the deadline with DEADLINE_EXCEEDED: the unary client reads one message and the OK waits for the second [${name}]`, async t => {
      const id = nextId()
      const err = await bounded('the status', unaryError(client, { mode: 'echo', id }, new grpc.Metadata(), { deadline: Date.now() + 300 }))
      t.equal(err.code, grpc.status.DEADLINE_EXCEEDED)
      t.match(err.details, /^Deadline exceeded/)
    })
  }
})
