import t from 'tap'
import { http2Client, talk, webSocketClient } from '../examples/echo/client.js'
import { startServer } from '../examples/echo/server.js'

t.test('Should run the echo example over both transports with the same answers', async t => {
  const server = await startServer(0, 0)
  t.teardown(server.close)
  const clients = [http2Client(server.grpcAddress), webSocketClient(server.wsUrl)]
  t.teardown(() => { for (const client of clients) client.close() })
  const http2 = await talk(clients[0], 'http2')
  const websocket = await talk(clients[1], 'websocket')
  const withoutPeer = (lines: string[]): string[] => lines.map(line => line.replace(/\(from [^)]+\)/, '(from peer)'))
  t.same(withoutPeer(websocket), withoutPeer(http2))
  t.same(withoutPeer(http2), [
    'unary: hello (from peer)',
    'server streaming: tick #1, tick #2, tick #3',
    'client streaming: one socket, many calls',
    'bidi: PING, PONG'
  ])
})
