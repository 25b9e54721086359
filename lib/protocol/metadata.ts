/**
 * Metadata on the wire: an ordered list of (key, value) entries. Keys are
 * lower-case ASCII; values of keys ending in `-bin` are raw bytes (never
 * base64 on this wire), others printable ASCII strings. Repeated keys are
 * separate entries.
 *
 *   count u16 | { key length u16 | key | value length u32 | value } * count
 */
import { ByteReader, ByteWriter } from './bytes.js'

export type MetadataValue = string | Uint8Array
export type MetadataEntry = [key: string, value: MetadataValue]

/** Raised when a block or an entry breaks the rules above. */
export class MetadataError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MetadataError'
  }
}

export function isBinaryKey (key: string): boolean {
  return key.endsWith('-bin')
}

// 0-9 a-z _ . - as in the gRPC HTTP/2 spec (grpc-js also accepts ':').
function isKeyByte (c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === 0x2e || c === 0x2d
}

function keyTooLong (key: string): string {
  return `Metadata key of ${key.length} bytes is longer than 65535`
}

/** Why `key` is not a legal metadata key, or null when it is. */
export function checkKey (key: string): string | null {
  if (key.length === 0) return 'Metadata key is empty'
  if (key.length > 0xffff) return keyTooLong(key)
  for (let i = 0; i < key.length; i++) {
    if (!isKeyByte(key.charCodeAt(i))) return `Metadata key "${key}" contains illegal characters`
  }
  return null
}

/** Why `value` is not a legal value for `key`, or null when it is. */
export function checkValue (key: string, value: MetadataValue): string | null {
  if (isBinaryKey(key)) {
    return value instanceof Uint8Array ? null : `Metadata key "${key}" ends with "-bin" and needs a binary value`
  }
  if (typeof value !== 'string') return `Metadata key "${key}" needs a string value`
  return checkText(key, value)
}

/** Why `value` is not a legal text value for `key` (printable ASCII only), or null when it is. */
function checkText (key: string, value: string): string | null {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c < 0x20 || c > 0x7e) return `Metadata value for key "${key}" contains characters other than printable ASCII`
  }
  return null
}

function asciiString (bytes: Uint8Array): string {
  // One call for typical keys and values (a user-agent, a token) instead of a
  // string concatenation per byte; chunked, as apply() takes a bounded number of arguments.
  const n = bytes.length
  if (n <= 4096) return String.fromCharCode.apply(null, bytes as unknown as number[])
  let s = ''
  for (let at = 0; at < n; at += 4096) s += String.fromCharCode.apply(null, bytes.subarray(at, Math.min(n, at + 4096)) as unknown as number[])
  return s
}

/** `n` bytes of `bytes` from `at` as a string, a character a byte, with no view made for short ones. */
function asciiAt (bytes: Uint8Array, at: number, n: number): string {
  // Short keys and values (most are) by a loop: apply() costs more than it saves there.
  if (n > 16) return asciiString(bytes.subarray(at, at + n))
  let s = ''
  for (let i = at; i < at + n; i++) s += String.fromCharCode(bytes[i]!)
  return s
}

function sameBytes (bytes: Uint8Array, a: number, b: number, n: number): boolean {
  for (let i = 0; i < n; i++) if (bytes[a + i] !== bytes[b + i]) return false
  return true
}

/** Encoded size of a metadata block, for sizing a frame up front. */
export function metadataSize (entries: readonly MetadataEntry[]): number {
  let size = 2
  for (const [key, value] of entries) {
    size += 2 + key.length + 4 + (typeof value === 'string' ? value.length : value.byteLength)
  }
  return size
}

/**
 * Writes a block. Entries are not checked here: senders pass metadata
 * grpc-js (or {@link validateMetadata}) has already checked, and receivers
 * check everything in {@link readMetadata}.
 */
