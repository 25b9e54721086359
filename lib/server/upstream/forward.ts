/**
 * The forwarding backend: calls for an upstream's services go, as raw bytes,
 * to that upstream over one grpc-js channel, both ways flow-controlled.
 *
 * How forwarded paths reach it: every upstream method path is registered in
 * the grpc-js registry (and on the app's `grpcServer`) as a generic 'bidi'
 * handler with identity (de)serializers. grpc-js has no fallback for unknown
 * paths (it answers UNIMPLEMENTED before any interceptor runs), and
 * registering is what lets every route find forwarded methods through the
 * same `Dispatcher.lookup` / `run` as in-process ones, with the same limits,
 * hooks and interceptors, and the native HTTP/2 server forward too, with no
 * route-specific code. 'bidi' for every kind: on the wire a unary call is a
 * stream of one message each way, and a generic handler must not apply
 * grpc-js's unary checks to what the upstream decides.
 */
import { Client, Metadata, credentials as grpcCredentials, status as GrpcStatus, type ServerDuplexStream, type StatusObject } from '@grpc/grpc-js'
import type { ClientCall, MessageContext } from '../../grpc-internals.js'
import type { ResolvedMetadataPolicy, ResolvedUpstream } from '../../upstream-options.js'
import type { Logger } from '../connection.js'
import { REQUEST_KEY } from '../connection.js'
import { discover, type DiscoveredService } from './reflection.js'

/**
 * Response bytes a forwarded call may hold for a slow client (beside
 * grpc-js's server stream buffer of 16 messages) before the upstream is no
 * longer read: HTTP/2's window then holds the upstream back.
 */
export const FORWARD_HIGH_WATER_MARK = 256 * 1024

/**
 * Request bytes a forwarded call may hold, waiting for the upstream to take
 * them one at a time, before the client's stream is paused.
 */
export const FORWARD_REQUEST_HIGH_WATER_MARK = 64 * 1024

// Hop-by-hop and transport keys: they describe this hop, not the call
// (grpc-js sets its own user-agent, te, content-type and grpc-timeout).
const TRANSPORT_KEYS: ReadonlySet<string> = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'host', 'content-length', 'content-type', 'user-agent', 'accept-encoding',
  'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'grpc-status', 'grpc-message', 'grpc-status-details-bin'
])
// The upstream hop's own response headers: each route sends its own
// (content-type, date), and the channel decompressed what it read, so the
// encoding headers no longer hold.
const RESPONSE_DROPPED: ReadonlySet<string> = new Set(['content-type', 'date', 'grpc-encoding', 'grpc-accept-encoding', 'connection', 'transfer-encoding', 'content-length'])

/** `address:port` (IPv6 with or without brackets) → address. */
export function addressOf (peer: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(peer)
  if (bracketed !== null) return bracketed[1]!
  const withPort = /^(.*):(\d+)$/.exec(peer)
  return withPort === null ? peer : withPort[1]!
}

/** The metadata sent upstream for a call, under `policy`. */
export function upstreamMetadata (call: ServerDuplexStream<Buffer, Buffer>, policy: ResolvedMetadataPolicy): Metadata {
  const md = new Metadata()
  const map = call.metadata.toJSON()
  for (const key in map) {
    if (key.startsWith(':') || TRANSPORT_KEYS.has(key)) continue
    if (key === 'cookie' ? !policy.cookie : (policy.allow !== null && !policy.allow.has(key)) || policy.drop.has(key)) continue
    if (policy.forwarded && (key === 'x-forwarded-for' || key === 'x-forwarded-host')) continue
    for (const value of map[key]!) md.add(key, value)
  }
  if (policy.forwarded) {
    const request = call.metadata.getOpaque(REQUEST_KEY) as { ip?: unknown } | undefined
    const ip = typeof request?.ip === 'string' ? request.ip : addressOf(call.getPeer())
    const before = call.metadata.get('x-forwarded-for')
    md.set('x-forwarded-for', before.length > 0 ? `${before.join(', ')}, ${ip}` : ip)
    const host = call.getHost()
    if (host !== '') md.set('x-forwarded-host', host)
  }
  return md
}

function responseMetadata (md: Metadata): Metadata {
  for (const key of RESPONSE_DROPPED) md.remove(key)
  return md
}

/** One upstream: its channel, and the forwarding of each call. */
export class Upstream {
  readonly client: Client
  private readonly log: Logger
  private down = false

  /**
   * @param maxSendMessageSize the plugin's response limit, which the channel
   *   applies to what it reads (unless `channelOptions` says otherwise): a
   *   larger upstream message fails there with RESOURCE_EXHAUSTED, unread
   */
  constructor (readonly config: ResolvedUpstream, log: Logger, maxSendMessageSize = -1) {
    this.log = log.child({ upstream: config.target })
    this.client = new Client(config.target, config.credentials ?? grpcCredentials.createInsecure(), {
      'grpc.max_receive_message_length': maxSendMessageSize,
      ...config.channelOptions
    })
  }

