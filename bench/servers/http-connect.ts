/**
 * connect-fastify over HTTP/1.1 (it serves gRPC-Web and Connect there too),
 * the same Echo as Connect handlers, for the HTTP rows of bench/run.ts and
 * for bench/browser.ts. Mounted at /grpc like the plugin's routes.
 */
import { fastifyConnectPlugin } from '@connectrpc/connect-fastify'
import Fastify from 'fastify'
import { allowBrowserOrigin } from './browser-origin.js'
import { echoRoutes } from './connect-handlers.js'
import { serve } from './harness.js'

serve(async () => {
  const app = Fastify({ logger: false })
  await allowBrowserOrigin(app)
  await app.register(async scope => {
    await scope.register(fastifyConnectPlugin, { routes: echoRoutes })
  }, { prefix: '/grpc' })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { port: (app.server.address() as { port: number }).port }
})
