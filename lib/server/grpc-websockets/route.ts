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
import { originAllowed } from '../origin.js'
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

function offers (header: string | undefined, protocol: string): boolean {
  return header !== undefined && header.split(',').some(p => p.trim() === protocol)
}

export interface GrpcWebSocketsServer {
  readonly dispatcher: Dispatcher
  /** grpc-ws.v1 connections open, for maxConnections. */
  readonly connections: { readonly size: number }
}

/**
 * Registers the route, unless `grpcWebSocketsPrefix` is false. Call it after
 * @fastify/websocket is registered. Returns the open sessions (for tests and
 * diagnostics).
 */
export function registerGrpcWebSocketsRoute (fastify: FastifyInstance, server: GrpcWebSocketsServer, options: ResolvedOptions): Set<GrpcWebSocketsSession> {
  const sessions = new Set<GrpcWebSocketsSession>()
  const prefix = options.grpcWebSocketsPrefix
  if (prefix === false) return sessions
  const limits = {
    maxReceiveMessageSize: options.maxReceiveMessageSize,
    maxSendMessageSize: options.maxSendMessageSize,
    maxMetadataSize: options.maxMetadataSize,
    socketHighWaterMark: options.socketHighWaterMark,
    readHighWaterMark: options.initialWindowSize,
    pingInterval: options.pingInterval,
    pingTimeout: options.pingTimeout,
    idleTimeout: options.idleTimeout
  }

  // One timer for every session's pings and idle check, running only while
  // there are sessions (as the grpc-ws.v1 connections have).
  let ticker: ReturnType<typeof setInterval> | null = null
  const periods = [limits.pingInterval, limits.pingTimeout, limits.idleTimeout].filter(ms => ms > 0)
  const startTicker = (): void => {
    if (ticker !== null || periods.length === 0) return
    ticker = setInterval(() => {
      const now = Date.now()
      for (const session of sessions) session.tick(now)
    }, Math.max(10, Math.min(1000, Math.min(...periods) / 4)))
    ticker.unref()
  }

  fastify.get(`${prefix === '/' ? '' : prefix}/*`, {
    websocket: true,
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
      if (!request.ws) return
      if (!originAllowed(request.headers.origin, request.headers.host, options.allowedOrigins)) {
        return reply.code(403).send({ error: 'Forbidden', message: `Origin ${String(request.headers.origin)} may not open this WebSocket (see allowedOrigins)` })
      }
      if (!offers(request.headers['sec-websocket-protocol'], GRPC_WEBSOCKETS)) {
        return reply.code(400).send({ error: 'Bad Request', message: `Expected the WebSocket subprotocol ${GRPC_WEBSOCKETS}` })
      }
      const max = options.maxConnections
      if (max > 0 && server.connections.size + sessions.size >= max) {
        return reply.code(503).send({ error: 'Service Unavailable', message: `Too many WebSocket connections (limit ${max})` })
      }
      routed.add(request.raw)
    }
  }, (socket, request) => {
    if (socket.protocol !== GRPC_WEBSOCKETS) {
      // Another handleProtocols (the app's own @fastify/websocket) chose otherwise.
      socket.close(CloseCode.PROTOCOL_ERROR, `subprotocol ${GRPC_WEBSOCKETS} was not negotiated`)
      return
    }
    const path = '/' + (request.params as { '*': string })['*']
    const session = new GrpcWebSocketsSession(socket, request.raw, path, server.dispatcher, limits, { log: request.log, request }, closed => {
      sessions.delete(closed)
      if (sessions.size === 0 && ticker !== null) {
        clearInterval(ticker)
        ticker = null
      }
    })
    sessions.add(session)
    startTicker()
  })
  return sessions
}
