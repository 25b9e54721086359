import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { GRPC_JS, collect, parity, startEnv, unary } from '../helpers/parity.js'
import type { CallInfo } from '../helpers/test-service.js'

const env = await startEnv(t, { connect: true })

function requestMetadata (): grpc.Metadata {
  const md = new grpc.Metadata()
  md.set('x-text', 'some value')
  md.add('x-repeated', 'first')
  md.add('x-repeated', 'second')
  md.add('x-data-bin', Buffer.from([0, 1, 2, 127, 128, 255]))
  md.add('x-data-bin', Buffer.from([]))
  md.set('x-empty', '')
  return md
}

parity(t, env, 'Should hand request metadata to the handler as grpc-js does', async (t, { client }) => {
  const { value } = await unary(client, { mode: 'info' }, requestMetadata())
  const info = JSON.parse(value.message) as CallInfo
  t.same(info.metadata['x-text'], ['some value'])
  // HTTP/2 joins repeated ASCII keys with ', '; the WebSocket transport does the same.
  t.same(info.metadata['x-repeated'], ['first, second'])
  t.same(info.metadata['x-data-bin'], [{ bin: '0001027f80ff' }, { bin: '' }], 'binary values stay separate Buffers')
  t.same(info.metadata['x-empty'], [''])
  t.match(info.metadata['user-agent']?.[0], /^grpc-node-js\/1\.14\./, 'the stock client user-agent')
  for (const key of ['grpc-timeout', 'content-type', 'te', 'grpc-accept-encoding', 'grpc-encoding', 'accept-encoding']) {
    t.notOk(key in info.metadata, `transport key ${key} is not shown to the handler`)
  }
}, GRPC_JS) // The user-agent is grpc-js's.

parity(t, env, 'Should replace a user-agent set by the caller, as grpc-js does', async (t, { client }) => {
  const md = new grpc.Metadata()
  md.set('user-agent', 'my-agent')
  const { value } = await unary(client, { mode: 'info' }, md)
  const info = JSON.parse(value.message) as CallInfo
  t.equal(info.metadata['user-agent']?.length, 1)
  t.match(info.metadata['user-agent']?.[0], /^grpc-node-js\//)
}, GRPC_JS)

parity(t, env, 'Should give the handler the call surface grpc-js gives it', async (t, { client, name }) => {
  const { value } = await unary(client, { mode: 'info' }, new grpc.Metadata(), { deadline: Date.now() + 60_000 })
  const info = JSON.parse(value.message) as CallInfo
  t.equal(info.path, '/test.Test/Unary')
  t.match(info.peer, /^127\.0\.0\.1:\d+$/)
  t.equal(info.host, env.handlerHost(name), 'getHost() is the authority the client connected to')
  t.type(info.deadline, 'number')
  t.ok((info.deadline as number) > Date.now() + 50_000 && (info.deadline as number) <= Date.now() + 60_000, 'getDeadline() is the client deadline')
  t.same(info.authContext, {}, 'getAuthContext() is empty on plaintext')
  t.equal(info.hasMetricsRecorder, true)
  t.equal(info.cancelledAtStart, false)
  t.equal(info.constructorName, 'ServerWritableStreamImpl', 'the very class grpc-js uses for unary calls')
  const { value: noDeadline } = await unary(client, { mode: 'info' })
  t.equal((JSON.parse(noDeadline.message) as CallInfo).deadline, 'Infinity')
})

parity(t, env, 'Should send response headers before the first message', async (t, { client, name }) => {
  const result = await collect(client.ServerStream({ mode: 'headers-first', delayMs: 20 }))
  t.same(result.order, ['metadata', 'data', 'status'])
  const headers = result.headers!
  t.same(headers.get('x-header-text'), ['value one'])
  // The browser client keeps repeated values apart, as they travel; HTTP/2 and Connect's Headers join them
  // (forwarded, the HTTP/2 hop to the upstream has joined them already).
  t.same(headers.get('x-header-repeated'), name === 'web' && env.upstream === undefined ? ['a', 'b'] : ['a, b'])
  t.same(headers.get('x-header-bin').map(b => [...(b as Buffer)]), [[0, 1, 2, 254, 255], [...Buffer.from('second')]])
}, { grpcWeb: true })

parity(t, env, 'Should deliver response headers on a unary call', async (t, { client }) => {
  const { headers, value } = await unary(client, { mode: 'headers', delayMs: 5 })
  t.equal(value.message, 'after headers')
  t.same(headers?.get('x-header-text'), ['value one'])
}, { grpcWeb: true })

parity(t, env, 'Should deliver trailers with the status', async (t, { client }) => {
  const { status, value } = await unary(client, { mode: 'trailers' })
  t.equal(value.message, 'with trailers')
  t.same(status.metadata.get('x-trailer'), ['trailer value'])
  t.same([...(status.metadata.get('x-trailer-bin')[0] as Buffer)], [1, 2, 3])
}, { grpcWeb: true })

parity(t, env, 'Should emit no metadata event for a trailers-only error', async (t, { client }) => {
  const result = await collect(client.ServerStream({ mode: 'nonsense' }))
  t.same(result.order, ['error', 'status'])
  t.equal(result.status.code, grpc.status.INVALID_ARGUMENT)
}, GRPC_JS) // The browser client's headers and Connect's onHeader come for every stream, empty when there were none.
