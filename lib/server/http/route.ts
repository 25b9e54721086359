/**
 * The HTTP routes: `POST <prefix>/<package.Service>/<Method>` serving
 * gRPC-Web (and, see connect.ts, the Connect protocol) with the same
 * handlers, interceptors, limits, origin policy and Fastify hooks as the
 * WebSocket routes, and `GET` on the same paths for Connect's unary GET
 * (connect-get.ts). The routes live in a scope of their own whose one
 * content-type parser hands Fastify's body stream to the call unread, so
 * Fastify never buffers these bodies. When the grpc-websockets route holds
 * `GET <prefix>/*` (for its upgrades), it serves plain GETs with the handler
 * returned from here.
 */
import { status as GrpcStatus } from '@grpc/grpc-js'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Readable } from 'node:stream'
import type { ResolvedOptions } from '../../options.js'
import { REQUEST_KEY } from '../connection.js'
import type { Dispatcher } from '../dispatch.js'
import type { ManagedConnection } from '../grpc-ws-server.js'
import { encodeStatusFrame } from '../grpc-websockets/frames.js'
import { parseGrpcTimeout } from '../grpc-websockets/header-block.js'
import { originAllowed } from '../origin.js'
import type { HttpCall, HttpCallLimits, HttpExchange } from './call.js'
import { GrpcWebCall, grpcWebType } from './grpc-web.js'
import { RequestHeaderError, closeHeader, environmentOf, headerEntries, mediaType, metadataOf } from './request.js'
import { connectType, serveConnect, type ConnectCodecs } from './connect.js'
import { serveConnectGet } from './connect-get.js'

export interface HttpServer {
  readonly dispatcher: Dispatcher
  track (conn: ManagedConnection): void
  untrack (conn: ManagedConnection): void
}

/** One HTTP call, as the server's shutdown sees it. */
class TrackedCall implements ManagedConnection {
  call: HttpCall | null = null
  private done = false
  private waiting: (() => void) | null = null
  tick (): void {}
  goAway (): Promise<void> {
    if (this.done) return Promise.resolve()
    return new Promise(resolve => { this.waiting = resolve })
  }

  close (): void { this.call?.shutdown() }
  ended (): void {
    this.done = true
    this.waiting?.()
  }
}

export type GetHandler = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

/**
 * Registers the routes, unless both protocols are off. Returns the handler
 * of Connect GETs when the grpc-websockets route has `GET <prefix>/*` and is
 * to serve them, undefined otherwise.
 */
