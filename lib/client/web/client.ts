/**
 * The browser client: one WebSocket (opened by the first call, reopened
 * with backoff when it drops) shared by every call, and the four kinds of
 * call as Promises and async iterables.
 */
import type { BackoffOptions } from '../backoff.js'
import { ClientSession, type SessionState, type StreamHandler, type StreamStart, type WebSocketConstructor } from '../session.js'
import { WebCall } from './call.js'
import { Status } from '../../protocol/status.js'
import type { BidiCall, CallOptions, MethodDescriptor, StreamCall, UnaryCall } from './types.js'

/** `'idle'` (no socket), `'connecting'`, `'ready'`, or `'closed'` (by `close()`, for good). */
export type ConnectionState = SessionState

/** How calls travel: the multiplexed WebSocket, or (with the HTTP fallback) gRPC-Web over fetch. */
export type Transport = 'websocket' | 'http'

/** What a call needs of its stream, whichever way it travels. */
export interface CallStream {
  send: (bytes: Uint8Array, done?: () => void) => void
  halfClose: () => void
  cancel: () => void
  consumed: () => void
}

/** Opens the stream of each new call. */
export interface StreamOpener {
  openStream: (start: StreamStart, handler: StreamHandler) => CallStream
}

/** What a client needs of its session (the HTTP fallback's client puts a router in its place). */
export type SessionLike = StreamOpener & Pick<ClientSession, 'connectivityState' | 'onStateChange' | 'connect' | 'close'>

export interface ClientOptions {
  /** The WebSocket class. Default: the global one (browsers, Node 22+); in Node 20 pass `ws`. */
  WebSocket?: WebSocketConstructor
  /** Receive window of each call, in bytes. Default 256 KiB. */
  initialWindowSize?: number
  /** Largest response message, in bytes; -1 for no limit. Default 4 MiB. */
  maxReceiveMessageSize?: number
  /** Calls waiting for a socket (or for a retry after a failed attempt) fail with UNAVAILABLE if it is not ready within this many ms. Default 20000. */
  connectTimeoutMs?: number
  /** ms between PINGs on an open socket; 0 for none. Default 30000. */
  keepaliveIntervalMs?: number
  /** ms without an answer to a PING (and without any other frame) after which the socket counts as dead. Default 10000. */
  keepaliveTimeoutMs?: number
  /** Spacing of reconnection attempts after failed ones. Default `{ initialMs: 1000, maxMs: 30000, multiplier: 1.6, jitter: 0.2 }`. */
  backoff?: BackoffOptions
  /**
   * Further subprotocol values offered after grpc-ws.v1: browsers cannot set
   * headers on a WebSocket, so e.g. `['bearer.' + token]` for your upgrade hook.
   */
  protocols?: string[]
}

/** FST_GRPCWS_INVALID_CLIENT_OPTION, made here: the browser bundle carries no @fastify/error. */
export function invalidOption (name: string, why: string): TypeError {
  return Object.assign(new TypeError(`fastify-grpc-ws: invalid client option "${name}": ${why}`), { code: 'FST_GRPCWS_INVALID_CLIENT_OPTION' })
}

/** `ws://`, `wss://`, or (in a page) a path or http(s) URL resolved against the page's address. */
function webSocketUrl (url: string): string {
  let resolved: URL | undefined
  try { resolved = new URL(url, (globalThis as { location?: { href: string } }).location?.href) } catch {}
  if (resolved === undefined || !/^(ws|http)s?:$/.test(resolved.protocol)) throw invalidOption('url', `not a ws:, wss:, http: or https: URL: ${url}`)
  resolved.protocol = resolved.protocol.replace('http', 'ws')
  return resolved.href
}

export class GrpcWsClient {
  protected session: SessionLike
  readonly url: string

  constructor (url: string, options: ClientOptions = {}) {
    const WebSocket = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
    if (WebSocket === undefined) throw invalidOption('WebSocket', 'no global WebSocket here: pass the one from ws')
    this.url = webSocketUrl(url)
    this.session = new ClientSession(this.url, {
      keepaliveIntervalMs: 30000,
      keepaliveTimeoutMs: 10000,
      ...options,
      WebSocket,
      backoff: { initialMs: 1000, maxMs: 30000, ...options.backoff }
    })
  }

  /** The state of the shared socket. */
  get state (): ConnectionState {
    return this.session.connectivityState
  }

  /** Calls `listener` on every change of `state`; returns a function that stops it. */
  onStateChange (listener: (state: ConnectionState) => void): () => void {
    return this.session.onStateChange(listener)
  }

  /** Opens the socket now rather than at the first call. */
  connect (): void {
    this.session.connect()
  }

  /** Closes the socket for good; calls in flight fail with UNAVAILABLE, later ones too. */
  close (): void {
    this.session.close()
  }

  unary<I, O> (method: MethodDescriptor<I, O>, request: I, options?: CallOptions): UnaryCall<O> {
    const call = new WebCall(this.session, method, false, options)
    call.write(request)
    call.close()
    return call.result()
  }

  serverStream<I, O> (method: MethodDescriptor<I, O>, request: I, options?: CallOptions): StreamCall<O> {
    const call = new WebCall(this.session, method, true, options)
    call.write(request)
    call.close()
    return call
  }

  /** Sends every request of `requests` (an array, any iterable, or an async iterable), then half-closes. */
  clientStream<I, O> (method: MethodDescriptor<I, O>, requests: AsyncIterable<I> | Iterable<I>, options?: CallOptions): UnaryCall<O> {
    const call = new WebCall(this.session, method, false, options)
    void pump(call, requests)
    return call.result()
  }

  bidi<I, O> (method: MethodDescriptor<I, O>, options?: CallOptions): BidiCall<I, O> {
    return new WebCall(this.session, method, true, options)
  }
}

/** Feeds requests one at a time, each after the previous one has gone out (the server's credit). */
async function pump<I, O> (call: WebCall<I, O>, requests: AsyncIterable<I> | Iterable<I>): Promise<void> {
  try {
    for await (const request of requests) {
      if (!await call.send(request)) return
    }
    call.close()
  } catch (err) {
    call.cancelWith(Status.CANCELLED, `The request stream failed: ${err instanceof Error ? err.message : String(err)}`, err)
  }
}

/** A client for the fastify-grpc-ws endpoint at `url`. Nothing connects until the first call (or `connect()`). */
export function createClient (url: string, options?: ClientOptions): GrpcWsClient {
  return new GrpcWsClient(url, options)
}
