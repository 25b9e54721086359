/**
 * Byte helpers on Uint8Array and DataView only (no Buffer), shared by the
 * server and the browser client.
 */
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: false })

export function utf8Encode (text: string): Uint8Array {
  return encoder.encode(text)
}

export function utf8Decode (bytes: Uint8Array): string {
  return decoder.decode(bytes)
}

/** Thrown by {@link ByteReader} when a payload ends before a field does. */
export class TruncatedError extends Error {
  constructor (what: string) {
    super(`truncated ${what}`)
    this.name = 'TruncatedError'
  }
}

/** Sequential big-endian reader over one frame payload. */
export class ByteReader {
  offset = 0
  private readonly view: DataView
  constructor (readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  get remaining (): number { return this.bytes.byteLength - this.offset }

  private need (n: number, what: string): void {
    if (this.remaining < n) throw new TruncatedError(what)
  }

  u16 (what: string): number {
    this.need(2, what)
    const v = this.view.getUint16(this.offset)
    this.offset += 2
    return v
  }

  u32 (what: string): number {
    this.need(4, what)
    const v = this.view.getUint32(this.offset)
    this.offset += 4
    return v
  }

  i32 (what: string): number {
    this.need(4, what)
    const v = this.view.getInt32(this.offset)
    this.offset += 4
    return v
  }

  /** A view (not a copy) of the next `n` bytes. */
  take (n: number, what: string): Uint8Array {
    this.need(n, what)
    const v = this.bytes.subarray(this.offset, this.offset + n)
    this.offset += n
    return v
  }

  rest (): Uint8Array {
    const v = this.bytes.subarray(this.offset)
    this.offset = this.bytes.byteLength
    return v
  }
}

/** Big-endian writer into a buffer sized up front by the caller. */
export class ByteWriter {
  offset = 0
  readonly view: DataView
  constructor (readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  }

  u8 (v: number): void { this.view.setUint8(this.offset, v); this.offset += 1 }
  u16 (v: number): void { this.view.setUint16(this.offset, v); this.offset += 2 }
  u32 (v: number): void { this.view.setUint32(this.offset, v); this.offset += 4 }
  i32 (v: number): void { this.view.setInt32(this.offset, v); this.offset += 4 }
  put (b: Uint8Array): void { this.bytes.set(b, this.offset); this.offset += b.byteLength }
}
