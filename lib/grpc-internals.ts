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
 * errors to statuses and emits 'cancelled' the grpc-js way. A call backend
 * (below) is handed `call` itself.
 */
export function runHandler (server: grpc.Server, call: grpc.ServerInterceptingCallInterface, handler: RegisteredHandler): boolean {
  const backend = backendOf(handler)
  if (backend !== undefined) {
    backend(call, handler)
    return true
  }
  return internals(server)._runHandlerForCall(call, handler)
}

// --- call backends (the forwarder: lib/server/upstream/) --------------------

/**
 * A handler that takes the ServerInterceptingCall itself (after the
 * interceptors), with no grpc-js call object around it: it starts the call
 * with its own listener and uses sendMetadata / sendMessage / sendStatus /
 * startRead, one message at a time each way, as grpc-js's call objects do.
 */
export type CallBackend = (call: grpc.ServerInterceptingCallInterface, handler: RegisteredHandler) => void

const kCallBackend = Symbol('fastify-grpc-ws.callBackend')
type BackendFunc = RegisteredHandler['func'] & { [kCallBackend]?: CallBackend }

/**
 * The handler function to register (with Server#register, any kind) for a
 * call backend: runHandler, and a Server given to runCallBackends, hand it
 * the call. Run as a plain handler (by a Server that was not), it fails the
 * call with INTERNAL.
 */
export function callBackend (backend: CallBackend): RegisteredHandler['func'] {
  const func: BackendFunc = (stream: { emit: (event: 'error', err: object) => void }) => {
    stream.emit('error', { code: grpc.status.INTERNAL, details: 'fastify-grpc-ws: a call backend was run as a grpc-js handler' })
  }
  func[kCallBackend] = backend
  return func
}

function backendOf (handler: RegisteredHandler): CallBackend | undefined {
  return (handler.func as BackendFunc)[kCallBackend]
}

const kRunsBackends = Symbol('fastify-grpc-ws.runsCallBackends')

/**
 * Makes `server` (the app's grpcServer) hand its HTTP/2 calls to call
 * backends too: grpc-js runs every stream, after the server's interceptors,
 * through the instance's _runHandlerForCall, which this wraps. Idempotent.
 */
export function runCallBackends (server: grpc.Server): void {
  const s = internals(server) as ServerInternals & { [kRunsBackends]?: true }
  if (s[kRunsBackends] === true) return
  const run = s._runHandlerForCall
  s._runHandlerForCall = function (this: unknown, call, handler) {
    const backend = backendOf(handler)
    if (backend === undefined) return run.call(this, call, handler)
    backend(call, handler)
    return true
  }
  s[kRunsBackends] = true
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

// --- pre-encoded messages (topics: lib/fanout/) -----------------------------

/**
 * A response message already serialized by its method's response serializer:
 * a handler whose serializer accepts encoded messages (acceptEncoded) writes
 * these bytes as they are. One object may be written to many calls.
 */
export class EncodedMessage {
  constructor (readonly bytes: Buffer) {}
}

const kOriginalSerialize = Symbol('fastify-grpc-ws.originalSerialize')
type PatchedHandler = RegisteredHandler & { [kOriginalSerialize]?: (value: any) => Buffer }

/**
 * Makes `handler` (as the Server keeps it) pass EncodedMessage bytes through
 * unchanged; every other message still goes to its own serializer. grpc-js
 * reads `handler.serialize` at each sendMessage (BaseServerInterceptingCall's
 * serializeMessage over HTTP/2; ServerCallBase over WebSocket), so calls in
 * flight see the change too. Idempotent; returns the original serializer.
 */
export function acceptEncoded (handler: RegisteredHandler): (value: any) => Buffer {
  const h = handler as PatchedHandler
  const original = h[kOriginalSerialize]
  if (original !== undefined) return original
  const serialize = h.serialize
  h[kOriginalSerialize] = serialize
  h.serialize = (value: any) => value instanceof EncodedMessage ? value.bytes : serialize(value)
  return serialize
}

/**
 * The ServerInterceptingCallInterface chain behind a grpc-js call object
 * (ServerWritableStreamImpl, ServerDuplexStreamImpl keep it as `call`; each
 * ServerInterceptingCall an interceptor made keeps the next as `nextCall`),
 * outermost first. Bounded, in case an interceptor's call links in a cycle.
 */
export function callChain (stream: object): object[] {
  const chain: object[] = []
  let c = (stream as { call?: unknown }).call
  while (c !== null && typeof c === 'object' && chain.length < 64 && !chain.includes(c)) {
    chain.push(c)
    c = (c as { nextCall?: unknown }).nextCall
  }
  return chain
}

/** The registered handler the innermost call of `stream` serializes with (either transport), if it can be found. */
export function handlerOfCall (stream: object): RegisteredHandler | undefined {
  for (const c of callChain(stream)) {
    const h = (c as { handler?: Partial<RegisteredHandler> }).handler
    if (h !== null && typeof h === 'object' && typeof h.serialize === 'function' && typeof h.path === 'string') return h as RegisteredHandler
  }
  return undefined
}
