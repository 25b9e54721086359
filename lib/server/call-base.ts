/**
 * What every WebSocket server call does for grpc-js, whatever its wire: the
 * duties grpc-js's own BaseServerInterceptingCall has for an HTTP/2 stream
 * (deserialize requests one read at a time, serialize responses, enforce the
 * send size limit, run the deadline, send metadata before the first message,
 * percent-encodable status details, notify cancellation exactly once).
 *
 * A transport subclass says how headers, messages and the status travel
 * (grpc-ws.v1 frames in server-call.ts, gRPC-web frames in
 * grpc-websockets/call.ts) and feeds request messages in.
 */
import { Metadata, status as GrpcStatus, type ServerInterceptingCallInterface } from '@grpc/grpc-js'
import {
  createMetricsRecorder, sendErrorDetails,
  type AuthContext, type ConnectionInfo, type RegisteredHandler, type ServerCallListener, type ServerStatus
} from '../grpc-internals.js'
import { MessageQueue } from '../protocol/byte-queue.js'
import { whenDeadlinePasses } from '../protocol/deadline.js'
import { TurnQueue } from '../protocol/turn-queue.js'

/** Who is calling, and the send limit: what a call reports to grpc-js. */
export interface CallEnvironment {
  readonly peer: string
  readonly host: string
  readonly authContext: AuthContext
  readonly connectionInfo: ConnectionInfo
  /** Largest response message in bytes; -1 for no limit. */
  readonly maxSendMessageSize: number
}

// Calls that ended in this turn, told so in one process.nextTick for all of
// them (a nextTick per call cost about 5 % of the server's time under load).
const ending = new TurnQueue<ServerCallBase>(process.nextTick, call => { call.tellCancelled() })

export abstract class ServerCallBase implements ServerInterceptingCallInterface {
  cancelled = false
  /** The status sent, or null while none was (or the client cancelled). */
  sentCode: number | null = null
  private listener: ServerCallListener | null = null
  // Request messages the handler has not read yet, as bytes: deserialized
  // when read, so unread messages cost their bytes, not an object each.
  private readonly readQueue = new MessageQueue()
  private isReadPending = false
  private receivedHalfClose = false
  private halfCloseDelivered = false
  private metadataSent = false
  private statusSent = false
  private cancelNotified = false
  private stopDeadline: (() => void) | null = null
  private metricsRecorder: ReturnType<typeof createMetricsRecorder> | undefined

