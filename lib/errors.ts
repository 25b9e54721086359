/**
 * Coded errors for configuration mistakes. Call failures are never thrown:
 * they travel as gRPC statuses.
 */
import createError from '@fastify/error'

/** An error of this package: `code` says which (FST_GRPCWS_...). */
export interface FastifyGrpcWsError<C extends string = string> extends Error {
  code: C
  name: string
  statusCode?: number
}

/**
 * The class of one coded error, callable with or without `new`. Declared
 * here rather than taken from @fastify/error's namespace, which a declaration
 * file cannot name under every moduleResolution (TS2503 under "bundler").
 */
export interface FastifyGrpcWsErrorConstructor<C extends string, A extends unknown[]> {
  new (...args: A): FastifyGrpcWsError<C>
  (...args: A): FastifyGrpcWsError<C>
  readonly prototype: FastifyGrpcWsError<C>
}

export const ERR_INVALID_OPTION: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_INVALID_OPTION', [string, string]> = createError<'FST_GRPCWS_INVALID_OPTION', [string, string]>(
  'FST_GRPCWS_INVALID_OPTION', 'fastify-grpc-ws: invalid option "%s": %s', 500, TypeError)

export const ERR_WEBSOCKET_ORDER: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_WEBSOCKET_ORDER', []> = createError<'FST_GRPCWS_WEBSOCKET_ORDER', []>(
  'FST_GRPCWS_WEBSOCKET_ORDER', 'fastify-grpc-ws: @fastify/websocket is registered after fastify-grpc-ws, which has registered it already: register @fastify/websocket before fastify-grpc-ws (its options then apply), or not at all')

export const ERR_INVALID_SERVICE: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_INVALID_SERVICE', [string]> = createError<'FST_GRPCWS_INVALID_SERVICE', [string]>(
  'FST_GRPCWS_INVALID_SERVICE', 'fastify-grpc-ws: invalid service: %s', 500, TypeError)

export const ERR_DUPLICATE_METHOD: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_DUPLICATE_METHOD', [string]> = createError<'FST_GRPCWS_DUPLICATE_METHOD', [string]>(
  'FST_GRPCWS_DUPLICATE_METHOD', 'fastify-grpc-ws: method %s is already registered')

export const ERR_ADD_SERVICE_TOO_LATE: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_ADD_SERVICE_TOO_LATE', []> = createError<'FST_GRPCWS_ADD_SERVICE_TOO_LATE', []>(
  'FST_GRPCWS_ADD_SERVICE_TOO_LATE', 'fastify-grpc-ws: addService() must be called before the server is ready')

export const ERR_INVALID_CLIENT_OPTION: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_INVALID_CLIENT_OPTION', [string, string]> = createError<'FST_GRPCWS_INVALID_CLIENT_OPTION', [string, string]>(
  'FST_GRPCWS_INVALID_CLIENT_OPTION', 'fastify-grpc-ws: invalid client option "%s": %s', 500, TypeError)

export const ERR_UPSTREAM_CONFLICT: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_UPSTREAM_CONFLICT', [string, string]> = createError<'FST_GRPCWS_UPSTREAM_CONFLICT', [string, string]>(
  'FST_GRPCWS_UPSTREAM_CONFLICT', 'fastify-grpc-ws: service %s is %s')

export const ERR_UPSTREAM_DISCOVERY: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_UPSTREAM_DISCOVERY', [string, string]> = createError<'FST_GRPCWS_UPSTREAM_DISCOVERY', [string, string]>(
  'FST_GRPCWS_UPSTREAM_DISCOVERY', 'fastify-grpc-ws: upstream %s: %s')

// --- topics (lib/fanout/) ---
export const ERR_INVALID_TOPIC: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_INVALID_TOPIC', [string]> = createError<'FST_GRPCWS_INVALID_TOPIC', [string]>(
  'FST_GRPCWS_INVALID_TOPIC', 'fastify-grpc-ws: topics: %s', 500, TypeError)

export const ERR_TOPIC_SERIALIZER: FastifyGrpcWsErrorConstructor<'FST_GRPCWS_TOPIC_SERIALIZER', [string]> = createError<'FST_GRPCWS_TOPIC_SERIALIZER', [string]>(
  'FST_GRPCWS_TOPIC_SERIALIZER', 'fastify-grpc-ws: topic "%s" has no serializer: give one with topics.topic(name, { serialize }), or publish encoded bytes')
