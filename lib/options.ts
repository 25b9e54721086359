/**
 * Plugin options: their defaults, and validation that turns a mistake into a
 * coded error at register time.
 */
import type { Server, ServerInterceptor, ServiceDefinition, UntypedServiceImplementation } from '@grpc/grpc-js'
import { ERR_INVALID_OPTION, ERR_INVALID_SERVICE } from './errors.js'
import { MAX_WINDOW } from './protocol/flow-control.js'
import { validateUpstreams, type ResolvedUpstream, type UpstreamOption } from './upstream-options.js'
import type { TopicsOptions } from './fanout/topics.js'

export interface ServiceEntry {
  /** A grpc-js ServiceDefinition, e.g. `loadPackageDefinition(...).pkg.Echo.service`. */
  definition: ServiceDefinition
  /** The grpc-js implementation object, as given to `Server.addService`. */
  implementation: UntypedServiceImplementation
}

export interface FastifyGrpcWsOptions {
  /** The WebSocket route. Default `'/grpc'`. */
  path?: string
  /**
   * Where the `grpc-websockets` compatibility route serves the WebSocket
   * transports of @improbable-eng/grpc-web and nice-grpc-web, one call per
   * socket at `<prefix>/<package.Service>/<Method>`. Default: the same as
   * `path`; `false` turns the route off.
   */
  grpcWebSocketsPrefix?: string | false
  /** Services served over WebSocket (and on `grpcServer`, if given). */
  services?: ServiceEntry[]
  /** A grpc-js Server that is given the very same services with `addService`. */
  grpcServer?: Server
  /** grpc-js server interceptors, run on every WebSocket call (pass the same array to `new grpc.Server({ interceptors })`). */
  interceptors?: ServerInterceptor[]
  /** Largest request message, in bytes; -1 for no limit. Default 4 MiB, as grpc-js. */
  maxReceiveMessageSize?: number
  /** Largest response message, in bytes; -1 for no limit. Default 4 MiB. */
  maxSendMessageSize?: number
  /** Calls one connection may have open at once. Default 100. */
  maxConcurrentStreams?: number
  /** Per-stream receive window, in message bytes. Default 256 KiB. */
  initialWindowSize?: number
  /** Largest WebSocket message accepted (one frame or a batch). Default 256 KiB. */
  maxFrameSize?: number
  /** Largest encoded request metadata. Default 16 KiB. */
  maxMetadataSize?: number
  /** Bytes a socket may buffer before its streams stop sending. Default 1 MiB. */
  socketHighWaterMark?: number
  /** On close, how long calls in flight may run before they are cancelled, in ms. Default 5000. */
  closeGracePeriod?: number
  /**
   * Open WebSocket connections at most, both routes together, upgrades in
   * progress included; further upgrades get HTTP 503. Default 20000; 0 for no limit.
   */
  maxConnections?: number
  /**
   * Open WebSocket connections at most from one client address (Fastify's
   * `request.ip`: behind a proxy that is the proxy's address, unless
   * Fastify's `trustProxy` is set); further upgrades get HTTP 429. Default 0: no limit.
   */
  maxConnectionsPerPeer?: number
  /**
   * Per connection, how many streams the client may cancel while the server
   * still serves them, plus CALLs the server refuses, before the connection
   * is closed (GOAWAY, then close 1008 'too many stream resets'): `burst` at
   * once, refilled at `perSecond`. Default `{ burst: 1000, perSecond: 33 }`,
   * as nghttp2; `false` for no limit.
   */
  resetRateLimit?: RateLimitOption | false
  /**
   * Per connection, how many stream-level protocol errors of the client
   * (window exceeded, MESSAGE after HALF_CLOSE, invalid WINDOW_UPDATE,
   * malformed CALL) before the connection is closed (GOAWAY, then close 1008
   * 'too many protocol errors'). Default `{ burst: 100, perSecond: 10 }`; `false` for no limit.
   */
  errorRateLimit?: RateLimitOption | false
  /** ms between WebSocket pings to each client; 0 for none. Default 30000. */
  pingInterval?: number
  /** ms a ping may wait for its pong before the peer is taken as stalled (its calls are cancelled). Default 10000. */
  pingTimeout?: number
  /** ms a connection may have no call open before it is closed (1000 'idle timeout'); 0 for never. Default 300000. */
  idleTimeout?: number
  /**
   * Origins allowed to upgrade, e.g. `['https://app.example.com']`, `'*'`, or a
   * function. Default: only same-origin browser upgrades (Origin's host equals
   * Host); requests without Origin (backends) are always allowed.
   */
  allowedOrigins?: string[] | '*' | ((origin: string) => boolean)
  // --- HTTP routes (lib/server/http/): POST <grpcWebSocketsPrefix>/<package.Service>/<Method> ---
  /** Serve gRPC-Web (binary and text) over HTTP on the same paths. Default true. */
  grpcWeb?: boolean
  /** Serve the Connect protocol (binary and JSON) over HTTP on the same paths. Default true. */
  connect?: boolean
  /**
   * ms an HTTP request body may send nothing (and, for a method whose
   * request is one message, take in all) before its call ends with
   * DEADLINE_EXCEEDED; 0 for no limit. Default 30000.
   */
  bodyTimeout?: number
  /**
   * Topics (`app.grpc.topics`): the bus between instances and each
   * subscriber's queue bounds. See README, Topics (fan-out).
   */
  topics?: TopicsOptions
  /**
   * gRPC servers (any language) whose services are forwarded, as raw bytes,
   * from every route and from `grpcServer`. See "Forwarding to gRPC servers" in the README.
   */
  upstreams?: UpstreamOption[]
}

