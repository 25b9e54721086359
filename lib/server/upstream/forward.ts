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
 *
 * The handler is a call backend (grpc-internals.ts): the dispatcher hands it
 * the ServerInterceptingCall the interceptors made, where an in-process
 * handler gets one of grpc-js's call objects built on it. Those are Node
 * streams (a Duplex for 'bidi'), and the forwarder, which only moves bytes
 * between two calls that each take one message at a time, would pay for
 * their buffers, events and ticks on every call and get nothing from them.
 */
import { Client, Metadata, credentials as grpcCredentials, status as GrpcStatus, type ServerInterceptingCallInterface, type StatusObject } from '@grpc/grpc-js'
import { callBackend, type ClientCall, type ClientCallListener, type MessageContext, type ServerCallListener } from '../../grpc-internals.js'
import { TurnQueue } from '../../protocol/turn-queue.js'
import type { ResolvedMetadataPolicy, ResolvedUpstream } from '../../upstream-options.js'
import type { Logger } from '../connection.js'
import { REQUEST_KEY } from '../connection.js'
import { discover, type DiscoveredService } from './reflection.js'

/**
 * Response bytes a forwarded call may hold for a slow client before the
 * upstream is no longer read: HTTP/2's window then holds the upstream back.
 */
export const FORWARD_HIGH_WATER_MARK = 256 * 1024

/**
 * Request bytes a forwarded call may hold, waiting for the upstream to take
 * them one at a time, before the client's call is no longer read.
 */
export const FORWARD_REQUEST_HIGH_WATER_MARK = 64 * 1024

/**
 * Messages a forwarded call may hold each way, whatever their size (the
 * bound grpc-js's own server streams have): many tiny messages cost their
 * objects more than their bytes.
 */
export const FORWARD_QUEUED_MESSAGES = 16

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

