/**
 * The coded errors of the Connect transport. Browser-safe: lib/errors.ts
 * builds its classes with @fastify/error, which needs Node's util and http,
 * so these carry the same codes and message format without it.
 */

/** An error of this package: `code` says which (FST_GRPCWS_...). */
export interface CodedError extends TypeError {
  readonly code: string
}

function coded (code: string, message: string): CodedError {
  const error = new TypeError(message) as TypeError & { code: string }
  error.code = code
  return error
}

/** A bad option of createWebSocketTransport: the same code as the other clients' option errors. */
export function invalidClientOption (name: string, problem: string): CodedError {
  return coded('FST_GRPCWS_INVALID_CLIENT_OPTION', `fastify-grpc-ws: invalid client option "${name}": ${problem}`)
}

/** serviceDescFromDefinition found no descriptors, or not the service asked for. */
export function noDescriptor (problem: string): CodedError {
  return coded('FST_GRPCWS_NO_DESCRIPTOR', `fastify-grpc-ws: no descriptor: ${problem}`)
}