  constructor (
    private readonly environment: CallEnvironment,
    protected readonly handler: RegisteredHandler,
    private readonly metadata: Metadata,
    private readonly deadline: number
  ) {
    if (deadline !== Infinity) {
      // Fires asynchronously, so a subclass constructor has run by then.
      this.stopDeadline = whenDeadlinePasses(deadline, () => { this.resetStream(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded') })
    }
  }

  /** The method, `/package.Service/Method`. */
  get path (): string { return this.handler.path }

  // --- what a transport provides ---------------------------------------

  /** Sends the response headers. */
  protected abstract writeHeaders (metadata: Metadata): void
  /** Sends one serialized response message; `done` runs once the transport can take the next. */
  protected abstract writeMessage (bytes: Buffer, done: () => void): void
  /** Sends the status after every message already written; `sent` runs once it has gone to the socket. */
  protected abstract writeStatus (status: ServerStatus, sent: () => void): void
  /** Drops any output still queued and sends this status at once. */
  protected abstract writeReset (code: number, details: string): void
  /** The call is over (status sent, reset, or cancelled): the transport forgets it. */
  protected abstract ended (): void
  /** The handler took a request message of `size` bytes (a transport may return receive credit, or read on). */
  protected abstract messageTaken (size: number): void

  // --- ServerInterceptingCallInterface ---------------------------------

  start (listener: ServerCallListener): void {
    if (this.cancelled) return
    this.listener = listener
    try {
      listener.onReceiveMetadata(this.metadata)
    } catch (err) {
      this.listenerThrew(err)
    }
  }

  sendMetadata (metadata: Metadata): void {
    if (this.cancelled || this.metadataSent) return
    this.metadataSent = true
    this.writeHeaders(metadata)
  }

  sendMessage (message: unknown, callback: () => void): void {
    if (this.cancelled) return
    let bytes: Buffer
    try {
      bytes = this.handler.serialize(message)
    } catch (err) {
      this.sendStatus({
        code: GrpcStatus.INTERNAL,
        details: sendErrorDetails ? `Error serializing response: ${err instanceof Error ? err.message : String(err)}` : 'Error serializing response',
        metadata: null
      })
      return
    }
    const max = this.environment.maxSendMessageSize
    if (max !== -1 && bytes.byteLength > max) {
      // grpc-js counts its 5-byte message prefix in this figure; so do we.
      this.sendStatus({
        code: GrpcStatus.RESOURCE_EXHAUSTED,
        details: `Sent message larger than max (${bytes.byteLength + 5} vs. ${max})`,
        metadata: null
      })
      return
    }
    if (!this.metadataSent) this.sendMetadata(new Metadata())
    this.writeMessage(bytes, callback)
  }

  sendStatus (status: ServerStatus): void {
    if (this.cancelled) return
    if (this.statusSent) {
      // As grpc-js: a second status while the first waits behind queued
      // messages ends the call at once.
      this.notifyOnCancel()
      return
    }
    // grpc-js percent-encodes details with encodeURI, which throws on a lone
    // surrogate; a handler sees the same URIError over any transport.
    if (!status.details.isWellFormed()) throw new URIError('URI malformed')
    this.statusSent = true
    this.sentCode = status.code
    this.writeStatus(status, () => { this.notifyOnCancel() })
  }

  startRead (): void {
    if (this.cancelled) return
    this.isReadPending = true
    this.maybePushNextMessage()
  }

  getPeer (): string { return this.environment.peer }
  getDeadline (): number { return this.deadline }
  getHost (): string { return this.environment.host }
  getAuthContext (): AuthContext { return this.environment.authContext }
  getConnectionInfo (): ConnectionInfo { return this.environment.connectionInfo }
  getMetricsRecorder (): ReturnType<typeof createMetricsRecorder> {
    this.metricsRecorder ??= createMetricsRecorder()
    return this.metricsRecorder
  }

  // --- for transports ----------------------------------------------------

  /** True once the client said it sends no more messages. */
  protected get halfClosed (): boolean { return this.receivedHalfClose }

  /**
   * A whole request message arrived. The handler gets it, deserialized, at
   * its next read; until then it is kept as bytes (a copy: `bytes` may be a
   * view of the socket's buffer). False when the call has ended meanwhile
   * (it failed to deserialize, or the handler's listener threw).
   */
  protected receiveMessage (bytes: Uint8Array): boolean {
    if (this.cancelled || this.statusSent) return false
    if (this.listener !== null && this.isReadPending && this.readQueue.size === 0) {
      // Read at once: no copy.
      this.deliver(bytes)
    } else {
      this.readQueue.push(bytes)
    }
    return !this.cancelled && !this.statusSent
  }

  /** The client sends no more messages (repeats are ignored). */
  protected receiveHalfClose (): void {
    if (this.receivedHalfClose) return
    this.receivedHalfClose = true
    this.maybePushNextMessage()
  }

  /**
   * Ends the call with a status now, dropping whatever output is still
   * queued: the client no longer wants it, or the call broke a rule.
   */
  protected resetStream (code: number, details: string): void {
    if (this.cancelled) return
    this.statusSent = true
    this.sentCode = code
    this.writeReset(code, details)
    this.notifyOnCancel()
  }

  /**
   * Ends the call with `code` now, dropping whatever output is still queued,
   * as a deadline does (a topic subscriber over its queue bound: lib/fanout/).
   */
  abortWithStatus (code: number, details: string): void {
    this.resetStream(code, details)
  }

  /** Ends the call; the handler sees 'cancelled' (after a status too, as with grpc-js). Once only. */
  protected notifyOnCancel (): void {
    if (this.cancelNotified) return
    this.cancelNotified = true
    this.cancelled = true
    this.readQueue.clear()
    if (this.stopDeadline !== null) this.stopDeadline()
    this.ended()
    ending.add(this)
  }

  /** @private Called on the tick after the call ended. */
  tellCancelled (): void {
    this.listener?.onCancel()
  }

  private maybePushNextMessage (): void {
    const listener = this.listener
    if (listener === null || !this.isReadPending) return
    const next = this.readQueue.shift()
    if (next !== undefined) {
      this.deliver(next)
    } else if (this.receivedHalfClose && !this.halfCloseDelivered) {
      this.halfCloseDelivered = true
      this.isReadPending = false
      try {
        listener.onReceiveHalfClose()
      } catch (err) {
        this.listenerThrew(err)
      }
    }
  }

  /** Hands one message to the handler's pending read. */
  private deliver (bytes: Uint8Array): void {
    this.isReadPending = false
    let request: unknown
    try {
      request = this.handler.deserialize(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    } catch (err) {
      this.sendStatus({
        code: GrpcStatus.INTERNAL,
        details: sendErrorDetails ? `Error deserializing request: ${err instanceof Error ? err.message : String(err)}` : 'Error deserializing request'
      })
      return
    }
    this.messageTaken(bytes.byteLength)
    try {
      this.listener!.onReceiveMessage(request)
    } catch (err) {
      this.listenerThrew(err)
    }
  }

  /**
   * An interceptor's or the handler's listener threw (grpc-js over HTTP/2
   * leaves such a throw unhandled and the call hanging): this call ends with
   * INTERNAL, and nothing else on the connection notices.
   */
  private listenerThrew (err: unknown): void {
    const message = err instanceof Error ? err.message : String(err)
    this.resetStream(GrpcStatus.INTERNAL, sendErrorDetails ? `Server call listener threw error ${message}` : 'Server call listener threw error')
  }
}
