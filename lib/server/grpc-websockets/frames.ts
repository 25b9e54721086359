/**
 * The frames of the `grpc-websockets` protocol, on Uint8Array.
 *
 * Client to server, after the header block (header-block.ts), each
 * WebSocket message starts with a control byte:
 *
 *   00 | bytes     request bytes: a stream of gRPC length-prefixed messages
 *                  (flag u8, length u32 BE, payload), reassembled across
 *                  WebSocket messages
 *   01             (alone) end of the request stream: half-close
 *
 * Server to client, a byte stream of gRPC-web frames (the WebSocket message
 * boundaries carry no meaning to the clients):
 *
 *   00 | length u32 BE | message bytes
 *   80 | length u32 BE | header block: the response headers (first), or
 *                        the trailers with grpc-status (last, or alone)
 *
 * Pure: no I/O, no Node APIs beyond what header-block.ts uses.
 */
import { Status } from '../../protocol/status.js'
import type { MetadataEntry } from '../../protocol/metadata.js'
import { asciiBytes, encodeHeaderBlock } from './header-block.js'

/** The 5-byte prefix of a gRPC length-prefixed message or gRPC-web frame. */
export const PREFIX_SIZE = 5

/** Flag byte of a gRPC-web frame. */
export const FrameFlag = {
  MESSAGE: 0x00,
  COMPRESSED: 0x01,
  METADATA: 0x80
} as const

/** First byte of a client message after the header block. */
export const Control = {
  DATA: 0x00,
  END: 0x01
} as const

/** A request that breaks the protocol or a limit; ends the call with `code`. */
export class CallError extends Error {
  constructor (readonly code: number, details: string) {
    super(details)
    this.name = 'CallError'
  }
}

// --- server to client ----------------------------------------------------

export function encodeFrame (flags: number, body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(PREFIX_SIZE + body.byteLength)
  frame[0] = flags
  new DataView(frame.buffer).setUint32(1, body.byteLength)
  frame.set(body, PREFIX_SIZE)
  return frame
}

/** A message frame (never compressed: neither client decompresses). */
export function encodeMessageFrame (message: Uint8Array): Uint8Array {
  return encodeFrame(FrameFlag.MESSAGE, message)
}

/** A metadata frame holding response headers. */
export function encodeHeadersFrame (metadata: readonly MetadataEntry[]): Uint8Array {
  return encodeFrame(FrameFlag.METADATA, asciiBytes(encodeHeaderBlock(metadata)))
}

const HEX = '0123456789ABCDEF'

/**
 * Percent-encodes status details as the gRPC spec says for grpc-message:
 * UTF-8, with every byte outside printable ASCII, and `%`, as `%XX`. Both
 * clients decode it with decodeURIComponent. `text` must be well-formed
 * UTF-16 (the call refuses a lone surrogate before it gets here).
 */
export function percentEncode (text: string): string {
  let out = ''
  const bytes = new TextEncoder().encode(text)
  for (const b of bytes) {
    if (b >= 0x20 && b <= 0x7e && b !== 0x25) out += String.fromCharCode(b)
    else out += '%' + HEX[b >> 4]! + HEX[b & 15]!
  }
  return out
}

export interface StatusToSend {
  code: number
  details: string
  metadata: readonly MetadataEntry[]
}

/**
 * The trailers frame: `grpc-status`, `grpc-message` (percent-encoded, left
 * out when empty), then the trailing metadata (`-bin` values in base64). It
 * is also the whole response when no headers were sent (trailers-only).
 * Metadata keys that would shadow the status are dropped.
 */
export function encodeStatusFrame (status: StatusToSend): Uint8Array {
  let block = `grpc-status: ${status.code}\r\n`
  if (status.details !== '') block += `grpc-message: ${percentEncode(status.details)}\r\n`
  block += encodeHeaderBlock(status.metadata.filter(([key]) => key !== 'grpc-status' && key !== 'grpc-message'))
  return encodeFrame(FrameFlag.METADATA, asciiBytes(block))
}

// --- client to server ----------------------------------------------------

export type ClientMessage =
  | { kind: 'data', bytes: Uint8Array }
  | { kind: 'end' }

