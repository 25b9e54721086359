/**
 * The Echo handlers for connect-fastify, the same three as the grpc-js
 * ones (bench/servers/handlers.ts), for the HTTP/2 and the HTTP/1.1 servers.
 */
import type { ConnectRouter, HandlerContext } from '@connectrpc/connect'
import { echoService } from '../connect-service.js'

interface EchoMessage { message: string, payload: Uint8Array }

export function echoRoutes (router: ConnectRouter): void {
  router.service(echoService(), {
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
