/**
 * The forwarder: Fastify + fastify-grpc-ws with no handlers of its own,
 * forwarding echo.Echo (listed by its definition: no reflection) to the
 * upstream at UPSTREAM_TARGET, from the WebSocket route and from a grpc-js
 * Server bound on another port.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import fastifyGrpcWs from '../../index.js'
import { serve } from './harness.js'
import { loadEcho } from './load-proto.js'

serve(async () => {
  const target = process.env.UPSTREAM_TARGET
  if (target === undefined) throw new Error('UPSTREAM_TARGET is not set')
  const Echo = loadEcho()
  const grpcServer = new grpc.Server()
  const app = Fastify({ logger: false })
  await app.register(fastifyGrpcWs, { path: '/grpc', upstreams: [{ target, services: [Echo.service] }], grpcServer })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const grpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => { err === null ? resolve(port) : reject(err) })
  })
  const address = app.server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0, grpcPort, connections: () => app.grpc.connectionCount }
})
