import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { collect, handlerEvent, nextId, parity, startEnv, unary, unaryError } from '../helpers/parity.js'

const env = await startEnv(t, { connect: true })

parity(t, env, 'Should end a sleeping handler at its deadline, with cancelled on the server', async (t, { client, events }) => {
  const id = nextId()
  const cancelled = handlerEvent(events, id)
  const started = Date.now()
  const err = await unaryError(client, { mode: 'never', id }, new grpc.Metadata(), { deadline: Date.now() + 150 })
  t.equal(err.code, grpc.status.DEADLINE_EXCEEDED)
  t.ok(Date.now() - started >= 140, 'not before the deadline')
  const event = await cancelled
  t.equal(event.event, 'cancelled')
  t.equal(event.cancelled, true, 'call.cancelled is true in the handler')
}, { grpcWeb: true })

parity(t, env, 'Should fail at once when the deadline has already passed', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'echo' }, new grpc.Metadata(), { deadline: Date.now() - 1 })
  t.equal(err.code, grpc.status.DEADLINE_EXCEEDED)
}, { ways: ['http2', 'websocket', 'web', 'grpc-web'], grpcWeb: true }) // Connect reads timeoutMs <= 0 as no deadline: it cannot ask for one already past.

parity(t, env, 'Should finish a call that answers before its deadline', async (t, { client }) => {
  const { value } = await unary(client, { mode: 'delay', delayMs: 20, message: 'in time' }, new grpc.Metadata(), { deadline: Date.now() + 5000 })
  t.equal(value.message, 'in time')
}, { grpcWeb: true })

parity(t, env, 'Should end a server stream at its deadline', async (t, { client, events }) => {
  const id = nextId()
  const cancelled = handlerEvent(events, id)
  const result = await collect(client.ServerStream({ mode: 'endless', id }, { deadline: Date.now() + 100 }))
  t.equal(result.status.code, grpc.status.DEADLINE_EXCEEDED)
  t.ok(result.messages.length > 0, 'messages arrived before the deadline')
  t.equal((await cancelled).event, 'cancelled')
}, { grpcWeb: true })

parity(t, env, 'Should carry a client cancel mid-stream to the handler', async (t, { client, events, name }) => {
  const id = nextId()
  const cancelled = handlerEvent(events, id)
  const call = client.ServerStream({ mode: 'endless', id })
  call.once('data', () => { call.cancel() })
  const result = await collect(call)
  t.equal(result.status.code, grpc.status.CANCELLED)
  // Connect's message is the one of the AbortSignal's reason.
  t.equal(result.status.details, name === 'connect' ? 'This operation was aborted' : 'Cancelled on client')
  const event = await cancelled
  t.equal(event.event, 'cancelled')
  t.equal(event.cancelled, true)
}, { grpcWeb: true })

parity(t, env, 'Should carry a client cancel of a bidi call to the handler', async (t, { client, events }) => {
  const id = nextId()
  const cancelled = handlerEvent(events, id)
  const call = client.Bidi()
  call.write({ message: 'hello', id })
  call.once('data', () => { call.cancel() })
  const result = await collect(call)
  t.equal(result.status.code, grpc.status.CANCELLED)
  t.equal((await cancelled).event, 'cancelled')
})

parity(t, env, 'Should emit cancelled after a call that ended normally, as grpc-js does', async (t, { client, events }) => {
  const id = nextId()
  const cancelled = handlerEvent(events, id)
  const { value } = await unary(client, { mode: 'echo', message: 'done', id })
  t.equal(value.message, 'done')
  t.equal((await cancelled).event, 'cancelled')
}, { grpcWeb: true })

parity(t, env, 'Should cancel a client-streaming call whose handler never answers', async (t, { client, events }) => {
  const id = nextId()
  const cancelled = handlerEvent(events, id)
  const err = await new Promise<grpc.ServiceError>(resolve => {
    const call = client.ClientStream({ deadline: Date.now() + 100 }, (e: grpc.ServiceError) => { resolve(e) })
    call.write({ mode: 'never', id })
    call.end()
  })
  t.equal(err.code, grpc.status.DEADLINE_EXCEEDED)
  t.equal((await cancelled).event, 'cancelled')
})
