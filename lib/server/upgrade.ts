/**
 * The checks every WebSocket route of the plugin runs on an upgrade request,
 * before the upgrade: origin, subprotocol, connection limits. Each refusal is
 * a real HTTP answer.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import { admissionFor } from './admission.js'
import { originAllowed } from './origin.js'

function offers (header: string | undefined, protocol: string): boolean {
  return header !== undefined && header.split(',').some(p => p.trim() === protocol)
}

/**
 * An onRequest hook for a route speaking `subprotocol`. The connection
 * limits are counted by the Admission of `options`, shared by both routes;
 * places are taken here, before the upgrade, so concurrent upgrades cannot
 * all slip past a limit.
 */
export function upgradeGuard (subprotocol: string, options: ResolvedOptions) {
  const admission = admissionFor(options)
  return async function checkUpgrade (request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
    if (!request.ws) return
    if (!originAllowed(request.headers.origin, request.headers.host, options.allowedOrigins)) {
      return await reply.code(403).send({ error: 'Forbidden', message: `Origin ${String(request.headers.origin)} may not open this WebSocket (see allowedOrigins)` })
    }
    if (!offers(request.headers['sec-websocket-protocol'], subprotocol)) {
      return await reply.code(400).send({ error: 'Bad Request', message: `Expected the WebSocket subprotocol ${subprotocol}` })
    }
    // Last, so only upgrades that pass every other check take a place. The
    // peer is Fastify's request.ip: the proxy's address behind a proxy,
    // unless Fastify's trustProxy is set.
    const refusal = admission.admit(request.raw.socket, request.ip)
    if (refusal === 'maxConnectionsPerPeer') {
      return await reply.code(429).send({ error: 'Too Many Requests', message: `Too many WebSocket connections from this address (maxConnectionsPerPeer ${options.maxConnectionsPerPeer})` })
    }
    if (refusal === 'maxConnections') {
      return await reply.code(503).send({ error: 'Service Unavailable', message: `Too many WebSocket connections (limit ${options.maxConnections})` })
    }
  }
}
