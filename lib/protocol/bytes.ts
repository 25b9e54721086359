/**
 * Byte helpers on Uint8Array only (no Buffer, no DataView), shared by the
 * server and the browser client.
 */
const encoder = new TextEncoder()
// UTF-8, not fatal: malformed bytes become U+FFFD.
const decoder = new TextDecoder()

// Below this length, a plain loop beats a call into TextEncoder/TextDecoder
// (method paths, "OK" details, header names).
const SHORT_TEXT = 64

/** UTF-8 of text already known not to be all ASCII (see {@link asciiLength}): {@link utf8Encode}'s ASCII loop would be wasted on it. */
export function utf8EncodeNonAscii (text: string): Uint8Array {
  return encoder.encode(text)
}

export function utf8Encode (text: string): Uint8Array {
  const n = text.length
  if (n <= SHORT_TEXT) {
    const out = new Uint8Array(n)
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i)
      if (c > 0x7f) return encoder.encode(text)
      out[i] = c
    }
    return out
  }
  return encoder.encode(text)
}

/** `text.length` when every code unit is ASCII (its UTF-8 is one byte each), else -1. */
export function asciiLength (text: string): number {
  const n = text.length
  for (let i = 0; i < n; i++) if (text.charCodeAt(i) > 0x7f) return -1
  return n
}

export function utf8Decode (bytes: Uint8Array): string {
  const n = bytes.length
  if (n <= SHORT_TEXT) {
    let s = ''
    for (let i = 0; i < n; i++) {
      const c = bytes[i]!
      if (c > 0x7f) return decoder.decode(bytes)
      s += String.fromCharCode(c)
    }
    return s
  }
  return decoder.decode(bytes)
}

/** Thrown by {@link ByteReader} when a payload ends before a field does. */
export class TruncatedError extends Error {
  constructor (what: string) {
    super(`truncated ${what}`)
    this.name = 'TruncatedError'
  }
}

/** The unsigned big-endian u32 at `at` of `b`. */
export function readU32 (b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0
}

/** Writes `v` as a big-endian u32 at `at` of `b` (no bounds check: the caller's). */
export function writeU32 (b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24
  b[at + 1] = v >>> 16
  b[at + 2] = v >>> 8
  b[at + 3] = v
}

/** Sequential big-endian reader over one frame payload. */
export class ByteReader {
  offset = 0
  constructor (readonly bytes: Uint8Array) {}

  get remaining (): number { return this.bytes.byteLength - this.offset }

  /** Moves past the next `n` bytes, or throws if the payload has fewer; returns where they start (in `bytes`). */
  advance (n: number, what: string): number {
    if (this.remaining < n) throw new TruncatedError(what)
    const at = this.offset
    this.offset = at + n
    return at
  }

  u16 (what: string): number {
    const at = this.advance(2, what)
    return (this.bytes[at]! << 8) | this.bytes[at + 1]!
  }

  u32 (what: string): number {
    return readU32(this.bytes, this.advance(4, what))
  }

  i32 (what: string): number {
    return this.u32(what) | 0
  }

  /** A view (not a copy) of the next `n` bytes. */
  take (n: number, what: string): Uint8Array {
    const at = this.advance(n, what)
    return this.bytes.subarray(at, at + n)
  }

  rest (): Uint8Array {
    const v = this.bytes.subarray(this.offset)
    this.offset = this.bytes.byteLength
    return v
  }
}

/**
 * Big-endian writer into a buffer sized up front by the caller. Writes past
 * the end throw a RangeError, as DataView's do.
 */
export class ByteWriter {
  offset = 0
  constructor (readonly bytes: Uint8Array) {}

  private room (n: number): number {
    const at = this.offset
    if (at + n > this.bytes.byteLength) throw new RangeError('Offset is outside the bounds of the buffer')
    this.offset = at + n
    return at
  }

  u8 (v: number): void { this.bytes[this.room(1)] = v }
  u16 (v: number): void {
    const at = this.room(2)
    const b = this.bytes
    b[at] = v >>> 8
    b[at + 1] = v
  }

  u32 (v: number): void { writeU32(this.bytes, this.room(4), v) }

  i32 (v: number): void { this.u32(v >>> 0) }
  put (b: Uint8Array): void { this.bytes.set(b, this.room(b.byteLength)) }

  /** Writes `text` as UTF-8, given its encoded length from {@link asciiLength} (or -1 with `encoded`). */
  text (text: string, ascii: boolean, encoded: Uint8Array | null): void {
    if (ascii) this.ascii(text)
    else this.put(encoded!)
  }

  /** Writes `text` as one byte per UTF-16 code unit (callers pass ASCII). */
  ascii (text: string): void {
    const n = text.length
    const at = this.room(n)
    const b = this.bytes
    for (let i = 0; i < n; i++) b[at + i] = text.charCodeAt(i)
  }
}
