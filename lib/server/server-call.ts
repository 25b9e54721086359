/**
 * One call arriving on a grpc-ws.v1 stream, as a grpc-js
 * ServerInterceptingCallInterface. What every WebSocket call does for
 * grpc-js is in call-base.ts; this adds the stream's frames: per-stream flow
 * control both ways (WINDOW_UPDATE), messages split across MESSAGE frames,
 * HEADERS and TRAILERS frames.
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js'
import type { RegisteredHandler, ServerStatus } from '../grpc-internals.js'
import { fromGrpcMetadata } from '../grpc-metadata.js'
import { SendWindow } from '../protocol/flow-control.js'
import { FrameFlags } from '../protocol/frame.js'
import { InboundMessages } from '../protocol/inbound.js'
import { OutboundMessages, type FrameSink } from '../protocol/outbound.js'
import { buildHeaders, buildTrailers, buildWindowUpdate } from '../protocol/payload.js'
import { ServerCallBase, type CallEnvironment } from './call-base.js'

/** What a call needs from the connection it arrived on. */
export interface CallHost extends CallEnvironment {
  readonly sink: FrameSink
  readonly maxReceiveMessageSize: number
  readonly initialWindowSize: number
  /** The stream is over: forget it. */
  streamClosed (call: WebSocketServerCall): void
  /** The peer broke the protocol on a stream (after its reset: it may close the connection). */
  peerError (): void
}

export class WebSocketServerCall extends ServerCallBase {
  private readonly outbound: OutboundMessages
  private readonly inbound: InboundMessages

  constructor (
    private readonly conn: CallHost,
    readonly streamId: number,
    handler: RegisteredHandler,
    metadata: Metadata,
    deadline: number,
    clientWindow: number
  ) {
    super(conn, handler, metadata, deadline)
    this.outbound = new OutboundMessages(streamId, new SendWindow(clientWindow), conn.sink)
    this.inbound = new InboundMessages(conn.initialWindowSize, conn.maxReceiveMessageSize, increment => {
      conn.sink.write(buildWindowUpdate(streamId, increment))
    })
  }

  // --- the transport's side of ServerCallBase ----------------------------

  protected writeHeaders (metadata: Metadata): void {
    this.conn.sink.write(buildHeaders(this.streamId, fromGrpcMetadata(metadata)))
  }

  protected writeMessage (bytes: Buffer, done: () => void): void {
    this.outbound.send(bytes, done)
  }

  protected writeStatus (status: ServerStatus, sent: () => void): void {
    const frame = buildTrailers(this.streamId, {
      code: status.code,
      details: status.details,
      metadata: fromGrpcMetadata(status.metadata)
    })
    this.outbound.finish(frame, sent)
  }

  /**
   * Drops whatever is still queued (messages, or trailers waiting behind
   * them): the client no longer wants them, and may never give the credit
   * they wait for.
   */
  protected writeReset (code: number, details: string): void {
    this.outbound.clear()
    this.conn.sink.write(buildTrailers(this.streamId, { code, details, metadata: [] }))
  }

  protected ended (): void {
    this.conn.streamClosed(this)
  }

  protected messageTaken (): void {
    this.inbound.consumed()
  }

  // --- frames from the connection --------------------------------------

  onMessageFrame (payload: Uint8Array, flags: number): void {
    if (this.cancelled) return
    if (this.halfClosed) {
      this.resetStream(GrpcStatus.INTERNAL, 'Protocol error: MESSAGE frame after HALF_CLOSE')
      this.conn.peerError()
      return
    }
    const result = this.inbound.receive(payload, (flags & FrameFlags.MORE) !== 0)
    if (result === null) return
    if (!(result instanceof Uint8Array)) {
      this.resetStream(result.code, result.details)
      if (result.peerFault === true) this.conn.peerError()
      return
    }
    this.receiveMessage(result)
  }

  onHalfCloseFrame (): void {
    if (this.cancelled) return
    this.receiveHalfClose()
  }

  onWindowUpdate (increment: number): void {
    if (this.cancelled) return
    if (!this.outbound.grant(increment)) {
      this.resetStream(GrpcStatus.INTERNAL, `Protocol error: invalid WINDOW_UPDATE increment ${increment}`)
      this.conn.peerError()
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
}
