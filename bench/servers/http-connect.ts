/**
 * connect-fastify over HTTP/1.1 (it serves gRPC-Web and Connect there too),
 * the same Echo as Connect handlers, for the HTTP rows of bench/run.ts. Mounted at /grpc
 * like the plugin's routes.
 */
import { fastifyConnectPlugin } from '@connectrpc/connect-fastify'
import type { ConnectRouter } from '@connectrpc/connect'
import Fastify from 'fastify'
import { echoService } from '../connect-service.js'
import { serve } from './harness.js'

interface EchoMessage { message: string, payload: Uint8Array }

serve(async () => {
  const app = Fastify({ logger: false })
  await app.register(async scope => {
    await scope.register(fastifyConnectPlugin, {
      routes (router: ConnectRouter) {
        router.service(echoService(), {
          async echo (request: EchoMessage) { return { message: request.message, payload: request.payload } }
        } as any)
      }
    })
  }, { prefix: '/grpc' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: (app.server.address() as { port: number }).port }
})
