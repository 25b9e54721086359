/**
 * The per-call object a grpc-js Client drives through a Channel
 * (grpc-js's internal Call interface), over one stream of a ClientSession.
 * It keeps the contract grpc-js's own HTTP/2 call keeps: write callbacks
 * always fire, one message per startRead, the status last and exactly once,
 * an OK status only after every message, the deadline enforced here.
 */
import { Metadata, status as GrpcStatus, type CallCredentials, type StatusObject } from '@grpc/grpc-js'
import type { AuthContext, ClientCall, ClientCallListener, MessageContext } from '../../grpc-internals.js'
import { fromGrpcMetadata, toGrpcMetadata } from '../../grpc-metadata.js'
import { MessageQueue } from '../../protocol/byte-queue.js'
import { whenDeadlinePasses } from '../../protocol/deadline.js'
import { TurnQueue } from '../../protocol/turn-queue.js'
import type { MetadataEntry } from '../../protocol/metadata.js'
import type { CallStatus } from '../../protocol/payload.js'
import type { ClientSession, ClientStream, StreamHandler } from '../session.js'

let callNumber = 0

/** A Buffer over the same bytes: `ws` delivers Buffers, so what arrives mostly is one already. */
function asBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

// Statuses are reported on the next tick (as grpc-js's HTTP/2 call does):
// those due in one turn from one tick, not a closure and a tick each.
const statuses = new TurnQueue<WebSocketClientCall>(process.nextTick, call => { call.reportStatus() })

/** What every call of one channel shares: made once, not once a call. */
export interface ChannelSetup {
  session: ClientSession
  peer: string
  /**
   * The channel's user-agent as the only entry: the metadata of a call that
   * sets none, shared by all of them (nothing writes to it).
   */
  userAgentOnly: readonly MetadataEntry[]
}

export class WebSocketClientCall implements ClientCall, StreamHandler {
  private readonly number = ++callNumber
  private listener: ClientCallListener | null = null
  private stream: ClientStream | null = null
  // Calls made on the call before its stream exists (call credentials
  // pending): undefined while there are none, null once the stream is open.
  private early: Array<(stream: ClientStream) => void> | null | undefined
  // Messages grpc-js has not read yet, as bytes (a copy: what arrives is a
  // view of the socket's buffer), so what a server can make a call hold is
  // bounded by the window, not by a count of objects. Made for the first
  // message that has to wait (a unary call's is read at once).
  private messages: MessageQueue | null = null
  private readPending = false
  private finalStatus: StatusObject | null = null
  private statusReported = false
  private credentials: CallCredentials | null = null
  private stopDeadline: (() => void) | null = null
  /** Runs once the status has been reported. */
  onEnded: (() => void) | null = null

  /**
   * @param deadline ms since the epoch, or Infinity
   * @param authority the channel's, or the host the call was given
   */
  constructor (private readonly setup: ChannelSetup, private readonly method: string, private readonly deadline: number, private readonly authority: string) {
    if (deadline !== Infinity) this.armDeadline()
  }

