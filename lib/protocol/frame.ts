/**
 * The grpc-ws.v1 frame layer: a 10-byte header and a payload.
 *
 *   type u8 | flags u8 | stream id u32 BE | payload length u32 BE | payload
 *
 * A WebSocket message carries one or more whole frames. The decoder is a
 * streaming state machine anyway, so it can be fed bytes split anywhere; the
 * connection checks that nothing is left over at the end of each message.
 * Pure: no I/O, no Node built-ins.
 */
import { readU32, writeU32 } from './bytes.js'

export const FRAME_HEADER_SIZE = 10

export const FrameType = {
  SETTINGS: 0x01,
  CALL: 0x02,
  HEADERS: 0x03,
  MESSAGE: 0x04,
  HALF_CLOSE: 0x05,
  TRAILERS: 0x06,
  CANCEL: 0x07,
  WINDOW_UPDATE: 0x08,
  PING: 0x09,
  GOAWAY: 0x0a
} as const
export type FrameTypeCode = (typeof FrameType)[keyof typeof FrameType]

const frameTypeNames: Record<number, string> = {}
for (const [name, code] of Object.entries(FrameType)) frameTypeNames[code] = name

/** `'MESSAGE'` for 0x04; `'0x3f'` for a type this version does not define. */
export function frameTypeName (type: number): string {
  return frameTypeNames[type] ?? `0x${type.toString(16).padStart(2, '0')}`
}

export const FrameFlags = {
  /** MESSAGE: the message continues in the next MESSAGE frame of the stream. */
  MORE: 0x02,
  /** PING: this is the answer to a PING. */
  ACK: 0x01
} as const

export interface Frame {
  type: number
  flags: number
  streamId: number
  /** A view into the received bytes: copy it before keeping it past the next push. */
  payload: Uint8Array
}

// The two close codes this module uses, as plain constants: a bundler
// inlines them, and leaves CloseCode out of a client that never names it.
const PROTOCOL_ERROR = 1002
const MESSAGE_TOO_BIG = 1009

/** WebSocket close codes this protocol uses, with the reason for each. */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR,
  UNSUPPORTED_DATA: 1003,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG,
  INTERNAL_ERROR: 1011
} as const

/** A violation of the protocol that ends the whole connection. */
export class ProtocolError extends Error {
  constructor (message: string, readonly closeCode: number = PROTOCOL_ERROR) {
    super(message)
    this.name = 'ProtocolError'
  }
}

/** Writes a frame header at `offset` of `target`. */
export function writeFrameHeader (target: Uint8Array, offset: number, type: number, flags: number, streamId: number, length: number): void {
  // Byte by byte: cheaper than a DataView per frame on the hot path.
  if (offset + FRAME_HEADER_SIZE > target.byteLength) throw new RangeError('Offset is outside the bounds of the buffer')
  target[offset] = type
  target[offset + 1] = flags
  writeU32(target, offset + 2, streamId)
  writeU32(target, offset + 6, length)
}

/** One whole frame in a fresh buffer. */
export function encodeFrame (type: number, flags: number, streamId: number, payload?: Uint8Array): Uint8Array {
  const size = payload === undefined ? 0 : payload.byteLength
  const out = new Uint8Array(FRAME_HEADER_SIZE + size)
  writeFrameHeader(out, 0, type, flags, streamId, size)
  if (payload !== undefined) out.set(payload, FRAME_HEADER_SIZE)
  return out
}

/** `length`, if a frame may have a payload that long; else a {@link ProtocolError} (close 1009). */
function checkPayloadLength (length: number, maxPayload: number): number {
  if (length > maxPayload) {
    throw new ProtocolError(`frame payload of ${length} bytes exceeds the limit of ${maxPayload}`, MESSAGE_TOO_BIG)
  }
  return length
}

/**
 * Reads the whole frames in `bytes` from `from` on into `frames` (their
 * payloads are views into `bytes`), and returns where they end: at the start
 * of an incomplete frame, or at `bytes.byteLength`. Refuses, with a
 * {@link ProtocolError} (close 1009), a frame whose header announces a
 * payload larger than `maxPayload`, whole or not, before any frame is
 * returned. A peer that sends whole frames in each WebSocket message (the
 * browser client's server) needs nothing more than this; a byte stream
 * split anywhere needs a {@link FrameDecoder}.
 */
