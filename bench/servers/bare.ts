/**
 * The start-up reference for the plugin: Fastify + @fastify/websocket (one
 * WebSocket route) and a grpc-js Server with the proto loaded by
 * proto-loader, both listening. What an app would run without the plugin.
 */
import websocket from '@fastify/websocket'
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { echoHandlers } from './handlers.js'
import { serve } from './harness.js'
import { loadEcho } from './load-proto.js'

serve(async () => {
  const Echo = loadEcho()
  const grpcServer = new grpc.Server()
  grpcServer.addService(Echo.service, echoHandlers)
  const app = Fastify({ logger: false })
  await app.register(websocket)
  app.get('/echo', { websocket: true }, socket => {
    socket.on('message', (data, isBinary) => { socket.send(data, { binary: isBinary }) })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const grpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => { err === null ? resolve(port) : reject(err) })
  })
  const address = app.server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0, grpcPort }
})
