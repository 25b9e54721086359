/**
 * Authentication for both transports, written once where it can be.
 *
 * - WebSocket upgrades, and the plugin's HTTP calls (the browser client's
 *   fallback, gRPC-Web and Connect clients: POST /grpc/<Service>/<Method>),
 *   are checked by a Fastify onRequest hook. Browsers cannot set headers on
 *   a WebSocket, so the token comes as a cookie, a `token` query parameter,
 *   a `bearer.<token>` subprotocol value offered beside `grpc-ws.v1`, or
 *   (HTTP calls) an `authorization` header. A refused request gets a real
 *   HTTP 401 or 403.
 * - Every call, on either transport, goes through one grpc-js server
 *   interceptor, given to the plugin and to the grpc-js Server alike: over
 *   HTTP/2 it reads the `authorization` metadata; over WebSocket the user the
 *   upgrade authenticated (reached with fastifyRequestOf).
 */
import * as grpc from '@grpc/grpc-js'
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify'
import fastifyGrpcWs, { fastifyRequestOf } from 'fastify-grpc-ws'
import { EchoClient } from '../echo/server.js'

const users = new Map([['secret-token', 'ada'], ['other-token', 'grace']])

declare module 'fastify' {
  interface FastifyRequest { user?: string }
}

function tokenOf (request: FastifyRequest): string | undefined {
  const cookie = /(?:^|;\s*)session=([^;]+)/.exec(request.headers.cookie ?? '')?.[1]
  const query = (request.query as Record<string, string | undefined>).token
  const protocol = (request.headers['sec-websocket-protocol'] ?? '').split(',').map(p => p.trim()).find(p => p.startsWith('bearer.'))
  const header = request.headers.authorization?.replace(/^Bearer /, '')
  return cookie ?? query ?? protocol?.slice('bearer.'.length) ?? header
}

/** The user a call is made by: from the upgrade, or from its metadata. */
export function userOf (call: { metadata: grpc.Metadata }): string | undefined {
  const viaUpgrade = fastifyRequestOf(call)?.user
  if (viaUpgrade !== undefined) return viaUpgrade
  const header = call.metadata.get('authorization')[0]
  return typeof header === 'string' ? users.get(header.replace(/^Bearer /, '')) : undefined
}

const requireUser: grpc.ServerInterceptor = (_method, call) => new grpc.ServerInterceptingCall(call, {
  start (next) {
    next({
      onReceiveMetadata (metadata, nextMetadata) {
        if (userOf({ metadata }) === undefined) {
          call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'sign in first' })
          return
        }
        nextMetadata(metadata)
      }
    })
  }
})

const echo = {
  Echo (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) {
    callback(null, { message: `${call.request.message as string}, ${userOf(call) ?? 'nobody'}` })
  }
}

export async function startAuthServer (): Promise<{ wsUrl: string, grpcAddress: string, close: () => Promise<void> }> {
  const grpcServer = new grpc.Server({ interceptors: [requireUser] })
  const app = Fastify()
  await app.register(fastifyGrpcWs, {
    services: [{ definition: EchoClient.service, implementation: echo }],
    grpcServer,
    interceptors: [requireUser]
  })
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // Added after the plugin, so @fastify/websocket's own onRequest hook has
    // run: request.ws is set, and a refused upgrade's socket gets closed.
    // HTTP calls too, or a client on the HTTP fallback would skip this hook.
    if (!request.ws && !request.url.startsWith('/grpc/')) return
    const token = tokenOf(request)
    if (token === undefined) return await reply.code(401).header('www-authenticate', 'Bearer').send({ error: 'Unauthorized', message: 'no token' })
    const user = users.get(token)
    if (user === undefined) return await reply.code(403).send({ error: 'Forbidden', message: 'unknown token' })
    request.user = user
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  return {
    wsUrl: `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`,
    grpcAddress: `127.0.0.1:${port}`,
    async close () {
      await app.close()
      grpcServer.forceShutdown()
    }
  }
}