/** The metadata sent upstream for a call that came with `metadata`, under `policy`. */
export function upstreamMetadata (metadata: Metadata, call: Pick<ServerInterceptingCallInterface, 'getPeer' | 'getHost'>, policy: ResolvedMetadataPolicy): Metadata {
  const md = new Metadata()
  const map = metadata.toJSON()
  for (const key in map) {
    if (key.startsWith(':') || TRANSPORT_KEYS.has(key)) continue
    if (key === 'cookie' ? !policy.cookie : (policy.allow !== null && !policy.allow.has(key)) || policy.drop.has(key)) continue
    if (policy.forwarded && (key === 'x-forwarded-for' || key === 'x-forwarded-host')) continue
    for (const value of map[key]!) md.add(key, value)
  }
  if (policy.forwarded) {
    const request = metadata.getOpaque(REQUEST_KEY) as { ip?: unknown } | undefined
    const ip = typeof request?.ip === 'string' ? request.ip : addressOf(call.getPeer())
    const before = metadata.get('x-forwarded-for')
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

  /**
   * The handler registered for each of this upstream's method paths: a call
   * backend, handed the call the interceptors made (see the file's comment).
   */
  readonly handler = callBackend((call, handler) => {
    call.start(new ForwardedCall(this, call, handler.path))
  })

  /** @private The channel's call for `path`, beneath grpc-js's client stream classes and interceptors. */
  createCall (path: string, deadline: number): ClientCall {
    return this.client.getChannel().createCall(path, deadline, undefined, null, undefined)
  }

  /** @private Logs name the upstream; a change between reachable and not is worth a warning, each call only debug. */
  outcome (path: string, status: StatusObject): void {
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

// Forwarded calls with upstream output to hand on, handed on together (ForwardedCall#outputLater).
const output = new TurnQueue<ForwardedCall>(setImmediate, call => { call.output() })

/**
 * One forwarded call: the client's call (as the interceptors made it) on one
 * side, the channel's call to the upstream on the other. It is the client
 * call's listener; UpstreamListener is the channel call's.
 *
 * Each side takes one message at a time: the client's call gives one per
 * startRead() and takes the next sendMessage() after the last one's callback;
 * the channel's call likewise, with sendMessageWithContext() and startRead().
 * What arrives meanwhile waits here, within FORWARD_HIGH_WATER_MARK (responses)
 * or FORWARD_REQUEST_HIGH_WATER_MARK (requests) bytes and
 * FORWARD_QUEUED_MESSAGES messages; past those, that side is no longer read,
 * so its transport's window holds its sender back.
 */
class ForwardedCall implements ServerCallListener {
  private up: ClientCall | null = null
  private readonly upListener = new UpstreamListener(this)
  private deadlineMs = Infinity
  /** The upstream's status came (the upstream call is over). */
  private done = false
  /** The client's call is over (status sent, or cancelled). */
  private over = false

  // Requests: client → upstream.
  private readonly waiting: Buffer[] = []
  private waitingBytes = 0
  private sending = false
  private clientReadPending = false
  private clientHalfClosed = false
  private upHalfClosed = false
  private readingClient = false
  private readClientAgain = false

  // Responses: upstream → client.
  private readonly responses: Buffer[] = []
  /** Bytes of responses not yet taken by the client's call: waiting, and the one it is writing. */
  private responseBytes = 0
  private writing: Buffer | null = null
  private upReadPending = false
  private headers: Metadata | null = null
  private status: StatusObject | null = null
  private pumping = false
  private outputDue = false

  constructor (private readonly upstream: Upstream, private readonly call: ServerInterceptingCallInterface, private readonly path: string) {}

  // --- the client's call -------------------------------------------------

  onReceiveMetadata (metadata: Metadata): void {
    if (this.over) return
    // The client's deadline is the upstream call's.
    const deadline = this.call.getDeadline()
    this.deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline
    const up = this.upstream.createCall(this.path, this.deadlineMs)
    this.up = up
    up.start(upstreamMetadata(metadata, this.call, this.upstream.config.metadata), this.upListener)
    this.readClient()
    this.readUpstream()
  }

  onReceiveMessage (bytes: Buffer): void {
    this.clientReadPending = false
    if (this.over) return
    if (!this.sending) {
      this.sending = true
      this.up!.sendMessageWithContext(this.upListener, bytes)
    } else {
      this.waiting.push(bytes)
      this.waitingBytes += bytes.byteLength
    }
    this.readClient()
  }

  onReceiveHalfClose (): void {
    this.clientReadPending = false
    this.clientHalfClosed = true
    if (this.over) return
    // After a message the channel's call was handed, a half-close may follow
    // at once (grpc-js's own unary calls do so): no wait for its callback.
    if (this.waiting.length === 0) this.halfCloseUpstream()
  }

  /** A client cancel or disconnect cancels the upstream call ('cancelled' also follows a status, when this does nothing). */
  onCancel (): void {
    if (this.over && this.done) return
    this.over = true
    this.waiting.length = 0
    this.responses.length = 0
    if (!this.done) this.up?.cancelWithStatus(GrpcStatus.CANCELLED, 'Cancelled on client')
  }

  /**
   * Reads the client's next message while the upstream keeps up. A loop, not
   * a recursion: a transport may deliver a queued message inside startRead().
   */
  private readClient (): void {
    if (this.readingClient) { this.readClientAgain = true; return }
    this.readingClient = true
    do {
      this.readClientAgain = false
      if (this.clientReadPending || this.clientHalfClosed || this.over) break
      if (this.waitingBytes >= FORWARD_REQUEST_HIGH_WATER_MARK || this.waiting.length >= FORWARD_QUEUED_MESSAGES) break
      this.clientReadPending = true
      this.call.startRead()
    } while (this.readClientAgain)
    this.readingClient = false
  }

  private halfCloseUpstream (): void {
    if (this.upHalfClosed) return
    this.upHalfClosed = true
    this.up!.halfClose()
  }

  // --- the upstream's call -----------------------------------------------

  /** The channel's call took the last request message: the next one, or the half-close. */
  requestSent (): void {
    if (this.over) return
    const next = this.waiting.shift()
    if (next === undefined) {
      this.sending = false
      if (this.clientHalfClosed) this.halfCloseUpstream()
      return
    }
    this.waitingBytes -= next.byteLength
    this.up!.sendMessageWithContext(this.upListener, next)
    if (this.waiting.length === 0 && this.clientHalfClosed) this.halfCloseUpstream()
    this.readClient()
  }

  upstreamMetadata (metadata: Metadata): void {
    if (this.over) return
    this.headers = responseMetadata(metadata)
    this.outputLater()
  }

  upstreamMessage (bytes: Buffer): void {
    this.upReadPending = false
    if (this.over) return
    this.responses.push(bytes)
    this.responseBytes += bytes.byteLength
    this.outputLater()
    this.readUpstream()
  }

  upstreamStatus (status: StatusObject): void {
    this.done = true
    if (this.over) return
    // The channel's own timer for the very deadline the call has: the
    // call's timer ends it too, the way it ends an in-process call.
    if (status.code === GrpcStatus.DEADLINE_EXCEEDED && Date.now() >= this.deadlineMs - 10) return
    this.upstream.outcome(this.path, status)
    this.status = status
    this.outputLater()
  }

  /**
   * What the upstream sent goes to the client's call at the end of this
   * turn's I/O, with what every other forwarded call got in it: the
   * channel delivers each response header, message and status from its own
   * HTTP/2 callback (a microtask checkpoint each), so handed on at once they
   * would leave as a WebSocket message each, three per unary call, where
   * together they share one.
   */
  private outputLater (): void {
    if (this.outputDue) return
    this.outputDue = true
    output.add(this)
  }

  /** @private From the output queue. */
  output (): void {
    this.outputDue = false
    if (this.over) return
    const headers = this.headers
    if (headers !== null) {
      this.headers = null
      this.call.sendMetadata(headers)
    }
    this.pump()
  }

  /** Reads the upstream's next message while the client keeps up. */
  private readUpstream (): void {
    if (this.upReadPending || this.done || this.over) return
    if (this.responseBytes >= FORWARD_HIGH_WATER_MARK || this.responses.length >= FORWARD_QUEUED_MESSAGES) return
    this.upReadPending = true
    this.up!.startRead()
  }

  /** The client's call took the response it was writing. */
  private readonly responseSent = (): void => {
    this.responseBytes -= this.writing!.byteLength
    this.writing = null
    if (this.over) return
    this.pump()
    this.readUpstream()
  }

  /** Hands the client's call the next response, or the status once all went. */
  private pump (): void {
    if (this.pumping) return
    this.pumping = true
    while (this.writing === null && !this.over) {
      const next = this.responses.shift()
      if (next === undefined) {
        if (this.status !== null) this.finish(this.status)
        break
      }
      this.writing = next
      this.call.sendMessage(next, this.responseSent)
    }
    this.pumping = false
  }

  // The upstream's status and trailers, as they came (an OK status as every
  // grpc-js handler sends it).
  private finish (status: StatusObject): void {
    this.over = true
    const metadata = responseMetadata(status.metadata)
    if (status.code === GrpcStatus.OK) this.call.sendStatus({ code: GrpcStatus.OK, details: 'OK', metadata })
    else this.call.sendStatus({ code: status.code, details: status.details, metadata })
  }
}

/** The channel call's listener, and the context of each request sent on it (its callback). */
class UpstreamListener implements ClientCallListener, MessageContext {
  constructor (private readonly call: ForwardedCall) {}
  onReceiveMetadata (metadata: Metadata): void { this.call.upstreamMetadata(metadata) }
  onReceiveMessage (bytes: Buffer): void { this.call.upstreamMessage(bytes) }
  onReceiveStatus (status: StatusObject): void { this.call.upstreamStatus(status) }
  // A property, not a method: grpc-js may call it detached from this object.
  readonly callback = (): void => { this.call.requestSent() }
}
