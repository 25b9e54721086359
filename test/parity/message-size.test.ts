// A request over the server's receive limit fails with RESOURCE_EXHAUSTED
// naming its size, over both transports: grpc-js reads the size from the
// length prefix; the WebSocket server knows it once the message is whole
// (the same message as grpc-js) and, when it refuses one still arriving in
// pieces, says it is at least the bytes so far.
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { testDefinition, type Request } from '../helpers/test-service.js'
import { parity, startEnv, unaryError } from '../helpers/parity.js'

const limit = 64 * 1024
const maxFrameSize = 256 * 1024
const env = await startEnv(t, {
  plugin: { maxReceiveMessageSize: limit, maxFrameSize },
  server: { 'grpc.max_receive_message_length': limit }
})

const requestSize = (request: Request): number => testDefinition.Unary.requestSerialize(request).length

parity(t, env, 'a request over the limit that fits one frame names its true size', async (t, { client }) => {
  const request: Request = { mode: 'echo', payload: Buffer.alloc(100 * 1024, 1) }
  const size = requestSize(request)
  t.ok(size > limit && size < maxFrameSize - 10)
  const err = await unaryError(client, request)
  t.same([err.code, err.details], [grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${size} vs ${limit})`])
})

parity(t, env, 'a 5 MB request over a 64 KiB limit: its true size over HTTP/2, at least the bytes so far over WebSocket', async (t, { client, name }) => {
  const request: Request = { mode: 'echo', payload: Buffer.alloc(5 * 1024 * 1024, 1) }
  const size = requestSize(request)
  const err = await unaryError(client, request)
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
  // Refused at its first frame, a full one: the frame payload is maxFrameSize less the 10-byte header.
  t.equal(err.details, name === 'http2'
    ? `Received message larger than max (${size} vs ${limit})`
    : `Received message larger than max (at least ${maxFrameSize - 10} vs ${limit})`)
})
