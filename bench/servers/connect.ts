/**
 * Connect-node on Fastify over HTTP/2 (h2c): @connectrpc/connect-fastify
 * with runtime descriptors, the same three handlers.
 */
import { fastifyConnectPlugin } from '@connectrpc/connect-fastify'
import Fastify from 'fastify'
import { echoRoutes } from './connect-handlers.js'
import { serve } from './harness.js'

serve(async () => {
  const app = Fastify({ http2: true, logger: false })
  await app.register(fastifyConnectPlugin, { routes: echoRoutes })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return { port: typeof address === 'object' && address !== null ? address.port : 0 }
})
