import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { GRPC_JS, collect, parity, startEnv, unaryError } from '../helpers/parity.js'

const env = await startEnv(t, { connect: true })

parity(t, env, 'Should carry every status code 1..16 with its details and metadata', async (t, { client }) => {
  for (let code = 1; code <= 16; code++) {
    const err = await unaryError(client, { mode: 'status', code, details: `details for ${code}` })
    t.equal(err.code, code)
    t.equal(err.details, `details for ${code}`)
    t.same(err.metadata.get('x-error-text'), ['error value'])
    t.same([...(err.metadata.get('x-error-bin')[0] as Buffer)], [9, 8, 7])
  }
}, { grpcWeb: true })

parity(t, env, 'Should report status 0 sent as an error the way grpc-js does', async (t, { client }) => {
  // grpc-js sends OK without a message; its client turns that into UNIMPLEMENTED.
  const err = await unaryError(client, { mode: 'status', code: 0, details: 'zero' })
  t.equal(err.code, grpc.status.UNIMPLEMENTED)
  t.match(err.details, /No message received/)
}, { grpcWeb: true })

parity(t, env, 'Should carry status details with whitespace and non-ASCII text unchanged', async (t, { client }) => {
  const details = '\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n%41 100%'
  const err = await unaryError(client, { mode: 'status', code: grpc.status.INTERNAL, details })
  t.equal(err.code, grpc.status.INTERNAL)
  t.equal(err.details, details)
}, { grpcWeb: true })

parity(t, env, 'Should turn an Error passed to the callback into UNKNOWN with its message', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'error-object', details: 'plain error' })
  t.equal(err.code, grpc.status.UNKNOWN)
  t.equal(err.details, 'plain error')
}, { grpcWeb: true })

parity(t, env, 'Should turn a handler that throws into UNKNOWN', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'throw' })
  t.equal(err.code, grpc.status.UNKNOWN)
  // grpc-js hides the exception unless GRPC_NODE_DEBUG_SEND_ERROR_DETAILS=true.
  t.equal(err.details, 'Unknown error')
}, { grpcWeb: true })

parity(t, env, 'Should end a stream with the status emitted as an error, after the messages', async (t, { client }) => {
  const result = await collect(client.ServerStream({ mode: 'status-after-write', code: grpc.status.ABORTED, details: 'stopped' }))
  t.equal(result.status.code, grpc.status.ABORTED)
  t.equal(result.status.details, 'stopped')
  t.equal(result.error?.code, grpc.status.ABORTED)
  t.same(result.status.metadata.get('x-error-text'), ['error value'])
}, { grpcWeb: true })

parity(t, env, 'Should answer UNIMPLEMENTED for a method left out of the implementation', async (t, { client }) => {
  const err = await new Promise<grpc.ServiceError>(resolve => client.Missing({}, (e: grpc.ServiceError) => { resolve(e) }))
  t.equal(err.code, grpc.status.UNIMPLEMENTED)
  t.equal(err.details, 'The server does not implement the method Missing')
}, { grpcWeb: true })

parity(t, env, 'Should answer UNIMPLEMENTED for an unknown service', async (t, { client }) => {
  const err = await new Promise<grpc.ServiceError>(resolve => {
    client.makeUnaryRequest('/nope.Nope/Call', (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (e: grpc.ServiceError) => { resolve(e) })
  })
  t.equal(err.code, grpc.status.UNIMPLEMENTED)
  t.equal(err.details, 'The server does not implement the method /nope.Nope/Call')
}, { ways: [...GRPC_JS, 'grpc-web'], grpcWeb: true }) // The typed clients (browser, Connect) only call the methods of their service.

parity(t, env, 'Should end a bidi call with a status emitted mid-stream', async (t, { client }) => {
  const call = client.Bidi()
  call.write({ message: 'one' })
  call.write({ mode: 'status', code: grpc.status.OUT_OF_RANGE, details: 'too far' })
  const result = await collect(call)
  t.same(result.messages.map(m => m.message), ['ONE'])
  t.equal(result.status.code, grpc.status.OUT_OF_RANGE)
  t.equal(result.status.details, 'too far')
})
