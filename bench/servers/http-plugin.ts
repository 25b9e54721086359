/**
 * The plugin over HTTP/1.1: Fastify + fastify-grpc-ws with the grpc-js Echo
 * handlers at /grpc, its WebSocket route and its HTTP routes (gRPC-Web and
 * Connect), for bench/http.ts and bench/browser.ts.
 */
import Fastify from 'fastify'
import fastifyGrpcWs from '../../index.js'
import { BROWSER_ORIGIN, allowBrowserOrigin } from './browser-origin.js'
import { echoHandlers } from './handlers.js'
import { serve } from './harness.js'
import { loadEcho } from './load-proto.js'

serve(async () => {
  const app = Fastify({ logger: false })
  await allowBrowserOrigin(app)
  await app.register(fastifyGrpcWs, {
    path: '/grpc',
    services: [{ definition: loadEcho().service, implementation: echoHandlers }],
    ...(BROWSER_ORIGIN === undefined ? {} : { allowedOrigins: [BROWSER_ORIGIN] })
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: (app.server.address() as { port: number }).port, connections: () => app.grpc.connectionCount }
})