/** Reads the control byte of a client message (after the header block). */
export function parseClientMessage (message: Uint8Array): ClientMessage {
  if (message.byteLength === 0) throw new CallError(Status.INTERNAL, 'Protocol error: empty WebSocket message')
  const control = message[0]!
  if (control === Control.DATA) return { kind: 'data', bytes: message.subarray(1) }
  if (control === Control.END) {
    if (message.byteLength !== 1) throw new CallError(Status.INTERNAL, 'Protocol error: end-of-stream message with a payload')
    return { kind: 'end' }
  }
  throw new CallError(Status.INTERNAL, `Protocol error: unknown control byte 0x${control.toString(16).padStart(2, '0')}`)
}

/**
 * Joins request bytes, in pieces of any size, back into whole gRPC
 * length-prefixed messages, one message per read() so that the caller can
 * stop between messages. The size limit is checked as soon as a message's
 * prefix is complete, before its body is buffered; then one buffer of
 * exactly the message's length is filled, whatever the pieces: what it
 * holds is that message, never per-piece bookkeeping.
 */
export class MessageReassembler {
  private readonly prefix = new Uint8Array(PREFIX_SIZE)
  private prefixFilled = 0
  // The message being read: its length (-1 while the prefix is incomplete),
  // and its bytes so far.
  private length = -1
  private body: Uint8Array | null = null
  private filled = 0
  /** The message completed by the last read(), or null. */
  message: Uint8Array | null = null

  /** @param maxMessageSize largest message payload, or -1 for no limit */
  constructor (private readonly maxMessageSize: number) {}

  /** Bytes received of a message not yet complete (prefix included). */
  get buffered (): number {
    return this.prefixFilled + this.filled
  }

  /** Bytes this holds for the message not yet complete: its prefix, and its buffer once allocated. */
  get held (): number {
    return PREFIX_SIZE + (this.body?.byteLength ?? 0)
  }

  /** Takes the next bytes whole; returns the messages they complete. Throws CallError. */
  push (chunk: Uint8Array): Uint8Array[] {
    const messages: Uint8Array[] = []
    for (let at = 0; at < chunk.byteLength;) {
      at = this.read(chunk, at)
      if (this.message !== null) messages.push(this.message)
    }
    return messages
  }

  /**
   * Reads `chunk` from `at` up to the end of the next message at most;
   * returns where it stopped. `message` is then that message, or null when
   * the chunk ended first. Throws CallError.
   */
  read (chunk: Uint8Array, at: number): number {
    this.message = null
    const end = chunk.byteLength
    while (at < end) {
      if (this.length === -1) {
        const prefixAt = at - this.prefixFilled
        const n = Math.min(PREFIX_SIZE - this.prefixFilled, end - at)
        this.prefix.set(chunk.subarray(at, at + n), this.prefixFilled)
        this.prefixFilled += n
        at += n
        if (this.prefixFilled < PREFIX_SIZE) return at
        const length = this.startMessage()
        if (prefixAt === 0 && length === end - at) {
          // The chunk is this message alone (what both clients send): a
          // view, which holds no more than the message.
          this.message = chunk.subarray(at, end)
          this.reset()
          return end
        }
        if (length === 0) {
          this.message = new Uint8Array(0)
          this.reset()
          return at
        }
        // Allocated only now, after the size check.
        this.body = new Uint8Array(length)
        continue
      }
      // Copied: a view would keep the whole chunk alive for part of it.
      const n = Math.min(this.length - this.filled, end - at)
      this.body!.set(chunk.subarray(at, at + n), this.filled)
      this.filled += n
      at += n
      if (this.filled === this.length) {
        this.message = this.body
        this.reset()
        return at
      }
    }
    return at
  }

  /** The prefix is complete: checks it, and returns the message length. */
  private startMessage (): number {
    const flags = this.prefix[0]!
    if ((flags & FrameFlag.COMPRESSED) !== 0) {
      throw new CallError(Status.INTERNAL, 'Received a compressed message, but no grpc-encoding was negotiated (compression is not supported)')
    }
    if (flags !== 0) throw new CallError(Status.INTERNAL, `Protocol error: message flags 0x${flags.toString(16).padStart(2, '0')}`)
    const length = new DataView(this.prefix.buffer).getUint32(1)
    if (this.maxMessageSize !== -1 && length > this.maxMessageSize) {
      throw new CallError(Status.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs ${this.maxMessageSize})`)
    }
    this.length = length
    return length
  }

  private reset (): void {
    this.prefixFilled = 0
    this.length = -1
    this.body = null
    this.filled = 0
  }
}
