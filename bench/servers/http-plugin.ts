/**
 * The plugin's HTTP routes (gRPC-Web and Connect) over HTTP/1.1: Fastify +
 * fastify-grpc-ws with the grpc-js Echo handlers, for bench/http.ts.
 */
import Fastify from 'fastify'
import fastifyGrpcWs from '../../index.js'
import { echoHandlers } from './handlers.js'
import { serve } from './harness.js'
import { loadEcho } from './load-proto.js'

serve(async () => {
  const app = Fastify({ logger: false })
  await app.register(fastifyGrpcWs, { path: '/grpc', services: [{ definition: loadEcho().service, implementation: echoHandlers }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: (app.server.address() as { port: number }).port }
})
