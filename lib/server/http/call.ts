/**
 * One call over plain HTTP (gRPC-Web or Connect), as a grpc-js
 * ServerInterceptingCallInterface: ../call-base.ts does what grpc-js does
 * for a call; this reads the request body into messages and writes the
 * response, and a protocol subclass says how messages, headers and the
 * status look on the wire.
 *
 * Bounds. Reading: request messages queued for the handler cost their
 * length plus 5; at `readHighWaterMark` the body is no longer read (TCP
 * holds the client back) until the handler takes one, so a call holds that,
 * one message being assembled (at most maxReceiveMessageSize) and one chunk
 * of the body. A body that sends nothing for `bodyTimeout` ms, or that takes
 * longer than that in all for a method whose request is one message, ends
 * the call. Writing: a message waits for the response's 'drain' once the
 * response buffers more than its high-water mark, so a client that stops
 * reading makes the handler's write() return false.
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { RegisteredHandler } from '../../grpc-internals.js'
import { ServerCallBase, type CallEnvironment } from '../call-base.js'
import { CallError, MessageReassembler, PREFIX_SIZE } from '../grpc-websockets/frames.js'
import { Base64Decoder, Base64Error } from './base64.js'

export interface HttpCallLimits {
  /** Largest request message, in bytes; -1 for no limit. */
  maxReceiveMessageSize: number
  /** Cost (bytes + 5 per message) of unread request messages at which the body is no longer read. */
  readHighWaterMark: number
  /** ms the body may send nothing (and, for a one-message request, take in all); 0 for no limit. */
  bodyTimeout: number
}

/** Turns one request message into the binary the handler deserializes (JSON to binary); throws CallError. */
export type RequestTranscoder = (bytes: Uint8Array) => Uint8Array

export interface HttpExchange {
  req: IncomingMessage
  res: ServerResponse
  /** The request body (Fastify's payload stream: the raw request, or what preParsing hooks made of it). */
  body: Readable
  env: CallEnvironment
  /** The call is over. */
  onEnded: () => void
}

export interface RequestShape {
  /** Length-prefixed messages (gRPC-Web, Connect streaming), or the whole body is one message (Connect unary). */
  enveloped: boolean
  /** The body is base64 text (gRPC-Web text). */
  text: boolean
  /** Request messages are JSON, turned into binary here. */
  transcode?: RequestTranscoder
}

export abstract class HttpCall extends ServerCallBase {
  protected readonly req: IncomingMessage
  protected readonly res: ServerResponse
  private readonly body: Readable
  private readonly reassembler: MessageReassembler
  private readonly base64: Base64Decoder | null
  // The whole body, for a request that is one unenveloped message.
  private whole: Buffer[] | null = null
  private wholeSize = 0
  private unreadCost = 0
  private readingPaused = false
  private bodyDone = false
  private bodyTimer: ReturnType<typeof setTimeout> | null = null
  private bodyTotalTimer: ReturnType<typeof setTimeout> | null = null
  private over = false
  private readonly onEnded: () => void

  constructor (
    exchange: HttpExchange,
    handler: RegisteredHandler,
    metadata: Metadata,
    deadline: number,
    private readonly limits: HttpCallLimits,
    private readonly shape: RequestShape
  ) {
    super(exchange.env, handler, metadata, deadline)
    this.req = exchange.req
    this.res = exchange.res
    this.body = exchange.body
    this.onEnded = exchange.onEnded
    this.reassembler = new MessageReassembler(limits.maxReceiveMessageSize)
    this.base64 = shape.text ? new Base64Decoder() : null
    if (!shape.enveloped) this.whole = []
    this.body.on('data', this.onData)
    this.body.on('end', this.onBodyEnd)
    this.body.on('error', this.onGone)
    this.res.on('close', this.onResponseClose)
    if (limits.bodyTimeout > 0) {
      this.armBodyTimer()
      if (handler.type === 'unary' || handler.type === 'serverStream') {
        this.bodyTotalTimer = setTimeout(() => { this.bodyTooSlow('in all') }, limits.bodyTimeout)
      }
    }
  }

  /** The server is shutting down and the grace period is over. */
  shutdown (): void {
    this.resetStream(GrpcStatus.UNAVAILABLE, 'Server shutting down')
  }

  // --- writing, for the protocols -------------------------------------------

  /** Writes response bytes; `done` runs once the response can take more. */
  protected output (bytes: Uint8Array, done?: () => void): void {
    const res = this.res
    if (res.writableEnded || res.destroyed === true) return
    const room = res.write(bytes)
    if (done === undefined) return
    if (room) queueMicrotask(done)
    else res.once('drain', done)
  }

