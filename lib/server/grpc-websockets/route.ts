/**
 * The `grpc-websockets` compatibility route: serves the WebSocket transports
 * of @improbable-eng/grpc-web and nice-grpc-web, unchanged, one call per
 * socket at `<grpcWebSocketsPrefix>/<package.Service>/<Method>`, with the
 * same handlers, interceptors, limits and origin policy as the grpc-ws.v1
 * route.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { IncomingMessage } from 'node:http'
import type { ResolvedOptions } from '../../options.js'
import { CloseCode, SUBPROTOCOL } from '../../protocol/frame.js'
import type { Dispatcher } from '../dispatch.js'
import type { ManagedConnection } from '../grpc-ws-server.js'
import { upgradeGuard } from '../upgrade.js'
import { GrpcWebSocketsSession } from './session.js'

/** The subprotocol both clients offer, alone. */
export const GRPC_WEBSOCKETS = 'grpc-websockets'

// Upgrade requests routed to the grpc-websockets route (marked by its
// onRequest hook, which runs before the upgrade).
const routed = new WeakSet<IncomingMessage>()

/**
 * The `handleProtocols` of the plugin's WebSocket server: `grpc-websockets`
 * on this route, `grpc-ws.v1` elsewhere, or none (the routes' onRequest
 * hooks have already answered HTTP 400 when their subprotocol is missing).
 */
export function selectSubprotocol (protocols: Set<string>, request: IncomingMessage): string | false {
  const wanted = routed.has(request) ? GRPC_WEBSOCKETS : SUBPROTOCOL
  return protocols.has(wanted) ? wanted : false
}

export interface GrpcWebSocketsServer {
  readonly dispatcher: Dispatcher
  track (conn: ManagedConnection): void
  untrack (conn: ManagedConnection): void
}

/**
 * Registers the route, unless `grpcWebSocketsPrefix` is false. Call it after
 * @fastify/websocket is registered. Returns the open sessions (for tests and
 * diagnostics).
 */
export function registerGrpcWebSocketsRoute (fastify: FastifyInstance, server: GrpcWebSocketsServer, options: ResolvedOptions,
  httpHandler?: (request: FastifyRequest, reply: FastifyReply) => Promise<void>): void {
  const prefix = options.grpcWebSocketsPrefix
  if (prefix === false) return
  const limits = {
    maxReceiveMessageSize: options.maxReceiveMessageSize,
    maxSendMessageSize: options.maxSendMessageSize,
    maxMetadataSize: options.maxMetadataSize,
    socketHighWaterMark: options.socketHighWaterMark,
    // As on the grpc-ws.v1 route: the high-water mark plus one batch.
    backlogLimit: options.socketHighWaterMark + options.maxFrameSize,
    readHighWaterMark: options.initialWindowSize,
    pingInterval: options.pingInterval,
    pingTimeout: options.pingTimeout,
    idleTimeout: options.idleTimeout
  }
  const checkUpgrade = upgradeGuard(GRPC_WEBSOCKETS, options)

  fastify.route({
    method: 'GET',
    url: `${prefix === '/' ? '' : prefix}/*`,
    // Plain GETs (Connect's unary GET) go to the HTTP routes' handler; without it, 404 as @fastify/websocket answers them.
    handler: httpHandler ?? (async (_request: FastifyRequest, reply: FastifyReply) => { await reply.code(404).send() }),
    // No HEAD route: it cannot be upgraded, and would run a GET's call for nothing.
    exposeHeadRoute: false,
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
      const refused = await checkUpgrade(request, reply)
      if (request.ws && !reply.sent) routed.add(request.raw)
      return refused
    },
    wsHandler: (socket, request) => {
      if (socket.protocol !== GRPC_WEBSOCKETS) {
        // Another handleProtocols (the app's own @fastify/websocket) chose otherwise.
        socket.close(CloseCode.PROTOCOL_ERROR, `subprotocol ${GRPC_WEBSOCKETS} was not negotiated`)
        return
      }
      const path = '/' + (request.params as { '*': string })['*']
      const session = new GrpcWebSocketsSession(socket, request.raw, path, server.dispatcher, limits, { log: request.log, request }, closed => { server.untrack(closed) })
      server.track(session)
    }
  })
}
