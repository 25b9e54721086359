/**
 * The last few strings decoded from bytes, found again by their bytes. A
 * CALL's method path repeats call after call; decoded anew, the string is
 * also hashed anew by the handler lookup (with parseCall, 6 % of the
 * server's busy time under small unary calls). Comparing a few bytes is
 * cheaper, and a string found again keeps its hash.
 *
 * Pure: Uint8Array only.
 */
import { utf8Decode } from './bytes.js'

export class RecentText {
  // Parallel rings, filled in turn; a copy of the bytes, never a view of a peer's buffer.
  private readonly keys: Uint8Array[] = []
  private readonly texts: string[] = []
  private next = 0

  /** At most `capacity` strings of at most `maxBytes` bytes each are kept. */
  constructor (private readonly capacity: number, private readonly maxBytes: number) {}

  /** What `bytes` were decoded to when remembered, or a fresh decoding. */
  decode (bytes: Uint8Array): string {
    const n = bytes.byteLength
    const keys = this.keys
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!
      if (key.byteLength !== n) continue
      let i = 0
      while (i < n && key[i] === bytes[i]) i++
      if (i === n) return this.texts[k]!
    }
    return utf8Decode(bytes)
  }

  /**
   * Keeps `text` as what `bytes` decode to, replacing the oldest entry when
   * full. Only what is worth finding again: the caller remembers a path that
   * named a method, so a peer's unknown paths cannot crowd out the known.
   */
  remember (bytes: Uint8Array, text: string): void {
    if (bytes.byteLength > this.maxBytes) return
    for (let k = 0; k < this.texts.length; k++) if (this.texts[k] === text) return
    this.keys[this.next] = bytes.slice()
    this.texts[this.next] = text
    this.next = (this.next + 1) % this.capacity
  }
}
