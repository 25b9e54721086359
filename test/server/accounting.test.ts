/**
 * What a peer's frames can make the other side hold or compute: empty
 * pieces, pieces of one byte, windows of tiny messages, metadata repeating
 * one key. Memory figures under load are
 * measured in a separate process by test/reliability/attacks.test.ts; these
 * tests check the rules and the bookkeeping.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { FrameFlags, FrameType } from '../../lib/protocol/frame.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { NO_TIMEOUT, buildCall, buildEmpty, buildHeaders, buildTrailers, parseTrailers } from '../../lib/protocol/payload.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startRawServer } from '../helpers/raw-server.js'
import { testDefinition, type Response } from '../helpers/test-service.js'
import { webClient } from '../helpers/web-client.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { TestClient } from '../helpers/test-service.js'

const { app, url } = await startPluginApp({ initialWindowSize: 64 * 1024 })
t.teardown(async () => { await app.close() })

const request = (fields: object): Uint8Array => testDefinition.Unary!.requestSerialize(fields)
const call = (id: number, path = '/test.Test/Unary', metadata: Array<[string, string]> = []): Uint8Array =>
  buildCall(id, { path, timeoutMs: NO_TIMEOUT, initialWindowSize: 1 << 20, metadata })

t.test('Should close the connection 1002 on an empty MESSAGE frame with MORE', async t => {
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  peer.send(call(1, '/test.Test/ClientStream'), buildMessageFrame(1, FrameFlags.MORE, new Uint8Array(0)))
  t.equal(await peer.closed(), 1002)
  t.equal(peer.closeReason, 'empty MESSAGE frame with MORE')
})

t.test('Should assemble a message sent as one-byte MORE pieces', async t => {
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  const bytes = request({ mode: 'echo', message: 'x'.repeat(30000) })
  const frames = [call(1)]
  for (let i = 0; i < bytes.byteLength - 1; i++) frames.push(buildMessageFrame(1, FrameFlags.MORE, bytes.subarray(i, i + 1)))
  frames.push(buildMessageFrame(1, 0, bytes.subarray(bytes.byteLength - 1)), buildEmpty(FrameType.HALF_CLOSE, 1))
  for (let at = 0; at < frames.length; at += 5000) peer.send(...frames.slice(at, at + 5000))
  t.ok(await peer.until(fs => fs.some(f => f.type === FrameType.TRAILERS)))
  const message = peer.frames.filter(f => f.type === FrameType.MESSAGE).map(f => Buffer.from(f.payload))
  const response = testDefinition.Unary!.responseDeserialize(Buffer.concat(message)) as Response
  t.equal(response.message.length, 30000, 'the whole message arrived in order')
  t.equal(parseTrailers(peer.frames.find(f => f.type === FrameType.TRAILERS)!.payload).code, 0)
})

t.test('Should handle metadata repeating one key in linear work', async t => {
  // grpc-js validates every value it is given: sum what it is given.
  let validated = 0
  const proto = grpc.Metadata.prototype as unknown as { set: (k: string, v: unknown) => void }
  const set = proto.set
  proto.set = function (this: unknown, key: string, value: unknown) {
    validated += typeof value === 'string' ? value.length : 0
    set.call(this, key, value)
  }
  t.teardown(() => { proto.set = set })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  // Nearly 16 KiB of metadata (the limit): 1,800 entries of one key, 8 bytes each.
  const entries: Array<[string, string]> = Array.from({ length: 1800 }, () => ['x', 'v'])
  peer.send(call(1, '/test.Test/Unary', entries), buildMessageFrame(1, 0, request({ mode: 'info' })), buildEmpty(FrameType.HALF_CLOSE, 1))
  t.ok(await peer.until(fs => fs.some(f => f.type === FrameType.TRAILERS)))
  t.equal(parseTrailers(peer.frames.find(f => f.type === FrameType.TRAILERS)!.payload).code, 0)
  const joined = 1800 * 3 - 2
  // Once per entry and once for the joined value; the quadratic way is 1800² × 3 / 2.
  t.ok(validated <= 2 * joined + 1000, `grpc-js validated ${validated} characters for ${joined} of joined value`)
})

t.test('Clients close 1002 on an empty MESSAGE frame with MORE from the server, and their calls fail INTERNAL', async t => {
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { client, test } = webClient(server.url)
  t.teardown(() => { client.close() })
  const channel = createWebSocketChannel(server.url)
  const grpcClient = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: channel })
  t.teardown(() => { grpcClient.close() })
  const webCall = test.unary({ mode: 'echo' }).then(() => null, (err: { code: number, details: string }) => err)
  const grpcCall = new Promise<grpc.ServiceError | null>(resolve => { grpcClient.Unary({ mode: 'echo' }, (err: grpc.ServiceError | null) => { resolve(err) }) })
  await server.until(() => server.connections.length === 2 && server.connections.every(c => c.frames.some(f => f.type === FrameType.CALL)))
  for (const conn of server.connections) {
    conn.send(buildHeaders(1, []), buildMessageFrame(1, FrameFlags.MORE, new Uint8Array(0)), buildTrailers(1, { code: 0, details: '', metadata: [] }))
  }
  const [webErr, grpcErr] = await Promise.all([webCall, grpcCall])
  t.equal(webErr?.code, grpc.status.INTERNAL)
  t.equal(webErr?.details, 'Protocol error from the server: empty MESSAGE frame with MORE')
  t.equal(grpcErr?.code, grpc.status.INTERNAL)
  t.equal(grpcErr?.details, 'Protocol error from the server: empty MESSAGE frame with MORE')
  await server.until(() => server.connections.every(c => c.closeCode !== null))
  t.same(server.connections.map(c => c.closeCode), [1002, 1002])
})