export async function registerHttpRoutes (fastify: FastifyInstance, server: HttpServer, options: ResolvedOptions, connectCodecs: ConnectCodecs): Promise<GetHandler | undefined> {
  if (!options.grpcWeb && !options.connect) return undefined
  const prefix = options.grpcWebSocketsPrefix === false ? (options.path.replace(/\/+$/, '') || '/') : options.grpcWebSocketsPrefix
  const limits: HttpCallLimits = {
    maxReceiveMessageSize: options.maxReceiveMessageSize,
    readHighWaterMark: options.initialWindowSize,
    bodyTimeout: options.bodyTimeout
  }

  async function handle (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const req = request.raw
    const media = mediaType(req.headers['content-type'])
    const web = options.grpcWeb ? grpcWebType(media) : null
    const connect = web === null && options.connect ? connectType(media) : null
    if (web === null && connect === null) {
      await reply.code(415).header('accept-post', accepted(options).join(', ')).send({
        error: 'Unsupported Media Type',
        message: `Content-Type ${media === '' ? '(none)' : media} is not served here; expected ${accepted(options).join(', ')}`
      })
      return
    }
    if (web !== null && !web.proto) {
      await reply.code(415).send({ error: 'Unsupported Media Type', message: `${media}: only the proto codec is served over gRPC-Web (use application/grpc-web+proto, or the Connect protocol for JSON)` })
      return
    }
    if (!originAllowed(req.headers.origin, req.headers.host, options.allowedOrigins)) {
      await reply.code(403).send({ error: 'Forbidden', message: `Origin ${String(req.headers.origin)} may not call this service (see allowedOrigins)` })
      return
    }
    const path = '/' + (request.params as { '*': string })['*']
    const body = (request.body as Readable | undefined) ?? req
    const res = reply.raw
    // Headers hooks set on the reply (@fastify/cors, say) are Fastify's
    // until reply.send(), which these routes never call.
    for (const [key, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(key, value)
    reply.hijack()

    if (connect !== null) {
      serveConnect({ request, req, res, body, path, type: connect, server, options, limits, codecs: connectCodecs, track: () => track() })
      return
    }

    const refuse = (code: number, details: string): void => {
      const frame = encodeStatusFrame({ code, details, metadata: [] })
      const bytes = web!.text ? Buffer.from(Buffer.from(frame).toString('base64'), 'latin1') : frame
      res.writeHead(200, { 'content-type': web!.text ? 'application/grpc-web-text+proto' : 'application/grpc-web+proto', 'content-length': bytes.byteLength, ...closeHeader(req) })
      res.end(bytes)
      body.resume()
    }
    const handler = server.dispatcher.lookup(path)
    if (handler === undefined) {
      refuse(GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${path}`)
      return
    }
    let deadline = Infinity
    const timeout = [req.headers['grpc-timeout']].flat().filter(v => v !== undefined).join(', ') || undefined
    if (timeout !== undefined) {
      const ms = parseGrpcTimeout(timeout)
      if (ms === null) {
        refuse(GrpcStatus.INTERNAL, `Invalid grpc-timeout value "${timeout}"`)
        return
      }
      deadline = Date.now() + ms
    }
    let entries
    try {
      entries = headerEntries(req, options.maxMetadataSize)
    } catch (err) {
      if (!(err instanceof RequestHeaderError)) throw err
      refuse(err.message.includes('exceeds the limit') ? GrpcStatus.RESOURCE_EXHAUSTED : GrpcStatus.INTERNAL, err.message)
      return
    }
    const metadata = metadataOf(entries)
    metadata.setOpaque(REQUEST_KEY, request)
    const tracked = track()
    const exchange: HttpExchange = { req, res, body, env: environmentOf(req, options.maxSendMessageSize), onEnded: () => { tracked.ended(); server.untrack(tracked) } }
    const call = new GrpcWebCall(exchange, handler, metadata, deadline, limits, web!.text)
    tracked.call = call
    request.log.debug({ method: path }, 'gRPC-Web call started')
    try {
      server.dispatcher.run(call, handler)
    } catch (err) {
      // grpc-js catches what handlers throw; an interceptor's throw lands here.
      call.sendStatus({ code: GrpcStatus.INTERNAL, details: `Server interceptor threw: ${(err as Error).message}` })
    }
  }

  // Connect's unary GET. A GET whose query has none of Connect's
  // parameters is not a Connect call: the app's not-found handler answers
  // it, as it did before these routes.
  async function handleGet (request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const req = request.raw
    const path = '/' + (request.params as { '*': string })['*']
    const url = req.url ?? ''
    const q = url.indexOf('?')
    if (q === -1 || !/(^|&)(connect|encoding|message|base64|compression)=/.test(url.slice(q + 1))) {
      reply.callNotFound()
      return
    }
    if (!originAllowed(req.headers.origin, req.headers.host, options.allowedOrigins)) {
      await reply.code(403).send({ error: 'Forbidden', message: `Origin ${String(req.headers.origin)} may not call this service (see allowedOrigins)` })
      return
    }
    const res = reply.raw
    for (const [key, value] of Object.entries(reply.getHeaders())) if (value !== undefined) res.setHeader(key, value)
    reply.hijack()
    serveConnectGet({ request, req, res, path, server, options, limits, codecs: connectCodecs, track: () => track(), noSideEffects: connectCodecs.noSideEffects(path) })
  }

  function track (): TrackedCall {
    const tracked = new TrackedCall()
    server.track(tracked)
    return tracked
  }

  // The grpc-websockets route is at the same prefix when it is on.
  const getHere = options.connect && options.grpcWebSocketsPrefix === false
  await fastify.register(async function grpcHttpRoutes (scope) {
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, payload, done) => { done(null, payload) })
    scope.post(`${prefix === '/' ? '' : prefix}/*`, handle)
    // No HEAD route: a HEAD would run the call for nothing.
    // An upgrade request is refused as if there were no route (the
    // grpc-websockets route is off), before @fastify/websocket would take it.
    if (getHere) {
      scope.get(`${prefix === '/' ? '' : prefix}/*`, {
        exposeHeadRoute: false,
        onRequest: async (request, reply) => {
          if (!request.ws) return
          reply.callNotFound()
          return reply
        }
      }, handleGet)
    }
  })
  return options.connect && !getHere ? handleGet : undefined
}

function accepted (options: ResolvedOptions): string[] {
  const types: string[] = []
  if (options.grpcWeb) types.push('application/grpc-web', 'application/grpc-web+proto', 'application/grpc-web-text', 'application/grpc-web-text+proto')
  if (options.connect) types.push('application/proto', 'application/json', 'application/connect+proto', 'application/connect+json')
  return types
}