export function writeMetadata (w: ByteWriter, entries: readonly MetadataEntry[]): void {
  if (entries.length > 0xffff) throw new MetadataError(`too many metadata entries (${entries.length})`)
  w.u16(entries.length)
  for (const [key, value] of entries) {
    // The one check a length field needs; everything else the sender has checked.
    if (key.length > 0xffff) throw new MetadataError(keyTooLong(key))
    w.u16(key.length)
    w.ascii(key)
    if (typeof value === 'string') {
      w.u32(value.length)
      w.ascii(value)
    } else {
      w.u32(value.byteLength)
      w.put(value)
    }
  }
}

/** Checks every entry; throws a MetadataError naming the first bad one. */
export function validateMetadata (entries: readonly MetadataEntry[]): void {
  for (const [key, value] of entries) {
    const problem = checkKey(key) ?? checkValue(key, value)
    if (problem !== null) throw new MetadataError(problem)
  }
}

/** Reads a block; binary values are copied out of the frame. */
export function readMetadata (r: ByteReader): MetadataEntry[] {
  const count = r.u16('metadata count')
  // Grown entry by entry, not sized by the count: 2 bytes announcing 65,535
  // entries would otherwise cost a 65,535-slot array (about 0.7 ms) before
  // the block is found truncated.
  const entries: MetadataEntry[] = []
  for (let i = 0; i < count; i++) {
    const key = asciiString(r.take(r.u16('metadata key length'), 'metadata key'))
    const keyProblem = checkKey(key)
    if (keyProblem !== null) throw new MetadataError(keyProblem)
    const raw = r.take(r.u32('metadata value length'), 'metadata value')
    let value: MetadataValue
    if (isBinaryKey(key)) {
      value = raw.slice()
    } else {
      // Bytes above 0x7e become characters above '~': checkText refuses them as it does in a sender's string.
      value = asciiString(raw)
      const valueProblem = checkText(key, value)
      if (valueProblem !== null) throw new MetadataError(valueProblem)
    }
    entries.push([key, value])
  }
  return entries
}

/**
 * readMetadata for the block any peer can send the server (a CALL's): a key
 * (or a text value) whose bytes are the previous entry's is that entry's
 * string, decoded and checked once, so a block repeating one entry costs a
 * byte comparison an entry, not a string and a check. Apart from
 * readMetadata so that the browser client, which reads only its server's
 * HEADERS and TRAILERS, does not carry it.
 */
export function readCallMetadata (r: ByteReader): MetadataEntry[] {
  const count = r.u16('metadata count')
  const bytes = r.bytes
  // Grown entry by entry, not sized by the count: 2 bytes announcing 65,535
  // entries would otherwise cost a 65,535-slot array (about 0.7 ms) before
  // the block is found truncated.
  const entries: MetadataEntry[] = []
  let key = ''
  let binary = false
  let keyAt = 0
  let keyLength = -1
  let text = ''
  let textAt = 0
  let textLength = -1
  for (let i = 0; i < count; i++) {
    const kl = r.u16('metadata key length')
    const ka = r.advance(kl, 'metadata key')
    if (kl !== keyLength || !sameBytes(bytes, ka, keyAt, kl)) {
      key = asciiAt(bytes, ka, kl)
      const keyProblem = checkKey(key)
      if (keyProblem !== null) throw new MetadataError(keyProblem)
      binary = isBinaryKey(key)
      keyAt = ka
      keyLength = kl
    }
    const vl = r.u32('metadata value length')
    const va = r.advance(vl, 'metadata value')
    let value: MetadataValue
    if (binary) {
      value = bytes.slice(va, va + vl)
    } else if (vl === textLength && sameBytes(bytes, va, textAt, vl)) {
      value = text
    } else {
      // Bytes above 0x7e become characters above '~': checkText refuses them as it does in a sender's string.
      value = asciiAt(bytes, va, vl)
      const valueProblem = checkText(key, value)
      if (valueProblem !== null) throw new MetadataError(valueProblem)
      text = value
      textAt = va
      textLength = vl
    }
    entries.push([key, value])
  }
  return entries
}

/** For tests and tools: a block as bytes. */
export function encodeMetadata (entries: readonly MetadataEntry[]): Uint8Array {
  const out = new Uint8Array(metadataSize(entries))
  writeMetadata(new ByteWriter(out), entries)
  return out
}