/** A token bucket: `burst` events at once, refilled at `perSecond`. */
export interface RateLimitOption {
  /** Events allowed at once (the bucket's size), an integer ≥ 1. */
  burst?: number
  /** Events per second the bucket refills by, ≥ 0 (fractions allowed). */
  perSecond?: number
}

/** A rate limit as resolved: both fields set. */
export type RateLimit = Readonly<Required<RateLimitOption>>

export const defaults = {
  path: '/grpc',
  maxReceiveMessageSize: 4 * 1024 * 1024,
  maxSendMessageSize: 4 * 1024 * 1024,
  maxConcurrentStreams: 100,
  initialWindowSize: 256 * 1024,
  maxFrameSize: 256 * 1024,
  maxMetadataSize: 16 * 1024,
  socketHighWaterMark: 1024 * 1024,
  closeGracePeriod: 5000,
  maxConnections: 20000,
  maxConnectionsPerPeer: 0,
  // nghttp2's defaults for its stream reset rate limit.
  resetRateLimit: { burst: 1000, perSecond: 33 },
  // A well-behaved client makes none of these errors: a tenth of the reset
  // budget still lets a buggy one fail a few calls without losing the rest.
  errorRateLimit: { burst: 100, perSecond: 10 },
  pingInterval: 30000,
  pingTimeout: 10000,
  idleTimeout: 300000,
  grpcWeb: true,
  connect: true,
  bodyTimeout: 30000
} as const

// Room in a CALL frame beside the metadata: header, fields and a path.
const CALL_FRAME_ROOM = 4096

export type ResolvedOptions = Required<Omit<FastifyGrpcWsOptions, 'grpcServer' | 'allowedOrigins' | 'resetRateLimit' | 'errorRateLimit' | 'topics' | 'upstreams'>> & {
  upstreams: ResolvedUpstream[]
  /** Checked by the Topics constructor (lib/fanout/topics.ts). */
  topics: TopicsOptions | undefined
  grpcServer: Server | undefined
  allowedOrigins: FastifyGrpcWsOptions['allowedOrigins'] | undefined
  resetRateLimit: RateLimit | false
  errorRateLimit: RateLimit | false
}

function integer (name: string, value: unknown, fallback: number, min: number, max: number, unlimited = false): number {
  if (value === undefined) return fallback
  if (unlimited && value === -1) return -1
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ERR_INVALID_OPTION(name, `expected an integer from ${min} to ${max}${unlimited ? ' (or -1 for no limit)' : ''}, got ${String(value)}`)
  }
  return value
}

function boolean (name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new ERR_INVALID_OPTION(name, `expected true or false, got ${String(value)}`)
  return value
}

function rateLimit (name: string, value: unknown, fallback: RateLimit): RateLimit | false {
  if (value === undefined) return fallback
  if (value === false) return false
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ERR_INVALID_OPTION(name, `expected { burst, perSecond } or false, got ${String(value)}`)
  }
  const { burst, perSecond } = value as RateLimitOption
  const perSecondValue = perSecond ?? fallback.perSecond
  if (typeof perSecondValue !== 'number' || !Number.isFinite(perSecondValue) || perSecondValue < 0) {
    throw new ERR_INVALID_OPTION(`${name}.perSecond`, `expected a finite number ≥ 0, got ${String(perSecondValue)}`)
  }
  return { burst: integer(`${name}.burst`, burst, fallback.burst, 1, 0x7fffffff), perSecond: perSecondValue }
}

