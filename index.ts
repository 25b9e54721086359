/**
 * fastify-grpc-ws: serves @grpc/grpc-js service implementations over a
 * multiplexed WebSocket route, and hands the very same implementations to a
 * grpc-js Server for native gRPC over HTTP/2.
 */
import websocket from '@fastify/websocket'
import type { Metadata, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js'
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import { Topics } from './lib/fanout/topics.js'
import { lookupHandler } from './lib/grpc-internals.js'
import { validateOptions, type FastifyGrpcWsOptions } from './lib/options.js'
import { CloseCode, SUBPROTOCOL } from './lib/protocol/frame.js'
import { REQUEST_KEY } from './lib/server/connection.js'
import { GrpcWsServer } from './lib/server/grpc-ws-server.js'
import { registerGrpcWebSocketsRoute, selectSubprotocol } from './lib/server/grpc-websockets/route.js'
import { JsonCodecs } from './lib/server/http/json.js'
import { registerHttpRoutes } from './lib/server/http/route.js'
import { upgradeGuard } from './lib/server/upgrade.js'
import { guardWebSocketOrder } from './lib/server/websocket-order.js'

export interface FastifyGrpcWs {
  /** Serves another service, on the WebSocket route and on `grpcServer`. Before `ready()` only. */
  addService (definition: ServiceDefinition, implementation: UntypedServiceImplementation): void
  /** The WebSocket subprotocol the route speaks. */
  readonly subprotocol: string
  /** Open WebSocket connections. */
  readonly connectionCount: number
  /** Fan-out: subscribe server-streaming and bidi calls to topics, publish to them (README, Topics). */
  readonly topics: Topics
}

declare module 'fastify' {
  interface FastifyInstance {
    grpc: FastifyGrpcWs
  }
}

/**
 * The Fastify request whose WebSocket upgrade carried this call (after your
 * onRequest / preValidation hooks ran: the authenticated user, for
 * instance), or of the HTTP request of a gRPC-Web or Connect call; undefined
 * for a call that came over HTTP/2.
 */
export function fastifyRequestOf (call: { metadata: Metadata }): FastifyRequest | undefined {
  return call.metadata.getOpaque(REQUEST_KEY) as FastifyRequest | undefined
}

const plugin: FastifyPluginAsync<FastifyGrpcWsOptions> = async function fastifyGrpcWs (fastify: FastifyInstance, opts) {
  const options = validateOptions(opts)
  const server = new GrpcWsServer(options, (obj, msg) => { fastify.log.warn(obj, msg) }, fastify.log)
  // The Connect protocol's JSON mapping needs each service's descriptors.
  const jsonCodecs = new JsonCodecs()
  for (const { definition } of options.services) jsonCodecs.add(definition)
  const grpcServer = options.grpcServer
  const topics = new Topics(
    options.topics,
    path => server.dispatcher.lookup(path) ?? (grpcServer === undefined ? undefined : lookupHandler(grpcServer, path)),
    (err, topic) => { fastify.log.error({ err, topic }, 'fastify-grpc-ws: topic bus error') }
  )
  fastify.addHook('onClose', async () => { await topics.close() })

  fastify.decorate('grpc', {
    addService: (definition: ServiceDefinition, implementation: UntypedServiceImplementation) => {
      server.addService(definition, implementation)
      jsonCodecs.add(definition)
    },
    subprotocol: SUBPROTOCOL,
    get connectionCount () { return server.connections.size },
    topics
  })

  // While closing, Fastify answers a new request itself (503) without running
  // hooks, so nothing would ever end an upgrade request's socket: end it here,
  // once the answer is out, or app.close() would wait for it.
  const endLateUpgrade = (_request: IncomingMessage, socket: Duplex): void => {
    setImmediate(() => {
      socket.end()
      setTimeout(() => { socket.destroy() }, 1000).unref()
    })
  }
  async function shutdown (): Promise<void> {
    fastify.server.on('upgrade', endLateUpgrade)
    await server.shutdown()
  }
  fastify.addHook('onClose', async () => {
    fastify.server.off('upgrade', endLateUpgrade)
    server.closeUpstreams()
  })

  if (!fastify.hasDecorator('websocketServer')) {
    await fastify.register(websocket, {
      options: {
        // grpc-ws.v1 splits messages into frames of at most maxFrameSize (and its
        // connections check that themselves); the grpc-websockets clients send a
        // whole request in one WebSocket message, so they need room for one.
        maxPayload: options.grpcWebSocketsPrefix === false || options.maxReceiveMessageSize === -1
          ? options.maxFrameSize
          : Math.max(options.maxFrameSize, options.maxReceiveMessageSize + 6),
        // grpc-ws.v1, or grpc-websockets on the compatibility route
        handleProtocols: selectSubprotocol
      },
      preClose: async function () {
        await shutdown()
        for (const client of fastify.websocketServer.clients) client.close(CloseCode.GOING_AWAY, 'server shutting down')
        await new Promise<void>(resolve => { fastify.websocketServer.close(() => { resolve() }) })
      }
    })
    guardWebSocketOrder(fastify)
  } else {
    fastify.addHook('preClose', shutdown)
  }

  fastify.addHook('onReady', async () => { await server.start() })

  fastify.get(options.path, {
    websocket: true,
    onRequest: upgradeGuard(SUBPROTOCOL, options)
  }, (socket, request) => {
    if (socket.protocol !== SUBPROTOCOL) {
      // Another handleProtocols (the app's own @fastify/websocket) chose otherwise.
      socket.close(CloseCode.PROTOCOL_ERROR, `subprotocol ${SUBPROTOCOL} was not negotiated`)
      return
    }
    server.accept(socket, request.raw, { log: request.log, request })
  })

  // --- gRPC-Web and Connect over HTTP: lib/server/http/ ---
  const connectGet = await registerHttpRoutes(fastify, server, options, jsonCodecs)

  // --- grpc-websockets compatibility route (improbable-eng / nice-grpc-web clients) on the same paths: lib/server/grpc-websockets/ ---
  // Its GET route also serves Connect GETs (plain GETs, not upgrades).
  registerGrpcWebSocketsRoute(fastify, server, options, connectGet)
}

export const fastifyGrpcWs = fp(plugin, {
  name: 'fastify-grpc-ws',
  fastify: '5.x'
})

export default fastifyGrpcWs
export { ERR_ADD_SERVICE_TOO_LATE, ERR_DUPLICATE_METHOD, ERR_INVALID_OPTION, ERR_INVALID_SERVICE, ERR_WEBSOCKET_ORDER } from './lib/errors.js'
export type { FastifyGrpcWsOptions, RateLimitOption, ServiceEntry } from './lib/options.js'
export { defaults } from './lib/options.js'
export { SUBPROTOCOL, CloseCode } from './lib/protocol/frame.js'
export { ERR_INVALID_CLIENT_OPTION } from './lib/errors.js'
export { ERR_UPSTREAM_CONFLICT, ERR_UPSTREAM_DISCOVERY } from './lib/errors.js'
export type { UpstreamOption, UpstreamMetadataPolicy, UpstreamServiceMethods } from './lib/upstream-options.js'
export { ERR_INVALID_TOPIC, ERR_TOPIC_SERIALIZER } from './lib/errors.js'
export { Topics, topicsDefaults } from './lib/fanout/topics.js'
export type { OverflowPolicy, QueueOptions, Subscription, SubscribableCall, Topic, TopicOptions, TopicStats, TopicsOptions } from './lib/fanout/topics.js'
export { memoryBus, type TopicBus } from './lib/fanout/bus.js'
export { redisBus, type RedisBus, type RedisBusOptions, type RedisClientLike } from './lib/fanout/redis-bus.js'
