/**
 * Every use of @grpc/grpc-js internals lives here, and only here. They are
 * not semver-protected: the peer range admits only grpc-js ~1.14.0 (1.14.0
 * brought ORCA's per-call recorder, which ServerInterceptingCallInterface
 * requires), test/grpc-internals.test.ts fails loudly if an upgrade breaks any
 * of them, and `npm run test:package` runs calls on the lowest and highest
 * version the range admits.
 *
 * Why internals at all: to give WebSocket calls the very call objects, error
 * mapping and 'cancelled' semantics that grpc-js gives HTTP/2 calls, the
 * WebSocket transport implements grpc-js's public
 * ServerInterceptingCallInterface and hands it to the Server's own (private)
 * dispatcher, the same one HTTP/2 streams go through.
 */
import * as grpc from '@grpc/grpc-js'
import * as environment from '@grpc/grpc-js/build/src/environment.js'
import { PerRequestMetricRecorder } from '@grpc/grpc-js/build/src/orca.js'

export type HandlerType = 'unary' | 'clientStream' | 'serverStream' | 'bidi'

/** A registered method, as grpc-js's Server keeps it. */
export interface RegisteredHandler {
  func: (...args: any[]) => void
  serialize: (value: any) => Buffer
  deserialize: (bytes: Buffer) => any
  type: HandlerType
  path: string
}

interface ServerInternals {
  handlers: Map<string, RegisteredHandler>
  _runHandlerForCall: (call: grpc.ServerInterceptingCallInterface, handler: RegisteredHandler) => boolean
}

function internals (server: grpc.Server): ServerInternals {
  return server as unknown as ServerInternals
}

/** The handler a Server registered for `path` (by addService or register). */
export function lookupHandler (server: grpc.Server, path: string): RegisteredHandler | undefined {
  return internals(server).handlers.get(path)
}

/**
 * Runs `handler` on `call` exactly as grpc-js runs it for an HTTP/2 stream:
 * it builds grpc-js's own call objects (ServerWritableStreamImpl, ...), maps
 * errors to statuses and emits 'cancelled' the grpc-js way.
 */
export function runHandler (server: grpc.Server, call: grpc.ServerInterceptingCallInterface, handler: RegisteredHandler): boolean {
  return internals(server)._runHandlerForCall(call, handler)
}

/** The per-call metrics recorder grpc-js hands to handlers (ORCA). */
export function createMetricsRecorder (): PerRequestMetricRecorder {
  return new PerRequestMetricRecorder()
}

/** The listener a ServerInterceptingCallInterface is started with. */
export type ServerCallListener = Parameters<grpc.ServerInterceptingCallInterface['start']>[0]
export type ServerStatus = Parameters<grpc.ServerInterceptingCallInterface['sendStatus']>[0]
export type AuthContext = ReturnType<grpc.ServerInterceptingCallInterface['getAuthContext']>
export type ConnectionInfo = ReturnType<grpc.ServerInterceptingCallInterface['getConnectionInfo']>

/**
 * The per-call object a client Channel's createCall returns. grpc-js
 * exports it only as `experimental.CallStream` (not public API).
 */
export type ClientCall = grpc.experimental.CallStream
export type ClientCallListener = Parameters<ClientCall['start']>[1]
export type MessageContext = Parameters<ClientCall['sendMessageWithContext']>[0]
export type ChannelzRef = ReturnType<grpc.ChannelInterface['getChannelzRef']>

/**
 * Whether grpc-js puts exception messages into status details (for a
 * throwing handler, a failed (de)serialization); both transports follow it.
 * From 1.14.5 grpc-js does so only when the environment variable
 * GRPC_NODE_DEBUG_SEND_ERROR_DETAILS is 'true', and exports that switch;
 * 1.14.0 to 1.14.4 have no such export (a named import would fail to link)
 * and always send the messages.
 */
export const sendErrorDetails: boolean = readSendErrorDetails(environment as { GRPC_NODE_DEBUG_SEND_ERROR_DETAILS?: unknown })

/** Exported for the contract test, which checks both branches. */
export function readSendErrorDetails (env: { GRPC_NODE_DEBUG_SEND_ERROR_DETAILS?: unknown }): boolean {
  const value = env.GRPC_NODE_DEBUG_SEND_ERROR_DETAILS
  return typeof value === 'boolean' ? value : true
}
/** The server call a client call may inherit cancellation and deadline from. */
export type ParentCall = NonNullable<Parameters<grpc.ChannelInterface['createCall']>[3]>