  /** Services and their method paths: those listed with methods, then those reflection tells. */
  async discover (): Promise<Array<{ name: string, paths: string[], methods?: DiscoveredService['methods'] }>> {
    const found: Array<{ name: string, paths: string[], methods?: DiscoveredService['methods'] }> = [...this.config.known].map(([name, paths]) => ({ name, paths }))
    if (!this.config.reflectAll && this.config.reflect.length === 0) return found
    const services = await discover(this.client, this.config.reflectAll ? 'all' : this.config.reflect, this.config.discoveryTimeout)
    for (const service of services) {
      found.push({ name: service.name, paths: service.methods.map(m => `/${service.name}/${m.name}`), methods: service.methods })
    }
    return found
  }

  /** The handler registered for each of this upstream's method paths. */
  readonly handler = (call: ServerDuplexStream<Buffer, Buffer>): void => { this.forward(call) }

  private forward (call: ServerDuplexStream<Buffer, Buffer>): void {
    const path = call.getPath()
    // The channel's own call, beneath grpc-js's client stream classes and
    // interceptors: one message per startRead(), and a write callback once
    // the upstream's HTTP/2 stream took it, so flow control is exact, and no
    // client stream objects or interceptor chain per call. The client's
    // deadline is the upstream call's.
    const deadline = call.getDeadline()
    const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline
    const up: ClientCall = this.client.getChannel().createCall(path, deadline, undefined, null, undefined)
    let done = false
    // A client cancel or disconnect cancels it ('cancelled' also follows a
    // status, when the upstream call is over and this does nothing).
    call.on('cancelled', () => { if (!done) up.cancelWithStatus(GrpcStatus.CANCELLED, 'Cancelled on client') })
    // A write after the client left fails; the call is over anyway.
    call.on('error', () => {})

    // Requests: only as fast as the upstream takes them. A channel call
    // takes one message at a time (the next after the callback); the ones
    // that arrive meanwhile wait here, and past FORWARD_REQUEST_HIGH_WATER_MARK
    // bytes the client's stream is paused: it buffers at most 16 messages
    // more, and the client's window holds the client back. Pausing only
    // there, not after every message, keeps grpc-js from stopping and
    // restarting the client's HTTP/2 stream for each one (a unary call is
    // never paused).
    const waiting: Buffer[] = []
    let waitingBytes = 0
    let paused = false
    let sending = false
    let halfClose = false
    const context: MessageContext = {
      callback: () => {
        const next = waiting.shift()
        if (next === undefined) {
          sending = false
          if (halfClose) up.halfClose()
          return
        }
        waitingBytes -= next.byteLength
        if (paused && waitingBytes <= FORWARD_REQUEST_HIGH_WATER_MARK / 2) { paused = false; call.resume() }
        up.sendMessageWithContext(context, next)
      }
    }
    call.on('data', (bytes: Buffer) => {
      if (!sending) {
        sending = true
        up.sendMessageWithContext(context, bytes)
        return
      }
      waiting.push(bytes)
      waitingBytes += bytes.byteLength
      if (!paused && waitingBytes >= FORWARD_REQUEST_HIGH_WATER_MARK) { paused = true; call.pause() }
    })
    call.on('end', () => {
      halfClose = true
      if (!sending) up.halfClose()
    })

    // Responses: only as fast as the client takes them.
    let held = 0
    let reading = false
    const read = (): void => {
      if (!reading && !done && held < FORWARD_HIGH_WATER_MARK && !call.writableNeedDrain) {
        reading = true
        up.startRead()
      }
    }
    call.on('drain', read)
    up.start(upstreamMetadata(call, this.config.metadata), {
      onReceiveMetadata: (md: Metadata) => { if (!call.cancelled) call.sendMetadata(responseMetadata(md)) },
      onReceiveMessage: (bytes: Buffer) => {
        reading = false
        if (call.cancelled) return
        held += bytes.byteLength
        call.write(bytes, () => { held -= bytes.byteLength; read() })
        read()
      },
      onReceiveStatus: (status: StatusObject) => {
        done = true
        if (call.cancelled) return
        // The channel's own timer for the very deadline the call has: the
        // call's timer ends it too, the way it ends an in-process call.
        if (status.code === GrpcStatus.DEADLINE_EXCEEDED && Date.now() >= deadlineMs - 10) return
        this.outcome(path, status)
        const trailers = responseMetadata(status.metadata)
        if (status.code === GrpcStatus.OK) call.end(trailers)
        else call.emit('error', { code: status.code, details: status.details, metadata: trailers })
      }
    })
    read()
  }

  // Logs name the upstream; a change between reachable and not is worth a warning, each call only debug.
  private outcome (path: string, status: StatusObject): void {
    const unavailable = status.code === GrpcStatus.UNAVAILABLE
    if (unavailable && !this.down) {
      this.down = true
      this.log.warn({ method: path, details: status.details }, 'upstream unavailable')
    } else if (!unavailable && this.down) {
      this.down = false
      this.log.info({ method: path }, 'upstream reachable again')
    }
    this.log.debug({ method: path, code: status.code }, 'forwarded call ended')
  }

  close (): void {
    this.client.close()
  }
}
