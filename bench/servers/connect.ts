/**
 * Connect-node on Fastify over HTTP/2 (h2c): @connectrpc/connect-fastify
 * with runtime descriptors, the same three handlers.
 */
import { fastifyConnectPlugin } from '@connectrpc/connect-fastify'
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect'
import Fastify from 'fastify'
import { echoService } from '../connect-service.js'
import { serve } from './harness.js'

interface EchoMessage { message: string, payload: Uint8Array }

serve(async () => {
  const service = echoService()
  const app = Fastify({ http2: true, logger: false })
  await app.register(fastifyConnectPlugin, {
    routes (router: ConnectRouter) {
      router.service(service, {
        async echo (request: EchoMessage) { return { message: request.message, payload: request.payload } },
        async * serverStream (request: EchoMessage, context: HandlerContext) {
          const n = Math.min(Number(request.message) || 0, 50_000_000)
          for (let i = 0; i < n && !context.signal.aborted; i++) yield { payload: request.payload }
        },
        async * bidi (requests: AsyncIterable<EchoMessage>) {
          for await (const request of requests) yield { message: request.message, payload: request.payload }
        }
      } as any)
    }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0 }
})
