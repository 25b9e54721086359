/**
 * The one call of a `grpc-websockets` socket, as a grpc-js
 * ServerInterceptingCallInterface. What every WebSocket call does for
 * grpc-js is in ../call-base.ts; this adds the gRPC-web frames: request
 * bytes reassembled into messages, a metadata frame for the headers,
 * message frames, and one metadata frame for the status.
 *
 * The protocol has no flow control of its own. Sending, `done` waits while
 * the socket buffers more than socketHighWaterMark; receiving, the socket
 * stops being read while the handler has `readHighWaterMark` bytes of
 * messages unread (TCP then holds the client back).
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js'
import type { RegisteredHandler, ServerStatus } from '../../grpc-internals.js'
import { fromGrpcMetadata } from '../../grpc-metadata.js'
import { ServerCallBase, type CallEnvironment } from '../call-base.js'
import { CallError, MessageReassembler, encodeHeadersFrame, encodeMessageFrame, encodeStatusFrame } from './frames.js'

/** What the call needs from its socket. */
export interface CallSocket extends CallEnvironment {
  /** Sends one frame; `done` runs (asynchronously) once the socket can take more. */
  send (frame: Uint8Array, done?: () => void): void
  /** Stops reading request bytes from the socket. */
  pauseReading (): void
  /** Reads request bytes again. */
  resumeReading (): void
  /** The call is over (its status has gone to the socket, or the client left). */
  callEnded (call: GrpcWebSocketsCall): void
}

export interface CallReadLimits {
  /** Largest request message, in bytes; -1 for no limit. */
  maxReceiveMessageSize: number
  /** Bytes of unread request messages at which the socket stops being read. */
  readHighWaterMark: number
}

export class GrpcWebSocketsCall extends ServerCallBase {
  private readonly reassembler: MessageReassembler
  // Sizes of the messages queued for the handler and not yet taken.
  private readonly unread: number[] = []
  private unreadBytes = 0
  private readingPaused = false

  constructor (
    private readonly socket: CallSocket,
    handler: RegisteredHandler,
    metadata: Metadata,
    deadline: number,
    private readonly limits: CallReadLimits
  ) {
    super(socket, handler, metadata, deadline)
    this.reassembler = new MessageReassembler(limits.maxReceiveMessageSize)
  }

  // --- the transport's side of ServerCallBase ----------------------------

  protected writeHeaders (metadata: Metadata): void {
    this.socket.send(encodeHeadersFrame(fromGrpcMetadata(metadata)))
  }

  protected writeMessage (bytes: Buffer, done: () => void): void {
    this.socket.send(encodeMessageFrame(bytes), done)
  }

  protected writeStatus (status: ServerStatus, sent: () => void): void {
    this.socket.send(encodeStatusFrame({ code: status.code, details: status.details, metadata: fromGrpcMetadata(status.metadata) }), sent)
  }

  // Messages already handed to the socket cannot be taken back; the status
  // follows them.
  protected writeReset (code: number, details: string): void {
    this.socket.send(encodeStatusFrame({ code, details, metadata: [] }))
  }

  protected ended (): void {
    if (this.readingPaused) {
      // Read on, so the socket's close is seen.
      this.readingPaused = false
      this.socket.resumeReading()
    }
    this.socket.callEnded(this)
  }

  protected messageTaken (): void {
    this.unreadBytes -= this.unread.shift() ?? 0
    if (this.readingPaused && this.unreadBytes < this.limits.readHighWaterMark) {
      this.readingPaused = false
      this.socket.resumeReading()
    }
  }

  // --- from the socket ---------------------------------------------------

  /** Request bytes (a data message without its control byte). */
  onData (bytes: Uint8Array): void {
    if (this.cancelled) return
    if (this.halfClosed) {
      this.resetStream(GrpcStatus.INTERNAL, 'Protocol error: request data after the end of the request stream')
      return
    }
    let messages: Uint8Array[]
    try {
      messages = this.reassembler.push(bytes)
    } catch (err) {
      if (!(err instanceof CallError)) throw err
      this.resetStream(err.code, err.message)
      return
    }
    for (const message of messages) {
      if (this.cancelled) return
      // Counted before it is queued: a pending read takes it at once.
      this.unread.push(message.byteLength)
      this.unreadBytes += message.byteLength
      if (!this.receiveMessage(message)) return
    }
    if (!this.readingPaused && this.unreadBytes >= this.limits.readHighWaterMark) {
      this.readingPaused = true
      this.socket.pauseReading()
    }
  }

  /** The client's end-of-stream message. */
  onEnd (): void {
    if (this.cancelled) return
    if (this.reassembler.buffered > 0) {
      this.resetStream(GrpcStatus.INTERNAL, `Protocol error: the request stream ended inside a message (${this.reassembler.buffered} bytes of it received)`)
      return
    }
    this.receiveHalfClose()
  }

  /** Ends the call with this status now (a protocol error on the socket). */
  fail (code: number, details: string): void {
    this.resetStream(code, details)
  }

  /** The client closed the socket, or it failed: the handler sees 'cancelled'. */
  abort (): void {
    this.notifyOnCancel()
  }
}
