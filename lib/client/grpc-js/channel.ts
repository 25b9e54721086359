/**
 * A grpc-js Channel over one WebSocket session, for `channelOverride`:
 * stock clients from loadPackageDefinition or makeGenericClientConstructor
 * call the plugin's services over WebSocket unchanged.
 */
import { connectivityState, propagate, status as GrpcStatus, type ChannelInterface, type Deadline } from '@grpc/grpc-js'
import { createRequire } from 'node:module'
import WebSocket from 'ws'
import { ERR_INVALID_CLIENT_OPTION } from '../../errors.js'
import type { BackoffOptions } from '../backoff.js'
import type { ChannelzRef, ClientCall, ParentCall } from '../../grpc-internals.js'
import { ClientSession, type SessionState, type WebSocketConstructor } from '../session.js'
import { WebSocketClientCall, type ChannelSetup } from './call.js'

const require = createRequire(import.meta.url)
const grpcVersion: string = require('@grpc/grpc-js/package.json').version
const ownVersion: string = require('fastify-grpc-ws/package.json').version

export interface WebSocketChannelOptions {
  /** Receive window for each call's responses, in bytes. Default 256 KiB. */
  initialWindowSize?: number
  /** Largest response message accepted, in bytes; -1 for no limit. Default 4 MiB, as grpc-js. */
  maxReceiveMessageSize?: number
  /** How long to wait for the socket to open, in ms; also the longest a call waits for a retry after a failed attempt. Default 20000. */
  connectTimeoutMs?: number
  /** Spacing of connection attempts after failed ones. Default grpc-js's own: `{ initialMs: 1000, multiplier: 1.6, jitter: 0.2, maxMs: 120000 }`. */
  backoff?: BackoffOptions
  /** Options for the `ws` WebSocket, e.g. `headers` for authentication on the upgrade. */
  webSocketOptions?: WebSocket.ClientOptions
  /** A WebSocket class to use instead of `ws`. */
  WebSocket?: WebSocketConstructor
  /** Put before the user-agent (as grpc-js's `grpc.primary_user_agent`). */
  primaryUserAgent?: string
}

const stateMap: Record<SessionState, connectivityState> = {
  idle: connectivityState.IDLE,
  connecting: connectivityState.CONNECTING,
  ready: connectivityState.READY,
  closed: connectivityState.SHUTDOWN
}

let channelId = 0

/** grpc-js's reconnection backoff (INITIAL_BACKOFF_MS … in its backoff-timeout.js). */
const grpcBackoff: BackoffOptions = { initialMs: 1000, multiplier: 1.6, jitter: 0.2, maxMs: 120000 }

/**
 * Cuts each CALL frame from a shared 16 KiB block. With the user-agent a
 * CALL frame is over 64 bytes, so an array of its own would be an ArrayBuffer
 * off V8's heap: about 0.7 µs of a 100-byte call's client CPU to make and
 * collect, against a view's few tens of ns. Each byte of a block is handed
 * out once (zeroed), so a frame stays valid for as long as it is held.
 */
let block = new Uint8Array(0)
let blockUsed = 0
function allocFrame (size: number): Uint8Array {
  if (size > 4096) return new Uint8Array(size)
  if (blockUsed + size > block.byteLength) {
    block = new Uint8Array(16384)
    blockUsed = 0
  }
  return block.subarray(blockUsed, blockUsed += size)
}

class WebSocketChannel implements ChannelInterface {
  private readonly session: ClientSession
  private readonly id = ++channelId
  private readonly authority: string
  private readonly calls: ChannelSetup

