/**
 * The checks every WebSocket route of the plugin runs on an upgrade request,
 * before the upgrade: origin, subprotocol, connection limit. Each refusal is
 * a real HTTP answer.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import { originAllowed } from './origin.js'

function offers (header: string | undefined, protocol: string): boolean {
  return header !== undefined && header.split(',').some(p => p.trim() === protocol)
}

/** An onRequest hook for a route speaking `subprotocol`. */
export function upgradeGuard (subprotocol: string, options: ResolvedOptions, isFull: () => boolean) {
  return async function checkUpgrade (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    if (!request.ws) return
    if (!originAllowed(request.headers.origin, request.headers.host, options.allowedOrigins)) {
      return await reply.code(403).send({ error: 'Forbidden', message: `Origin ${String(request.headers.origin)} may not open this WebSocket (see allowedOrigins)` })
    }
    if (!offers(request.headers['sec-websocket-protocol'], subprotocol)) {
      return await reply.code(400).send({ error: 'Bad Request', message: `Expected the WebSocket subprotocol ${subprotocol}` })
    }
    if (isFull()) {
      return await reply.code(503).send({ error: 'Service Unavailable', message: `Too many WebSocket connections (limit ${options.maxConnections})` })
    }
  }
}