export function readFrames (bytes: Uint8Array, from: number, maxPayload: number, frames: Frame[]): number {
  let at = from
  const end = bytes.byteLength
  while (end - at >= FRAME_HEADER_SIZE) {
    const length = checkPayloadLength(readU32(bytes, at + 6), maxPayload)
    if (end - at - FRAME_HEADER_SIZE < length) break
    const start = at + FRAME_HEADER_SIZE
    frames.push({
      type: bytes[at]!,
      flags: bytes[at + 1]!,
      streamId: readU32(bytes, at + 2),
      payload: bytes.subarray(start, start + length)
    })
    at = start + length
  }
  return at
}

/**
 * Splits a byte stream into frames. Refuses, with a {@link ProtocolError}
 * (close 1009), any frame whose payload is larger than `maxPayload`, as soon as
 * its header arrives and before buffering it.
 *
 * Work is linear in the bytes fed, however they are split: a frame that
 * spans pushes is gathered in one buffer grown by doubling (never larger than
 * the frame), not re-joined with every piece.
 */
export class FrameDecoder {
  // The start of a frame that spans pushes: `pendingLength` bytes of `pending`.
  private pending: Uint8Array | null = null
  private pendingLength = 0

  constructor (readonly maxPayload: number) {}

  /** Bytes held for an incomplete frame. */
  get buffered (): number { return this.pendingLength }

  /** Feeds bytes; returns the frames they complete, in order. */
  push (chunk: Uint8Array): Frame[] {
    const frames: Frame[] = []
    let at = 0
    if (this.pendingLength > 0) {
      at = this.resume(chunk, frames)
      if (this.pendingLength > 0) return frames
    }
    this.keep(chunk, readFrames(chunk, at, this.maxPayload, frames))
    return frames
  }

  /**
   * Adds the start of `chunk` to the frame held from earlier pushes, and
   * emits that frame once whole. Returns how many bytes of `chunk` it took.
   */
  private resume (chunk: Uint8Array, frames: Frame[]): number {
    let at = 0
    if (this.pendingLength < FRAME_HEADER_SIZE) {
      at = this.append(chunk, 0, FRAME_HEADER_SIZE)
      if (this.pendingLength < FRAME_HEADER_SIZE) return at
      checkPayloadLength(readU32(this.pending!, 6), this.maxPayload)
    }
    const total = FRAME_HEADER_SIZE + readU32(this.pending!, 6)
    at += this.append(chunk, at, total)
    if (this.pendingLength < total) return at
    const frame = this.pending!
    frames.push({ type: frame[0]!, flags: frame[1]!, streamId: readU32(frame, 2), payload: frame.subarray(FRAME_HEADER_SIZE, total) })
    // The payload is a view of this buffer: the next frame gets a new one.
    this.pending = null
    this.pendingLength = 0
    return at
  }

  /** Copies bytes of `chunk` from `from` until `pending` holds `upTo` bytes; returns how many it copied. */
  private append (chunk: Uint8Array, from: number, upTo: number): number {
    const n = Math.min(upTo - this.pendingLength, chunk.byteLength - from)
    const held = this.pending!
    const size = this.pendingLength + n
    if (size > held.byteLength) {
      const grown = new Uint8Array(Math.min(upTo, Math.max(size, 2 * held.byteLength)))
      grown.set(held.subarray(0, this.pendingLength))
      this.pending = grown
    }
    this.pending!.set(chunk.subarray(from, from + n), this.pendingLength)
    this.pendingLength = size
    return n
  }

  private keep (bytes: Uint8Array, from: number): void {
    const left = bytes.byteLength - from
    if (left === 0) return
    // A whole header left here was already checked against maxPayload by push().
    // Copy: the caller's chunk may be reused once push() returns.
    this.pending = bytes.slice(from)
    this.pendingLength = left
  }
}

/** The WebSocket subprotocol of this version of the protocol. */
export const SUBPROTOCOL = 'grpc-ws.v1'
