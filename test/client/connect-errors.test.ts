// How the Connect transport fails: error details from grpc-status-details-bin,
// responses that do not parse, and request streams that throw. A raw
// grpc-ws.v1 server plays the server where the plugin never misbehaves.
import { Code, ConnectError } from '@connectrpc/connect'
import t from 'tap'
import { FrameType } from '../../lib/protocol/frame.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { buildHeaders, buildTrailers } from '../../lib/protocol/payload.js'
import { connectClient } from '../helpers/connect-client.js'
import { handlerEvent, nextId, startEnv } from '../helpers/parity.js'
import { startRawServer } from '../helpers/raw-server.js'

async function rejection (body: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await body()
  } catch (err) {
    if (err instanceof ConnectError) return err
    throw err
  }
  throw new Error('expected a failure, got a result')
}

const bytes = (s: string): number[] => [...new TextEncoder().encode(s)]
const field = (tag: number, body: number[]): number[] => [tag, body.length, ...body]

t.test('Should give the details of a grpc-status-details-bin trailer, and the raw bytes in metadata', async t => {
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { transport, test } = connectClient(server.url)
  t.teardown(() => { transport.client.close() })
  // google.rpc.Status { code: 5, message: 'gone', details: [Any { type_url, value }] }
  const any = [...field(0x0a, bytes('type.googleapis.com/test.Response')), ...field(0x12, [0x0a, 0x02, 0x68, 0x69])]
  const status = new Uint8Array([0x08, 5, ...field(0x12, bytes('gone')), ...field(0x1a, any)])
  const call = rejection(() => test.unary({ mode: 'echo' }))
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.CALL) === true)
  server.connections[0]!.send(buildTrailers(1, { code: 5, details: 'gone', metadata: [['grpc-status-details-bin', status]] }))
  const err = await call
  t.equal(err.code, Code.NotFound)
  t.equal(err.rawMessage, 'gone')
  t.same(err.details.map(d => 'type' in d ? [d.type, [...d.value]] : null), [['test.Response', [0x0a, 0x02, 0x68, 0x69]]])
  t.ok(err.metadata.has('grpc-status-details-bin'), 'the bytes stay in the metadata, base64')
})

t.test('Should fail with internal when a response does not parse, and cancel the stream', async t => {
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { transport, test } = connectClient(server.url)
  t.teardown(() => { transport.client.close() })
  // Field 1 (a string) announcing 16 bytes that never come.
  const truncated = new Uint8Array([0x0a, 0x10, 0x41])
  const unary = rejection(() => test.unary({ mode: 'echo' }))
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.CALL) === true)
  const conn = server.connections[0]!
  conn.send(buildHeaders(1, []), buildMessageFrame(1, 0, truncated), buildTrailers(1, { code: 0, details: '', metadata: [] }))
  const err = await unary
  t.equal(err.code, Code.Internal)
  t.match(err.rawMessage, /failed to parse the response/)

  const stream = rejection(async () => { for await (const _ of test.serverStream({ mode: 'count' })); })
  await server.until(() => conn.frames.filter(f => f.type === FrameType.CALL).length === 2)
  const id = conn.frames.filter(f => f.type === FrameType.CALL)[1]!.streamId
  conn.send(buildHeaders(id, []), buildMessageFrame(id, 0, truncated))
  const streamErr = await stream
  t.equal(streamErr.code, Code.Internal)
  await server.until(() => conn.frames.some(f => f.type === FrameType.CANCEL && f.streamId === id))
  t.pass('the server was told to stop')
})

t.test('Should fail a call whose request stream throws, and cancel the handler', async t => {
  const env = await startEnv(t)
  const { transport, test } = connectClient(env.wsUrl)
  t.teardown(() => { transport.client.close() })
  const id = nextId()
  const cancelled = handlerEvent(env.events, id)
  async function * requests (): AsyncGenerator<{ id: string, message: string }> {
    yield { id, message: 'first' }
    await new Promise(resolve => setTimeout(resolve, 20))
    throw new Error('the page ran out of requests')
  }
  const err = await rejection(async () => { for await (const _ of test.bidi(requests())); })
  t.match(err.rawMessage, /the page ran out of requests/)
  t.equal((await cancelled).event, 'cancelled')
})