  constructor (private readonly target: string, options: WebSocketChannelOptions) {
    let url: URL | undefined
    try { url = new URL(target) } catch {}
    if (url === undefined || (url.protocol !== 'ws:' && url.protocol !== 'wss:')) {
      throw new ERR_INVALID_CLIENT_OPTION('url', `expected a ws: or wss: URL, got ${target}`)
    }
    const wsOptions = options.webSocketOptions
    const Ctor: WebSocketConstructor = options.WebSocket ?? (wsOptions === undefined
      ? WebSocket
      : class extends WebSocket { constructor (u: string, p: string | string[]) { super(u, p, wsOptions) } })
    this.session = new ClientSession(target, {
      WebSocket: Ctor,
      ...(options.initialWindowSize !== undefined && { initialWindowSize: options.initialWindowSize }),
      ...(options.maxReceiveMessageSize !== undefined && { maxReceiveMessageSize: options.maxReceiveMessageSize }),
      ...(options.connectTimeoutMs !== undefined && { connectTimeoutMs: options.connectTimeoutMs }),
      backoff: { ...grpcBackoff, ...options.backoff },
      alloc: allocFrame
    })
    this.authority = url.host
    // grpc-js's own format, so a handler sees the same kind of user-agent.
    const userAgent = [options.primaryUserAgent, `grpc-node-js/${grpcVersion}`, `fastify-grpc-ws/${ownVersion}`].filter(Boolean).join(' ')
    this.calls = { session: this.session, peer: url.host, userAgentOnly: [['user-agent', userAgent]] }
  }

  close (): void {
    this.session.close()
  }

  getTarget (): string {
    return this.target
  }

  getConnectivityState (tryToConnect: boolean): connectivityState {
    if (tryToConnect) this.session.connect()
    return stateMap[this.session.connectivityState]
  }

  watchConnectivityState (currentState: connectivityState, deadline: Date | number, callback: (error?: Error) => void): void {
    if (this.session.connectivityState === 'closed') throw new Error('Channel has been shut down')
    if (stateMap[this.session.connectivityState] !== currentState) {
      process.nextTick(callback)
      return
    }
    const ms = (deadline instanceof Date ? deadline.getTime() : deadline) - Date.now()
    let timer: ReturnType<typeof setTimeout> | undefined
    const stop = this.session.onStateChange(state => {
      if (stateMap[state] === currentState) return
      stop()
      clearTimeout(timer)
      callback()
    })
    if (ms !== Infinity) {
      timer = setTimeout(() => {
        stop()
        callback(new Error('Deadline passed without connectivity state change'))
      }, Math.max(0, Math.min(ms, 0x7fffffff)))
    }
  }

  getChannelzRef (): ChannelzRef {
    return { kind: 'channel', id: this.id, name: this.target } as unknown as ChannelzRef
  }

  createCall (method: string, deadline: Deadline, host: string | null | undefined, parentCall: ParentCall | null, propagateFlags: number | null | undefined): ClientCall {
    if (typeof method !== 'string') throw new TypeError('Channel#createCall: method must be a string')
    if (this.session.connectivityState === 'closed') throw new Error('Channel has been shut down')
    const flags = propagateFlags ?? propagate.DEFAULTS
    let ms = deadline instanceof Date ? deadline.getTime() : deadline
    if (parentCall != null && (flags & propagate.DEADLINE) !== 0) {
      const parentDeadline = parentCall.getDeadline()
      ms = Math.min(ms, parentDeadline instanceof Date ? parentDeadline.getTime() : parentDeadline)
    }
    const call = new WebSocketClientCall(this.calls, method, ms, host ?? this.authority)
    if (parentCall != null && (flags & propagate.CANCELLATION) !== 0) {
      const onParentCancelled = (): void => { call.cancelWithStatus(GrpcStatus.CANCELLED, 'Cancelled by parent call') }
      parentCall.once('cancelled', onParentCancelled)
      call.onEnded = () => { parentCall.removeListener('cancelled', onParentCancelled) }
    }
    return call
  }
}

/**
 * A grpc-js Channel that carries calls over one WebSocket to a
 * fastify-grpc-ws endpoint. Pass it as `channelOverride` to any grpc-js
 * client; the client's address and credentials are then ignored.
 */
export function createWebSocketChannel (url: string, options: WebSocketChannelOptions = {}): ChannelInterface {
  if (typeof url !== 'string') throw new ERR_INVALID_CLIENT_OPTION('url', 'expected a string')
  return new WebSocketChannel(url, options)
}