export function checkService (entry: unknown): asserts entry is ServiceEntry {
  if (entry === null || typeof entry !== 'object') throw new ERR_INVALID_SERVICE('expected { definition, implementation }')
  const { definition, implementation } = entry as Partial<ServiceEntry>
  if (definition === null || typeof definition !== 'object' || Object.keys(definition).length === 0) {
    throw new ERR_INVALID_SERVICE('definition must be a non-empty grpc-js ServiceDefinition')
  }
  for (const [name, method] of Object.entries(definition)) {
    if (method === null || typeof method !== 'object' || typeof method.path !== 'string' ||
      typeof method.requestDeserialize !== 'function' || typeof method.responseSerialize !== 'function') {
      throw new ERR_INVALID_SERVICE(`definition.${name} is not a grpc-js MethodDefinition`)
    }
  }
  if (implementation === null || typeof implementation !== 'object') {
    throw new ERR_INVALID_SERVICE('implementation must be an object of handler functions')
  }
}

// Every option name, so a misspelt one is refused rather than ignored.
const optionNames: ReadonlyArray<keyof FastifyGrpcWsOptions> = [
  ...Object.keys(defaults) as Array<keyof typeof defaults>,
  'grpcWebSocketsPrefix', 'services', 'grpcServer', 'interceptors', 'allowedOrigins', 'topics',
  'upstreams'
]
// What Fastify's register() itself passes a plugin along with its options.
const registerOptions = new Set(['prefix', 'logLevel', 'logSerializers'])

/**
 * Up to two names `name` may have meant, nearest first: those within a small
 * edit distance, and those that begin with its first word and end with the
 * rest (`maxMessageSize`: `maxSendMessageSize`, `maxReceiveMessageSize`).
 */
function nearest (name: string): string[] {
  const words = name.split(/(?=[A-Z])/)
  const first = words[0]!
  const rest = words.slice(1).join('')
  const limit = Math.max(2, Math.floor(name.length / 3))
  return optionNames
    .map(candidate => ({
      candidate,
      d: distance(name.toLowerCase(), candidate.toLowerCase()),
      sameWords: words.length > 1 && candidate.startsWith(first) && candidate.endsWith(rest)
    }))
    .filter(({ d, sameWords }) => d <= limit || sameWords)
    .sort((a, b) => Number(b.sameWords) - Number(a.sameWords) || a.d - b.d)
    .slice(0, 2)
    .map(x => x.candidate)
}

// Levenshtein distance, for option names (a few dozen characters).
function distance (a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const next = [i]
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    row = next
  }
  return row[b.length]!
}

function checkNames (o: object): void {
  for (const name of Object.keys(o)) {
    if ((optionNames as readonly string[]).includes(name) || registerOptions.has(name)) continue
    const near = nearest(name)
    throw new ERR_INVALID_OPTION(name, `unknown option${near.length === 0 ? '' : `; did you mean ${near.map(n => `"${n}"`).join(' or ')}?`}`)
  }
}

