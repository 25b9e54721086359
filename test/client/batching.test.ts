// How the two clients batch the frames of calls issued in one turn: in
// WebSocket messages of 32 frames (PROTOCOL.md §2), the rest at the end of
// the turn, so that the server starts on the first calls of a burst.
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { FrameDecoder, FrameType } from '../../lib/protocol/frame.js'
import { startRawServer } from '../helpers/raw-server.js'
import { TestClient } from '../helpers/test-service.js'
import { webClient } from '../helpers/web-client.js'

const CALLS = 40 // CALL, MESSAGE and HALF_CLOSE each: 120 frames

const clients: Array<[string, number[], (url: string) => { unary: () => void, close: () => void }]> = [
  ['the browser client', [32, 32, 32, 24], url => {
    const { client, test } = webClient(url)
    return { unary: () => { test.unary({ message: 'x' }).catch(() => {}) }, close: () => { client.close() } }
  }],
  ['the grpc-js channel', [32, 32, 32, 24], url => {
    const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) }) as any
    return { unary: () => { client.unary({ message: 'x' }, () => {}) }, close: () => { client.close() } }
  }]
]

for (const [name, expected, make] of clients) {
  t.test(`${name} sends ${CALLS} unary calls made in one turn in WebSocket messages of ${expected.join(', ')} frames`, async t => {
    const messages: number[] = [] // frames per WebSocket message, after the first call's
    const server = await startRawServer({}, {
      onConnection: conn => {
        const decoder = new FrameDecoder(0x7fffffff)
        conn.socket.on('message', (data: Buffer) => { messages.push(decoder.push(data).length) })
      }
    })
    t.teardown(async () => { await server.close() })
    const client = make(server.url)
    t.teardown(() => { client.close() })
    // A first call, so that the connection is ready when the burst is made.
    client.unary()
    const calls = (): number => server.connections[0]?.frames.filter(f => f.type === FrameType.CALL).length ?? 0
    await server.until(() => calls() === 1 && server.connections[0]!.frames.some(f => f.type === FrameType.HALF_CLOSE))
    messages.length = 0
    for (let i = 0; i < CALLS; i++) client.unary()
    await server.until(() => messages.reduce((a, b) => a + b, 0) === 3 * CALLS)
    t.same(messages, expected)
    t.equal(calls(), 1 + CALLS)
  })
}
