/**
 * The one call of a `grpc-websockets` socket, as a grpc-js
 * ServerInterceptingCallInterface. What every WebSocket call does for
 * grpc-js is in ../call-base.ts; this adds the gRPC-web frames: request
 * bytes reassembled into messages, a metadata frame for the headers,
 * message frames, and one metadata frame for the status.
 *
 * The protocol has no flow control of its own. Sending, `done` waits while
 * the socket buffers more than socketHighWaterMark. Receiving, each message
 * queued for the handler costs its length plus its 5-byte prefix (so empty
 * ones cost too); once the handler has `readHighWaterMark` of it unread,
 * parsing stops, the rest of the WebSocket message is kept as it is, and
 * the socket stops being read (TCP then holds the client back) until the
 * handler takes a message. What a call holds is thus bounded whatever the
 * input: readHighWaterMark, one message being assembled, and the unparsed
 * request bytes (the rest of one WebSocket message, plus what ws had
 * already read from the socket when reading paused).
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js'
import type { RegisteredHandler, ServerStatus } from '../../grpc-internals.js'
import { fromGrpcMetadata } from '../../grpc-metadata.js'
import { ServerCallBase, type CallEnvironment } from '../call-base.js'
import { CallError, MessageReassembler, PREFIX_SIZE, encodeHeadersFrame, encodeMessageFrame, encodeStatusFrame } from './frames.js'

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
  /** Cost (bytes + 5 per message) of unread request messages at which parsing and reading stop. */
  readHighWaterMark: number
}

export class GrpcWebSocketsCall extends ServerCallBase {
  private readonly reassembler: MessageReassembler
  // Cost of the messages queued for the handler and not yet taken.
  private unreadCost = 0
  private readingPaused = false
  // Request bytes not parsed yet, from `backlogAt` to `backlogEnd`: a view
  // of the WebSocket message parsing stopped in, or (when ws delivers more
  // messages it had already read) an owned buffer they are appended to.
  private backlog: Uint8Array | null = null
  private backlogAt = 0
  private backlogEnd = 0
  private backlogOwned = false
  // The end-of-stream message came while a backlog was waiting.
  private endPending = false
  private draining = false

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
    this.dropBacklog()
    if (this.readingPaused) {
      // Read on, so the socket's close is seen.
      this.readingPaused = false
      this.socket.resumeReading()
    }
    this.socket.callEnded(this)
  }

  protected messageTaken (size: number): void {
    this.unreadCost -= size + PREFIX_SIZE
    // Taken during drain() (a read was pending): drain() goes on by itself.
    if (this.draining) return
    if (this.backlog !== null) this.drain()
    this.maybeResume()
  }

  // --- from the socket ---------------------------------------------------

  /** Request bytes (a data message without its control byte). */
  onData (bytes: Uint8Array): void {
    if (this.cancelled) return
    if (this.halfClosed || this.endPending) {
      this.resetStream(GrpcStatus.INTERNAL, 'Protocol error: request data after the end of the request stream')
      return
    }
    if (this.backlog !== null) {
      // Parsing has stopped, but ws still hands over what it had already
      // read from the socket before it paused: kept, in one buffer.
      this.appendToBacklog(bytes)
      return
    }
    this.backlog = bytes
    this.backlogAt = 0
    this.backlogEnd = bytes.byteLength
    this.backlogOwned = false
    this.drain()
    if (!this.readingPaused && !this.cancelled && (this.backlog !== null || this.unreadCost >= this.limits.readHighWaterMark)) {
      this.readingPaused = true
      this.socket.pauseReading()
    }
  }

  /** The client's end-of-stream message. */
  onEnd (): void {
    if (this.cancelled) return
    if (this.backlog !== null) {
      // After the bytes still waiting to be parsed.
      this.endPending = true
      return
    }
    this.receiveEnd()
  }

  /** Bytes held unparsed (tests and diagnostics). */
  get backlogBytes (): number {
    return this.backlog === null ? 0 : this.backlogEnd - this.backlogAt
  }

  /** Bytes held by the reassembler for the message being assembled (tests and diagnostics). */
  get assemblingBytes (): number {
    return this.reassembler.held
  }

  /** Parses the backlog into messages for the handler while it has less than readHighWaterMark unread. */
  private drain (): void {
    this.draining = true
    try {
      while (this.backlog !== null && this.unreadCost < this.limits.readHighWaterMark) {
        if (this.cancelled) return
        let message: Uint8Array | null
        try {
          const chunk = this.backlogEnd === this.backlog.byteLength ? this.backlog : this.backlog.subarray(0, this.backlogEnd)
          this.backlogAt = this.reassembler.read(chunk, this.backlogAt)
          message = this.reassembler.message
        } catch (err) {
          if (!(err instanceof CallError)) throw err
          this.resetStream(err.code, err.message)
          return
        }
        if (this.backlogAt === this.backlogEnd) this.dropBacklog()
        if (message !== null) {
          // Counted before it is queued: a pending read takes it at once.
          this.unreadCost += message.byteLength + PREFIX_SIZE
          if (!this.receiveMessage(message)) return
        }
      }
    } finally {
      this.draining = false
    }
    if (this.backlog === null && this.endPending && !this.cancelled) {
      this.endPending = false
      this.receiveEnd()
    }
  }

  private receiveEnd (): void {
    if (this.reassembler.buffered > 0) {
      this.resetStream(GrpcStatus.INTERNAL, `Protocol error: the request stream ended inside a message (${this.reassembler.buffered} bytes of it received)`)
      return
    }
    this.receiveHalfClose()
  }

  private appendToBacklog (bytes: Uint8Array): void {
    const backlog = this.backlog!
    const waiting = this.backlogEnd - this.backlogAt
    const needed = waiting + bytes.byteLength
    if (!this.backlogOwned || needed > backlog.byteLength) {
      // Copied into a buffer of our own, doubling: the backlog is at most
      // what ws had read, and costs its bytes, not a piece each.
      const grown = new Uint8Array(Math.max(needed, 2 * waiting, 1024))
      grown.set(backlog.subarray(this.backlogAt, this.backlogEnd))
      this.backlog = grown
      this.backlogAt = 0
      this.backlogEnd = waiting
      this.backlogOwned = true
    } else if (this.backlogEnd + bytes.byteLength > backlog.byteLength) {
      backlog.copyWithin(0, this.backlogAt, this.backlogEnd)
      this.backlogAt = 0
      this.backlogEnd = waiting
    }
    this.backlog!.set(bytes, this.backlogEnd)
    this.backlogEnd += bytes.byteLength
  }

  private dropBacklog (): void {
    this.backlog = null
    this.backlogAt = this.backlogEnd = 0
    this.backlogOwned = false
  }

  private maybeResume (): void {
    if (this.readingPaused && this.backlog === null && this.unreadCost < this.limits.readHighWaterMark) {
      this.readingPaused = false
      this.socket.resumeReading()
    }
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
