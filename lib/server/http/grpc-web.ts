/**
 * gRPC-Web over HTTP/1.1 or HTTP/2 (grpc/grpc doc/PROTOCOL-WEB.md): the
 * request body is gRPC length-prefixed messages (base64 text for
 * `application/grpc-web-text`); the response is HTTP 200, the response
 * metadata as headers, message frames, and the status as a last frame with
 * flag 0x80 holding `grpc-status`, `grpc-message` and the trailers as
 * `key: value` lines. Text requests get a text response: each write is the
 * base64 of whole frames, so padding may fall between frames, as the spec
 * allows.
 *
 * A call whose response is one message (unary, client streaming) is
 * written at once when its status is known: one buffer, with a
 * Content-Length, instead of three chunks.
 */
import type { Metadata } from '@grpc/grpc-js'
import type { RegisteredHandler, ServerStatus } from '../../grpc-internals.js'
import { fromGrpcMetadata } from '../../grpc-metadata.js'
import { encodeMessageFrame, encodeStatusFrame } from '../grpc-websockets/frames.js'
import { HttpCall, type HttpCallLimits, type HttpExchange } from './call.js'
import { headersOf } from './request.js'

/** What a Content-Type names, if it is gRPC-Web: text or binary, and whether the codec is one we serve. */
export function grpcWebType (media: string): { text: boolean, proto: boolean } | null {
  const match = /^application\/grpc-web(-text)?(?:\+([a-z0-9.-]+))?$/.exec(media)
  if (match === null) return null
  return { text: match[1] !== undefined, proto: match[2] === undefined || match[2] === 'proto' }
}

export class GrpcWebCall extends HttpCall {
  private readonly single: boolean
  private readonly contentType: string
  private headers: Record<string, string | string[]> | null = null
  private held: Uint8Array | null = null

  constructor (exchange: HttpExchange, handler: RegisteredHandler, metadata: Metadata, deadline: number, limits: HttpCallLimits, private readonly text: boolean) {
    super(exchange, handler, metadata, deadline, limits, { enveloped: true, text })
    this.single = handler.type === 'unary' || handler.type === 'clientStream'
    this.contentType = text ? 'application/grpc-web-text+proto' : 'application/grpc-web+proto'
  }

  protected writeHeaders (metadata: Metadata): void {
    this.headers = headersOf(fromGrpcMetadata(metadata))
    if (this.single) return
    this.commit()
    // Streams show their headers at once, as over HTTP/2.
    this.res.flushHeaders()
  }

  protected writeMessage (bytes: Buffer, done: () => void): void {
    const frame = encodeMessageFrame(bytes)
    if (this.single) {
      this.held = frame
      queueMicrotask(done)
      return
    }
    this.output(this.encode(frame), done)
  }

  protected writeStatus (status: ServerStatus, sent: () => void): void {
    const trailer = encodeStatusFrame({ code: status.code, details: status.details, metadata: fromGrpcMetadata(status.metadata) })
    this.end(trailer, sent)
  }

  protected writeReset (code: number, details: string): void {
    // A held message is dropped; frames already written stay written.
    this.held = null
    this.end(encodeStatusFrame({ code, details, metadata: [] }))
  }

  private end (trailer: Uint8Array, sent?: () => void): void {
    let body = trailer
    if (this.held !== null) {
      body = Buffer.concat([this.held, trailer])
      this.held = null
    }
    const bytes = this.encode(body)
    if (!this.res.headersSent) {
      this.commit()
      this.res.setHeader('content-length', bytes.byteLength)
    }
    this.finish(bytes, sent)
  }

  private commit (): void {
    const res = this.res
    if (res.headersSent || res.destroyed) return
    const headers = this.headers ?? {}
    for (const key in headers) res.setHeader(key, headers[key]!)
    res.statusCode = 200
    res.setHeader('content-type', this.contentType)
  }

  private encode (bytes: Uint8Array): Uint8Array {
    if (!this.text) return bytes
    return Buffer.from(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'), 'latin1')
  }
}
