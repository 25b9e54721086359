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
import type { ResolvedMetadataPolicy, ResolvedUpstream } from '../../upstream-options.js'
import type { Logger } from '../connection.js'
import { REQUEST_KEY } from '../connection.js'
import { discover, type DiscoveredService } from './reflection.js'

const identity = (b: Buffer): Buffer => b

/**
 * Response bytes a forwarded call may hold for a slow client (beside
 * grpc-js's own buffers of 16 messages each way) before the upstream is
 * paused: HTTP/2's window then holds the upstream back.
 */
export const FORWARD_HIGH_WATER_MARK = 256 * 1024

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
    // The client's deadline is the upstream call's; a client cancel or
    // disconnect ('cancelled', after a status too, when it is a no-op) cancels it.
    const out = this.client.makeBidiStreamRequest(path, identity, identity, upstreamMetadata(call, this.config.metadata), { deadline: call.getDeadline() })
    call.on('cancelled', () => { out.cancel() })
    // A write after the client left fails; the call is over anyway.
    call.on('error', () => {})

    // Requests: only as fast as the upstream takes them.
    call.on('data', (bytes: Buffer) => {
      if (!out.write(bytes)) {
        call.pause()
        out.once('drain', () => { call.resume() })
      }
    })
    call.on('end', () => { out.end() })

    // Responses: only as fast as the client takes them.
    let held = 0
    let paused = false
    const resume = (): void => {
      if (paused && held < FORWARD_HIGH_WATER_MARK && !call.writableNeedDrain) {
        paused = false
        out.resume()
      }
    }
    call.on('drain', resume)
    out.on('metadata', (md: Metadata) => { if (!call.cancelled) call.sendMetadata(responseMetadata(md)) })
    out.on('data', (bytes: Buffer) => {
      if (call.cancelled) return
      held += bytes.byteLength
      const ok = call.write(bytes, () => { held -= bytes.byteLength; resume() })
      if ((!ok || held >= FORWARD_HIGH_WATER_MARK) && !paused) {
        paused = true
        out.pause()
      }
    })
    // The status event comes as soon as the upstream's trailers do, maybe
    // before every message was read: the call ends after the last one.
    let status: StatusObject | null = null
    let ended = false
    const finish = (): void => {
      if (status === null || !ended || call.cancelled) return
      this.outcome(path, status)
      const trailers = responseMetadata(status.metadata)
      if (status.code === GrpcStatus.OK) call.end(trailers)
      else call.emit('error', { code: status.code, details: status.details, metadata: trailers })
    }
    out.on('end', () => { ended = true; finish() })
    out.on('status', (s: StatusObject) => { status = s; finish() })
    // The status event carries it.
    out.on('error', () => {})
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
