/**
 * Coded errors for configuration mistakes. Call failures are never thrown:
 * they travel as gRPC statuses.
 */
import createError from '@fastify/error'

export const ERR_INVALID_OPTION = createError<[string, string]>(
  'FST_GRPCWS_INVALID_OPTION', 'fastify-grpc-ws: invalid option "%s": %s', 500, TypeError)

export const ERR_INVALID_SERVICE = createError<[string]>(
  'FST_GRPCWS_INVALID_SERVICE', 'fastify-grpc-ws: invalid service: %s', 500, TypeError)

export const ERR_DUPLICATE_METHOD = createError<[string]>(
  'FST_GRPCWS_DUPLICATE_METHOD', 'fastify-grpc-ws: method %s is already registered')

export const ERR_ADD_SERVICE_TOO_LATE = createError(
  'FST_GRPCWS_ADD_SERVICE_TOO_LATE', 'fastify-grpc-ws: addService() must be called before the server is ready')

export const ERR_INVALID_CLIENT_OPTION = createError<[string, string]>(
  'FST_GRPCWS_INVALID_CLIENT_OPTION', 'fastify-grpc-ws: invalid client option "%s": %s', 500, TypeError)