  private armDeadline (): void {
    const expire = (): void => { this.cancelWithStatus(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded') }
    if (this.deadline <= Date.now()) {
      // Already past: fail on the next tick, as grpc-js does, before any reply can win.
      process.nextTick(expire)
      return
    }
    this.stopDeadline = whenDeadlinePasses(this.deadline, expire)
  }

  start (metadata: Metadata, listener: ClientCallListener): void {
    this.listener = listener
    if (this.statusReported || this.finalStatus !== null || (this.deadline !== Infinity && this.deadline <= Date.now())) return
    const own = fromGrpcMetadata(metadata)
    let entries = this.setup.userAgentOnly
    if (own.length > 0) {
      // The channel's user-agent replaces any the application set.
      for (let i = own.length - 1; i >= 0; i--) if (own[i]![0] === 'user-agent') own.splice(i, 1)
      own.push(entries[0]!)
      entries = own
    }
    if (this.credentials === null) {
      this.open(entries)
      return
    }
    const host = this.authority.replace(/:\d+$/, '')
    const service = this.method.substring(0, this.method.lastIndexOf('/'))
    this.credentials.generateMetadata({ method_name: this.method, service_url: `https://${host}${service}` }).then(extra => {
      const extraEntries = fromGrpcMetadata(extra)
      if (extraEntries.filter(([key]) => key === 'authorization').length > 1) {
        this.cancelWithStatus(GrpcStatus.INTERNAL, '"authorization" metadata cannot have multiple values')
        return
      }
      this.open([...entries, ...extraEntries])
    }, (err: unknown) => {
      this.cancelWithStatus(GrpcStatus.UNAVAILABLE, `Failed to generate metadata: ${err instanceof Error ? err.message : String(err)}`)
    })
  }

  private open (metadata: readonly MetadataEntry[]): void {
    if (this.finalStatus !== null) return
    const stream = this.setup.session.openStream({ path: this.method, metadata, deadline: this.deadline }, this)
    this.stream = stream
    const early = this.early
    this.early = null
    if (early !== undefined && early !== null) for (const op of early) op(stream)
  }

  private withStream (op: (stream: ClientStream) => void): void {
    if (this.stream !== null) op(this.stream)
    else if (this.early !== null) (this.early ??= []).push(op)
  }

  sendMessageWithContext (context: MessageContext, message: Buffer): void {
    const done = context.callback
    if (this.finalStatus !== null) {
      // The call is over; grpc-js still expects every write callback.
      if (done !== undefined) process.nextTick(done)
      return
    }
    if (this.stream !== null) this.stream.send(message, done)
    else this.withStream(stream => { stream.send(message, done) })
  }

  halfClose (): void {
    if (this.stream !== null) this.stream.halfClose()
    else this.withStream(stream => { stream.halfClose() })
  }

  startRead (): void {
    if (this.statusReported) return
    this.readPending = true
    this.deliver()
  }

  cancelWithStatus (code: GrpcStatus, details: string): void {
    if (this.statusReported) return
    if (this.finalStatus !== null) {
      // An OK still waiting for its messages to be read (a unary call sent
      // two, and grpc-js reads one): the deadline or a cancel wins, as over
      // grpc-js's HTTP/2, where the status also waits for every read.
      if (this.finalStatus.code !== GrpcStatus.OK) return
      this.finalStatus = null
    }
    this.stream?.cancel()
    this.early = null
    this.finish({ code, details, metadata: new Metadata() })
  }

  getPeer (): string { return this.setup.peer }
  getCallNumber (): number { return this.number }
  setCredentials (credentials: CallCredentials): void { this.credentials = credentials }
  getAuthContext (): AuthContext | null { return null }

  // --- StreamHandler --------------------------------------------------------

  onHeaders (metadata: MetadataEntry[]): void {
    if (this.finalStatus === null) this.listener?.onReceiveMetadata(toGrpcMetadata(metadata))
  }

  onMessage (message: Uint8Array): void {
    if (this.finalStatus !== null) return
    const messages = this.messages
    if (this.readPending && (messages === null || messages.size === 0)) {
      // Read at once: grpc-js deserializes it now, so a view will do.
      this.readPending = false
      this.stream!.consumed()
      this.listener!.onReceiveMessage(asBuffer(message))
      return
    }
    (this.messages ??= new MessageQueue()).push(message)
    this.deliver()
  }

  onEnd (status: CallStatus): void {
    const grpcStatus: StatusObject = { code: status.code, details: status.details, metadata: toGrpcMetadata(status.metadata) }
    // grpc-js's client copies the status onto its error: a local failure's `cause` comes along.
    this.finish(status.cause === undefined ? grpcStatus : Object.assign(grpcStatus, { cause: status.cause }))
  }

  // -------------------------------------------------------------------------

  private finish (status: StatusObject): void {
    if (this.finalStatus !== null) return
    this.finalStatus = status
    // Like grpc-js: an error drops what the application has not read yet.
    if (status.code !== GrpcStatus.OK) this.messages = null
    this.deliver()
  }

  private deliver (): void {
    if (this.statusReported) return
    const messages = this.messages
    if (messages !== null && messages.size > 0 && this.readPending) {
      this.readPending = false
      const message = messages.shift()!
      this.stream!.consumed()
      this.listener!.onReceiveMessage(asBuffer(message))
    }
    // The status goes out once every message has been handed over (an OK
    // status never overtakes a message), without waiting for another read.
    if (this.finalStatus === null || this.statusReported || (this.messages?.size ?? 0) > 0) return
    this.statusReported = true
    // Only now: until the status is reported, the deadline may still end the call.
    if (this.stopDeadline !== null) this.stopDeadline()
    statuses.add(this)
  }

  /** @private On the tick after the status was settled. */
  reportStatus (): void {
    this.listener?.onReceiveStatus(this.finalStatus!)
    this.onEnded?.()
  }
}
