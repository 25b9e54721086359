/**
 * fastify-grpc-ws: serves @grpc/grpc-js service implementations over a
 * multiplexed WebSocket route, and hands the very same implementations to a
 * grpc-js Server for native gRPC over HTTP/2.
 */
import websocket from '@fastify/websocket'
import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import fp from 'fastify-plugin'
import { ERR_ADD_SERVICE_TOO_LATE, ERR_DUPLICATE_METHOD } from './lib/errors.js'
import { checkService, validateOptions, type FastifyGrpcWsOptions } from './lib/options.js'
import { CloseCode, SUBPROTOCOL } from './lib/protocol/frame.js'
import { ServerConnection } from './lib/server/connection.js'
import { Dispatcher } from './lib/server/dispatch.js'

export interface FastifyGrpcWs {
  /** Serves another service, on the WebSocket route and on `grpcServer`. Before `ready()` only. */
  addService (definition: ServiceDefinition, implementation: UntypedServiceImplementation): void
  /** The WebSocket subprotocol the route speaks. */
  readonly subprotocol: string
  /** Open WebSocket connections. */
  readonly connectionCount: number
}

declare module 'fastify' {
  interface FastifyInstance {
    grpc: FastifyGrpcWs
  }
}

function offersSubprotocol (header: string | undefined): boolean {
  if (header === undefined) return false
  return header.split(',').some(p => p.trim() === SUBPROTOCOL)
}

const plugin: FastifyPluginAsync<FastifyGrpcWsOptions> = async function fastifyGrpcWs (fastify: FastifyInstance, opts) {
  const options = validateOptions(opts)
  // Holds the handlers for WebSocket calls; never listens. grpc-js's own
  // addService does the method lookup, so both transports find the same functions.
  const registry = new Server({ 'grpc.enable_channelz': 0 })
  const dispatcher = new Dispatcher(registry, options.interceptors)
  const connections = new Set<ServerConnection>()
  let started = false

  function addService (definition: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    if (started) throw new ERR_ADD_SERVICE_TOO_LATE()
    checkService({ definition, implementation })
    for (const method of Object.values(definition)) {
      if (dispatcher.lookup(method.path) !== undefined) throw new ERR_DUPLICATE_METHOD(method.path)
    }
    registry.addService(definition, implementation)
    options.grpcServer?.addService(definition, implementation)
  }

  for (const { definition, implementation } of options.services) addService(definition, implementation)

  fastify.decorate('grpc', {
    addService,
    subprotocol: SUBPROTOCOL,
    get connectionCount () { return connections.size }
  })

  /** GOAWAY to all, let calls finish within the grace period, then close with 1001. */
  async function shutdown (): Promise<void> {
    const open = [...connections]
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      Promise.all(open.map(async conn => await conn.goAway('server shutting down'))),
      new Promise<void>(resolve => { timer = setTimeout(resolve, options.closeGracePeriod) })
    ])
    clearTimeout(timer)
    for (const conn of open) conn.close(CloseCode.GOING_AWAY, 'server shutting down')
  }

  if (!fastify.hasDecorator('websocketServer')) {
    await fastify.register(websocket, {
      options: {
        maxPayload: options.maxFrameSize,
        handleProtocols: (protocols: Set<string>) => protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false
      },
      preClose: async function () {
        await shutdown()
        for (const client of fastify.websocketServer.clients) client.close(CloseCode.GOING_AWAY, 'server shutting down')
        await new Promise<void>(resolve => { fastify.websocketServer.close(() => { resolve() }) })
      }
    })
  } else {
    fastify.addHook('preClose', shutdown)
  }

  fastify.addHook('onReady', async () => { started = true })

  fastify.get(options.path, {
    websocket: true,
    onRequest: async (request: FastifyRequest, reply: FastifyReply) => {
      if (request.ws && !offersSubprotocol(request.headers['sec-websocket-protocol'])) {
        return reply.code(400).send({ error: 'Bad Request', message: `Expected the WebSocket subprotocol ${SUBPROTOCOL}` })
      }
    }
  }, (socket, request) => {
    if (socket.protocol !== SUBPROTOCOL) {
      // Another handleProtocols (the app's own @fastify/websocket) chose otherwise.
      socket.close(CloseCode.PROTOCOL_ERROR, `subprotocol ${SUBPROTOCOL} was not negotiated`)
      return
    }
    const conn = new ServerConnection(socket, request.raw, dispatcher, {
      maxConcurrentStreams: options.maxConcurrentStreams,
      initialWindowSize: options.initialWindowSize,
      maxFrameSize: options.maxFrameSize,
      maxMessageSize: options.maxReceiveMessageSize === -1 ? 0xffffffff : options.maxReceiveMessageSize,
      maxMetadataSize: options.maxMetadataSize,
      maxSendMessageSize: options.maxSendMessageSize,
      socketHighWaterMark: options.socketHighWaterMark
    }, closed => connections.delete(closed))
    connections.add(conn)
  })
}

export const fastifyGrpcWs = fp(plugin, {
  name: 'fastify-grpc-ws',
  fastify: '5.x'
})

export default fastifyGrpcWs
export { ERR_ADD_SERVICE_TOO_LATE, ERR_DUPLICATE_METHOD, ERR_INVALID_OPTION, ERR_INVALID_SERVICE } from './lib/errors.js'
export type { FastifyGrpcWsOptions, ServiceEntry } from './lib/options.js'
export { defaults } from './lib/options.js'
export { SUBPROTOCOL, CloseCode } from './lib/protocol/frame.js'
