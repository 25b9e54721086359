/**
 * Incremental base64 decoding of a gRPC-Web text request body. The body is
 * the base64 of the binary stream, but a client may encode each frame on
 * its own, so padding ('=') can end any 4-character group, not just the
 * last one (grpc/grpc PROTOCOL-WEB.md). Each push decodes the whole groups
 * it completes and keeps at most 3 characters for the next push.
 */

/** Raised for a character outside the standard alphabet, or misplaced padding. */
export class Base64Error extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'Base64Error'
  }
}

const INVALID = 255
const PAD = 64
const values = new Uint8Array(256).fill(INVALID)
const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i
values[0x3d] = PAD

export class Base64Decoder {
  private readonly carry = new Uint8Array(4)
  private carried = 0
  /** Characters decoded so far (for error messages). */
  private offset = 0

  /** Decodes what `chunk` (ASCII) completes. Throws Base64Error. */
  push (chunk: Uint8Array): Uint8Array {
    const total = this.carried + chunk.byteLength
    const out = new Uint8Array(Math.floor(total / 4) * 3)
    let written = 0
    let at = 0
    // Finish a carried group first, then whole groups straight from the chunk.
    while (this.carried > 0 && this.carried < 4 && at < chunk.byteLength) this.carry[this.carried++] = chunk[at++]!
    if (this.carried === 4) {
      written = this.group(this.carry, 0, out, written)
      this.carried = 0
    }
    const end = at + Math.floor((chunk.byteLength - at) / 4) * 4
    for (; at < end; at += 4) written = this.group(chunk, at, out, written)
    while (at < chunk.byteLength) this.carry[this.carried++] = chunk[at++]!
    return written === out.byteLength ? out : out.subarray(0, written)
  }

  /** The body ended: nothing may be left over. */
  end (): void {
    if (this.carried !== 0) throw new Base64Error(`Invalid base64 in the request body: it ends inside a 4-character group (${this.carried} characters left)`)
  }

  private group (src: Uint8Array, at: number, out: Uint8Array, written: number): number {
    const a = values[src[at]!]!
    const b = values[src[at + 1]!]!
    const c = values[src[at + 2]!]!
    const d = values[src[at + 3]!]!
    // "xx==" and "xxx=" are the only places padding may take.
    if ((a | b | c | d) >= PAD && !(a < PAD && b < PAD && ((c === PAD && d === PAD) || (c < PAD && d === PAD)))) {
      for (let i = 0; i < 4; i++) {
        const v = values[src[at + i]!]!
        if (v === INVALID) throw new Base64Error(`Invalid base64 in the request body: byte 0x${src[at + i]!.toString(16).padStart(2, '0')} at offset ${this.offset + i}`)
      }
      throw new Base64Error(`Invalid base64 in the request body: misplaced padding at offset ${this.offset}`)
    }
    this.offset += 4
    out[written++] = (a << 2) | (b >> 4)
    if (c === PAD) return written
    out[written++] = ((b & 15) << 4) | (c >> 2)
    if (d === PAD) return written
    out[written++] = ((c & 3) << 6) | d
    return written
  }
}
