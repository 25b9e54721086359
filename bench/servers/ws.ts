/**
 * The floor: @fastify/websocket with a bare binary echo on /echo (no
 * protobuf, no framing), and on /stream a pusher that, given one message,
 * sends copies of it as fast as the socket drains.
 */
import websocket from '@fastify/websocket'
import Fastify from 'fastify'
import { serve } from './harness.js'

const HIGH_WATER = 1024 * 1024

serve(async () => {
  const app = Fastify({ logger: false })
  await app.register(websocket)
  app.get('/echo', { websocket: true }, socket => {
    socket.on('message', (data, isBinary) => { socket.send(data, { binary: isBinary }) })
  })
  app.get('/stream', { websocket: true }, socket => {
    socket.once('message', (data: Buffer) => {
      const message = Buffer.from(data)
      let sent = 0
      const pump = (): void => {
        // A burst per turn of the event loop, so the process still reads its
        // sockets; past the high-water mark, wait until the last message is written out.
        for (let i = 0; i < 256 && socket.readyState === 1 && sent < 50_000_000; i++) {
          sent++
          if (socket.bufferedAmount > HIGH_WATER) { socket.send(message, () => { pump() }); return }
          socket.send(message)
        }
        if (socket.readyState === 1 && sent < 50_000_000) setImmediate(pump)
      }
      pump()
    })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0, connections: () => app.websocketServer.clients.size }
})
