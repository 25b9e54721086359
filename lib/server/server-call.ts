/**
 * One call arriving on a WebSocket stream, as a grpc-js
 * ServerInterceptingCallInterface: the same duties grpc-js's own
 * BaseServerInterceptingCall has for an HTTP/2 stream (deserialize requests
 * one read at a time, serialize responses, enforce size limits, run the
 * deadline, send trailers-only or headers + trailers, notify cancellation
 * exactly once), with frames instead of HTTP/2.
 */
import { Metadata, status as GrpcStatus, type ServerInterceptingCallInterface } from '@grpc/grpc-js'
import {
  createMetricsRecorder, sendErrorDetails,
  type AuthContext, type ConnectionInfo, type RegisteredHandler, type ServerCallListener, type ServerStatus
} from '../grpc-internals.js'
import { fromGrpcMetadata } from '../grpc-metadata.js'
import { whenDeadlinePasses } from '../protocol/deadline.js'
import { SendWindow } from '../protocol/flow-control.js'
import { FrameFlags } from '../protocol/frame.js'
import { InboundMessages } from '../protocol/inbound.js'
import { OutboundMessages, type FrameSink } from '../protocol/outbound.js'
import { buildHeaders, buildTrailers, buildWindowUpdate } from '../protocol/payload.js'

/** What a call needs from the connection it arrived on. */
export interface CallHost {
  readonly sink: FrameSink
  readonly peer: string
  readonly host: string
  readonly authContext: AuthContext
  readonly connectionInfo: ConnectionInfo
  readonly maxSendMessageSize: number
  readonly maxReceiveMessageSize: number
  readonly initialWindowSize: number
  /** The stream is over: forget it. */
  streamClosed (call: WebSocketServerCall): void
}

const HALF_CLOSE = Symbol('half-close')

export class WebSocketServerCall implements ServerInterceptingCallInterface {
  cancelled = false
  /** The status sent, or null while none was (or the client cancelled). */
  sentCode: number | null = null
  private listener: ServerCallListener | null = null
  private readonly readQueue: unknown[] = []
  private isReadPending = false
  private receivedHalfClose = false
  private metadataSent = false
  private statusSent = false
  private cancelNotified = false
  private stopDeadline: (() => void) | null = null
  private readonly outbound: OutboundMessages
  private readonly inbound: InboundMessages

  constructor (
    private readonly conn: CallHost,
    readonly streamId: number,
    private readonly handler: RegisteredHandler,
    private readonly metadata: Metadata,
    private readonly deadline: number,
    clientWindow: number
  ) {
    this.outbound = new OutboundMessages(streamId, new SendWindow(clientWindow), conn.sink)
    this.inbound = new InboundMessages(conn.initialWindowSize, conn.maxReceiveMessageSize, increment => {
      conn.sink.write(buildWindowUpdate(streamId, increment))
    })
    if (deadline !== Infinity) {
      this.stopDeadline = whenDeadlinePasses(deadline, () => { this.resetStream(GrpcStatus.DEADLINE_EXCEEDED, 'Deadline exceeded') })
    }
  }

  /** The method, `/package.Service/Method`. */
  get path (): string { return this.handler.path }

  // --- ServerInterceptingCallInterface ---------------------------------

  start (listener: ServerCallListener): void {
    if (this.cancelled) return
    this.listener = listener
    listener.onReceiveMetadata(this.metadata)
  }

  sendMetadata (metadata: Metadata): void {
    if (this.cancelled || this.metadataSent) return
    this.metadataSent = true
    this.conn.sink.write(buildHeaders(this.streamId, fromGrpcMetadata(metadata)))
  }

  sendMessage (message: unknown, callback: () => void): void {
    if (this.cancelled) return
    let bytes: Buffer
    try {
      bytes = this.handler.serialize(message)
    } catch (err) {
      this.sendStatus({
        code: GrpcStatus.INTERNAL,
        details: sendErrorDetails ? `Error serializing response: ${errorMessage(err)}` : 'Error serializing response',
        metadata: null
      })
      return
    }
    const max = this.conn.maxSendMessageSize
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
    this.outbound.send(bytes, callback)
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
    // surrogate; a handler sees the same URIError over either transport.
    if (!status.details.isWellFormed()) throw new URIError('URI malformed')
    this.statusSent = true
    this.sentCode = status.code
    const frame = buildTrailers(this.streamId, {
      code: status.code,
      details: status.details,
      metadata: fromGrpcMetadata(status.metadata)
    })
    this.outbound.finish(frame, () => {
      this.notifyOnCancel()
    })
  }