  /** Ends the response with these last bytes; `sent` runs once they have gone out. */
  protected finish (bytes: Uint8Array | null, sent?: () => void): void {
    const res = this.res
    if (res.writableEnded || res.destroyed) {
      sent?.()
      return
    }
    if (!this.bodyDone && !this.req.complete && !res.headersSent && this.req.httpVersionMajor < 2) {
      // The rest of the body will not be read: the connection cannot carry
      // another request after it (an HTTP/2 stream just ends). A body Node
      // has wholly received (a GET's, which is none) is dropped by Node.
      res.setHeader('connection', 'close')
    }
    if (bytes === null) res.end(sent)
    else res.end(bytes, sent)
  }

  // --- ServerCallBase ---------------------------------------------------

  protected ended (): void {
    this.over = true
    this.stopBodyTimers()
    this.body.off('data', this.onData)
    this.whole = null
    if (!this.bodyDone) {
      // Whatever else the client sends is read and dropped; a body that
      // never ends goes with the connection, which finish() marked for close.
      this.body.resume()
      this.res.once('finish', () => {
        // req.destroy(): the socket over HTTP/1.1, the stream alone over HTTP/2.
        if (!this.bodyDone) setTimeout(() => { this.req.destroy() }, 1000).unref()
      })
    }
    this.onEnded()
  }

  protected messageTaken (size: number): void {
    if (!this.shape.enveloped) return
    this.unreadCost -= size + PREFIX_SIZE
    if (this.readingPaused && this.unreadCost < this.limits.readHighWaterMark) {
      this.readingPaused = false
      this.body.resume()
    }
  }

  // --- reading ----------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    if (this.over) return
    this.armBodyTimer()
    try {
      const bytes = this.base64 === null ? chunk : this.base64.push(chunk)
      if (this.whole !== null) {
        this.wholeSize += bytes.byteLength
        const max = this.limits.maxReceiveMessageSize
        if (max !== -1 && this.wholeSize > max) throw new CallError(GrpcStatus.RESOURCE_EXHAUSTED, `Received message larger than max (${this.wholeSize} vs ${max})`)
        this.whole.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
        return
      }
      for (const message of this.reassembler.push(bytes)) {
        this.unreadCost += message.byteLength + PREFIX_SIZE
        if (!this.receiveMessage(this.transcode(message))) return
      }
    } catch (err) {
      this.readFailed(err)
      return
    }
    if (!this.readingPaused && !this.over && this.unreadCost >= this.limits.readHighWaterMark) {
      this.readingPaused = true
      this.body.pause()
    }
  }

  private readonly onBodyEnd = (): void => {
    this.bodyDone = true
    this.stopBodyTimers()
    if (this.over) return
    try {
      this.base64?.end()
      if (this.whole !== null) {
        const message = this.whole.length === 1 ? this.whole[0]! : Buffer.concat(this.whole, this.wholeSize)
        this.whole = null
        if (!this.receiveMessage(this.transcode(message))) return
      } else if (this.reassembler.buffered > 0) {
        throw new CallError(GrpcStatus.INTERNAL, `Protocol error: the request body ended inside a message (${this.reassembler.buffered} bytes of it received)`)
      }
    } catch (err) {
      this.readFailed(err)
      return
    }
    this.receiveHalfClose()
  }

  private transcode (message: Uint8Array): Uint8Array {
    return this.shape.transcode === undefined ? message : this.shape.transcode(message)
  }

  private readFailed (err: unknown): void {
    if (err instanceof CallError) this.resetStream(err.code, err.message)
    else if (err instanceof Base64Error) this.resetStream(GrpcStatus.INTERNAL, `Protocol error: ${err.message}`)
    else this.resetStream(GrpcStatus.INTERNAL, `Internal error: ${(err as Error).message}`)
  }

  private armBodyTimer (): void {
    if (this.limits.bodyTimeout === 0 || this.bodyDone) return
    if (this.bodyTimer !== null) {
      this.bodyTimer.refresh()
      return
    }
    this.bodyTimer = setTimeout(() => { this.bodyTooSlow('without a byte') }, this.limits.bodyTimeout)
  }

  private stopBodyTimers (): void {
    if (this.bodyTimer !== null) clearTimeout(this.bodyTimer)
    if (this.bodyTotalTimer !== null) clearTimeout(this.bodyTotalTimer)
    this.bodyTimer = this.bodyTotalTimer = null
  }

  private bodyTooSlow (how: string): void {
    this.resetStream(GrpcStatus.DEADLINE_EXCEEDED, `The request body took more than ${this.limits.bodyTimeout} ms ${how} (bodyTimeout)`)
  }

  // The client went away (or its body broke) before the response ended:
  // the handler sees 'cancelled'.
  private readonly onGone = (): void => {
    this.notifyOnCancel()
  }

  // After a status went out this changes nothing (the call already ended).
  // Not writableFinished: HTTP/2's compatibility response reports a reset
  // stream as finished.
  private readonly onResponseClose = (): void => {
    this.notifyOnCancel()
  }
}
