import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { clientStream, collect, parity, startEnv, unary } from '../helpers/parity.js'

const env = await startEnv(t, { connect: true })

parity(t, env, 'Should answer a unary call', async (t, { client, name }) => {
  const { value, status } = await unary(client, { mode: 'echo', message: 'hello', payload: Buffer.from([1, 2, 3]) })
  t.equal(value.message, 'hello')
  t.same([...value.payload], [1, 2, 3])
  t.equal(status.code, grpc.status.OK)
  // The browser client and Connect report no status message on success.
  t.equal(status.details, name === 'connect' || name === 'web' ? '' : 'OK')
}, { grpcWeb: true })

parity(t, env, 'Should stream responses from the server', async (t, { client }) => {
  const result = await collect(client.ServerStream({ mode: 'count', count: 5, size: 3 }))
  t.same(result.messages.map(m => m.message), ['0', '1', '2', '3', '4'])
  t.same([...result.messages[4]!.payload], [4, 4, 4])
  t.equal(result.status.code, grpc.status.OK)
  t.equal(result.error, null)
}, { grpcWeb: true })

parity(t, env, 'Should take a stream of requests from the client', async (t, { client }) => {
  const value = await clientStream(client, [{ message: 'a', payload: Buffer.alloc(10) }, { message: 'b' }, { message: 'c', payload: Buffer.alloc(5) }])
  t.equal(value.message, 'a,b,c')
  t.equal(value.payload.toString(), '15')
})

parity(t, env, 'Should stream both ways on a bidi call', async (t, { client }) => {
  const call = client.Bidi()
  const replies: string[] = []
  call.on('data', (m: { message: string }) => {
    replies.push(m.message)
    if (replies.length === 1) call.write({ message: 'second' })
    if (replies.length === 2) call.end()
  })
  call.write({ message: 'first' })
  const result = await collect(call)
  t.same(replies, ['FIRST', 'SECOND'])
  t.equal(result.status.code, grpc.status.OK)
})

parity(t, env, 'Should carry empty requests and responses', async (t, { client }) => {
  const { value } = await unary(client, { mode: 'echo' })
  t.equal(value.message, '')
  t.equal(value.payload.length, 0)
  const stream = await collect(client.ServerStream({ mode: 'count', count: 3 }))
  t.same(stream.messages.map(m => m.payload.length), [0, 0, 0])
  const summed = await clientStream(client, [{}, {}, {}])
  t.equal(summed.message, ',,')
  t.equal(summed.payload.toString(), '0')
})

parity(t, env, 'Should carry a 4 MiB message each way', async (t, { client }) => {
  // grpc-js's default receive limit is 4 MiB for the whole message: leave
  // room for the protobuf field tag and length.
  const size = 4 * 1024 * 1024 - 16
  const payload = Buffer.alloc(size)
  for (let i = 0; i < size; i += 4096) payload[i] = i & 0xff
  const { value } = await unary(client, { mode: 'echo', payload })
  t.equal(value.payload.length, size)
  t.ok(value.payload.equals(payload), 'the bytes come back unchanged')
  const big = await unary(client, { mode: 'size', size })
  t.equal(big.value.payload.length, size)
}, { grpcWeb: true })

parity(t, env, 'Should deliver the trailers a server stream passes to end()', async (t, { client }) => {
  const call = client.ServerStream({ mode: 'end-trailers' })
  const result = await collect(call)
  t.same(result.messages.map(m => m.message), ['one'])
  t.equal(result.status.code, grpc.status.OK)
  t.equal(result.status.metadata.get('x-trailer')[0], 'stream trailer')
}, { grpcWeb: true })