  startRead (): void {
    if (this.cancelled) return
    this.isReadPending = true
    this.maybePushNextMessage()
  }

  getPeer (): string { return this.conn.peer }
  getDeadline (): number { return this.deadline }
  getHost (): string { return this.conn.host }
  getAuthContext (): AuthContext { return this.conn.authContext }
  getConnectionInfo (): ConnectionInfo { return this.conn.connectionInfo }
  getMetricsRecorder (): ReturnType<typeof createMetricsRecorder> {
    this.metricsRecorder ??= createMetricsRecorder()
    return this.metricsRecorder
  }

  private metricsRecorder: ReturnType<typeof createMetricsRecorder> | undefined

  // --- frames from the connection --------------------------------------

  onMessageFrame (payload: Uint8Array, flags: number): void {
    if (this.cancelled) return
    if (this.receivedHalfClose) {
      this.resetStream(GrpcStatus.INTERNAL, 'Protocol error: MESSAGE frame after HALF_CLOSE')
      return
    }
    const result = this.inbound.receive(payload, (flags & FrameFlags.MORE) !== 0)
    if (result === null) return
    if (!(result instanceof Uint8Array)) {
      this.resetStream(result.code, result.details)
      return
    }
    let request: unknown
    try {
      request = this.handler.deserialize(Buffer.from(result.buffer, result.byteOffset, result.byteLength))
    } catch (err) {
      this.sendStatus({
        code: GrpcStatus.INTERNAL,
        details: sendErrorDetails ? `Error deserializing request: ${errorMessage(err)}` : 'Error deserializing request'
      })
      return
    }
    this.readQueue.push(request)
    this.maybePushNextMessage()
  }

  onHalfCloseFrame (): void {
    if (this.cancelled || this.receivedHalfClose) return
    this.receivedHalfClose = true
    this.readQueue.push(HALF_CLOSE)
    this.maybePushNextMessage()
  }

  onWindowUpdate (increment: number): void {
    if (this.cancelled) return
    if (!this.outbound.grant(increment)) {
      this.resetStream(GrpcStatus.INTERNAL, `Protocol error: invalid WINDOW_UPDATE increment ${increment}`)
    }
  }

  /** The client cancelled, or the connection is gone. */
  abort (): void {
    this.outbound.clear()
    this.notifyOnCancel()
  }

  /** The socket can take more: send what credit allows. */
  resume (): void {
    if (!this.cancelled) this.outbound.pump()
  }

  // ---------------------------------------------------------------------

  /**
   * Ends the stream with a status now, dropping whatever is still queued
   * (messages, or trailers waiting behind them): the client no longer wants
   * them, and may never give the credit they wait for.
   */
  private resetStream (code: number, details: string): void {
    if (this.cancelled) return
    this.outbound.clear()
    this.statusSent = true
    this.sentCode = code
    this.conn.sink.write(buildTrailers(this.streamId, { code, details, metadata: [] }))
    this.notifyOnCancel()
  }

  private maybePushNextMessage (): void {
    const listener = this.listener
    if (listener === null || !this.isReadPending || this.readQueue.length === 0) return
    this.isReadPending = false
    const next = this.readQueue.shift()
    if (next === HALF_CLOSE) {
      listener.onReceiveHalfClose()
    } else {
      this.inbound.consumed()
      listener.onReceiveMessage(next)
    }
  }

  private notifyOnCancel (): void {
    if (this.cancelNotified) return
    this.cancelNotified = true
    this.cancelled = true
    if (this.stopDeadline !== null) this.stopDeadline()
    this.conn.streamClosed(this)
    process.nextTick(() => { this.listener?.onCancel() })
  }
}

function errorMessage (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}