export function validateOptions (options: FastifyGrpcWsOptions | undefined): ResolvedOptions {
  const o = options ?? {}
  checkNames(o)
  const path = o.path ?? defaults.path
  if (typeof path !== 'string' || !path.startsWith('/')) throw new ERR_INVALID_OPTION('path', `expected a string starting with "/", got ${String(path)}`)
  // Defaults to `path` (without a trailing "/"). A prefix has no trailing "/"
  // (but "/" itself) and nothing find-my-way reads as a parameter or wildcard.
  const grpcWebSocketsPrefix = o.grpcWebSocketsPrefix === undefined ? (path.replace(/\/+$/, '') || '/') : o.grpcWebSocketsPrefix
  if (grpcWebSocketsPrefix !== false && (typeof grpcWebSocketsPrefix !== 'string' || !/^\/([^/*:?#\s]+(\/[^/*:?#\s]+)*)?$/.test(grpcWebSocketsPrefix))) {
    throw new ERR_INVALID_OPTION('grpcWebSocketsPrefix', `expected false or a path like "/grpc" (starting with "/", no trailing "/", no "*", ":", "?", "#" or spaces), got ${String(grpcWebSocketsPrefix)}${o.grpcWebSocketsPrefix === undefined ? ' (the default: path)' : ''}`)
  }
  const services = o.services ?? []
  if (!Array.isArray(services)) throw new ERR_INVALID_OPTION('services', 'expected an array of { definition, implementation }')
  services.forEach(checkService)
  const grpcServer = o.grpcServer
  if (grpcServer !== undefined && (grpcServer === null || typeof grpcServer.addService !== 'function')) {
    throw new ERR_INVALID_OPTION('grpcServer', 'expected a grpc-js Server')
  }
  const interceptors = o.interceptors ?? []
  if (!Array.isArray(interceptors) || interceptors.some(i => typeof i !== 'function')) {
    throw new ERR_INVALID_OPTION('interceptors', 'expected an array of grpc-js server interceptor functions')
  }
  const maxFrameSize = integer('maxFrameSize', o.maxFrameSize, defaults.maxFrameSize, 16 * 1024, 16 * 1024 * 1024)
  const maxMetadataSize = integer('maxMetadataSize', o.maxMetadataSize, defaults.maxMetadataSize, 1024, 16 * 1024 * 1024)
  // A CALL frame holds the metadata, the method path and a few fields.
  if (maxMetadataSize > maxFrameSize - CALL_FRAME_ROOM) {
    throw new ERR_INVALID_OPTION('maxMetadataSize', `must leave ${CALL_FRAME_ROOM} bytes of maxFrameSize (${maxFrameSize}) for the rest of a CALL frame`)
  }
  const allowedOrigins = o.allowedOrigins
  if (allowedOrigins !== undefined && allowedOrigins !== '*' && typeof allowedOrigins !== 'function' &&
    !(Array.isArray(allowedOrigins) && allowedOrigins.every(origin => typeof origin === 'string'))) {
    throw new ERR_INVALID_OPTION('allowedOrigins', "expected an array of origins, '*', or a function")
  }
  return {
    path,
    grpcWebSocketsPrefix,
    allowedOrigins,
    topics: o.topics,
    services: [...services],
    upstreams: validateUpstreams(o.upstreams),
    grpcServer,
    interceptors: [...interceptors],
    maxReceiveMessageSize: integer('maxReceiveMessageSize', o.maxReceiveMessageSize, defaults.maxReceiveMessageSize, 0, 0x7fffffff, true),
    maxSendMessageSize: integer('maxSendMessageSize', o.maxSendMessageSize, defaults.maxSendMessageSize, 0, 0x7fffffff, true),
    maxConcurrentStreams: integer('maxConcurrentStreams', o.maxConcurrentStreams, defaults.maxConcurrentStreams, 1, 0x7fffffff),
    initialWindowSize: integer('initialWindowSize', o.initialWindowSize, defaults.initialWindowSize, 1024, MAX_WINDOW),
    maxFrameSize,
    maxMetadataSize,
    socketHighWaterMark: integer('socketHighWaterMark', o.socketHighWaterMark, defaults.socketHighWaterMark, 1024, 0x7fffffff),
    closeGracePeriod: integer('closeGracePeriod', o.closeGracePeriod, defaults.closeGracePeriod, 0, 0x7fffffff),
    maxConnections: integer('maxConnections', o.maxConnections, defaults.maxConnections, 0, 0x7fffffff),
    maxConnectionsPerPeer: integer('maxConnectionsPerPeer', o.maxConnectionsPerPeer, defaults.maxConnectionsPerPeer, 0, 0x7fffffff),
    resetRateLimit: rateLimit('resetRateLimit', o.resetRateLimit, defaults.resetRateLimit),
    errorRateLimit: rateLimit('errorRateLimit', o.errorRateLimit, defaults.errorRateLimit),
    pingInterval: integer('pingInterval', o.pingInterval, defaults.pingInterval, 0, 0x7fffffff),
    pingTimeout: integer('pingTimeout', o.pingTimeout, defaults.pingTimeout, 1, 0x7fffffff),
    idleTimeout: integer('idleTimeout', o.idleTimeout, defaults.idleTimeout, 0, 0x7fffffff),
    grpcWeb: boolean('grpcWeb', o.grpcWeb, defaults.grpcWeb),
    connect: boolean('connect', o.connect, defaults.connect),
    bodyTimeout: integer('bodyTimeout', o.bodyTimeout, defaults.bodyTimeout, 0, 0x7fffffff)
  }
}
