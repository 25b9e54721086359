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

t.test('Should run the forward example: the gateway answers as the upstream does directly', async t => {
  const { startGateway, startUpstream } = await import('../examples/forward/gateway.js')
  const upstream = await startUpstream()
  t.teardown(upstream.stop)
  const gateway = await startGateway(upstream.target, 0)
  t.teardown(gateway.close)
  const clients = [http2Client(upstream.target), webSocketClient(gateway.wsUrl)]
  t.teardown(() => { for (const client of clients) client.close() })
  const direct = await talk(clients[0], 'direct')
  const forwarded = await talk(clients[1], 'forwarded')
  t.same(direct[0], 'unary: hello (from the upstream, via no proxy)')
  t.match(forwarded[0], /^unary: hello \(from the upstream, via 127\.0\.0\.1:\d+\)$/, 'x-forwarded-host names the gateway')
  t.same(forwarded.slice(1), direct.slice(1))
  t.same(direct.slice(1), [
    'server streaming: tick #1, tick #2, tick #3',
    'client streaming: one socket, many calls',
    'bidi: PING, PONG'
  ])
})
