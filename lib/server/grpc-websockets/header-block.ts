/**
 * The header block of the `grpc-websockets` protocol (improbable-eng's
 * WebSocket transport, and nice-grpc-web's): the client's first WebSocket
 * message, `name: value` lines ended by CRLF, no blank line at the end; and
 * the same text format in the server's metadata frames.
 *
 * Pure: bytes and strings in, entries out. The only Node API used is Buffer
 * for base64.
 */
import { checkKey, checkValue, isBinaryKey, type MetadataEntry } from '../../protocol/metadata.js'

/** Raised for a header block that breaks the rules above. */
export class HeaderBlockError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'HeaderBlockError'
  }
}

/** One `name: value` line: the name lower-cased, the value trimmed. */
export type HeaderLine = [name: string, value: string]

const TAB = 0x09
const SPACE = 0x20
const LF = 0x0a
const CR = 0x0d

/**
 * Splits a header block into lines. Accepts what both clients send (and
 * what a MIME header reader accepts): CRLF or bare LF line ends, an optional
 * final blank line, names in any case, optional whitespace around values.
 * Refuses bytes outside printable ASCII (TAB, CR, LF aside), a line without
 * a name, an illegal name, and obsolete line folding.
 */
export function parseHeaderBlock (bytes: Uint8Array): HeaderLine[] {
  // One pass over the bytes, one over the text, one slice a line: linear in
  // the block whatever its shape (a block is up to maxMetadataSize, and a
  // peer picks the shape). A name repeated from the line before is that
  // line's, lower-cased and checked once.
  const n = bytes.length
  for (let i = 0; i < n; i++) {
    const c = bytes[i]!
    if (c < 0x20 || c > 0x7e) {
      if (c === CR) {
        // A CR ends a line (before its LF, or the block) or is refused.
        if (i + 1 < n && bytes[i + 1] !== LF) throw new HeaderBlockError('Header block has a CR that does not end a line')
      } else if (c !== TAB && c !== LF) {
        throw new HeaderBlockError(`Header block byte 0x${c.toString(16).padStart(2, '0')} at offset ${i} is not printable ASCII`)
      }
    }
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1')
  const lines: HeaderLine[] = []
  let rawName = ''
  let name = ''
  let at = 0
  while (at < text.length) {
    let lf = text.indexOf('\n', at)
    if (lf === -1) lf = text.length
    const end = lf > at && text.charCodeAt(lf - 1) === CR ? lf - 1 : lf
    const start = at
    at = lf + 1
    if (end === start) continue
    const first = text.charCodeAt(start)
    if (first === SPACE || first === TAB) throw new HeaderBlockError('Header block continuation lines (obsolete line folding) are not supported')
    const colon = text.indexOf(':', start)
    if (colon <= start || colon >= end) throw new HeaderBlockError(`Header line "${text.slice(start, end)}" is not "name: value"`)
    if (colon - start !== rawName.length || !text.startsWith(rawName, start)) {
      rawName = text.slice(start, colon)
      name = rawName.toLowerCase()
      const problem = checkKey(name)
      if (problem !== null) throw new HeaderBlockError(problem)
    }
    lines.push([name, trimmed(text, colon + 1, end)])
  }
  return lines
}

/** `line` from `from` to `to`, without leading and trailing spaces and tabs (no regex: a backtracking trim can be quadratic on long runs). */
function trimmed (line: string, from: number, to: number): string {
  let start = from
  let end = to
  while (start < end && isBlank(line.charCodeAt(start))) start++
  while (end > start && isBlank(line.charCodeAt(end - 1))) end--
  return line.slice(start, end)
}

function isBlank (c: number): boolean {
  return c === SPACE || c === TAB
}

// Standard and URL-safe alphabets, padding optional (grpc-js accepts both).
const BASE64 = /^[A-Za-z0-9+/_-]*={0,2}$/

/**
 * Decodes one `-bin` value: one or more base64 values separated by commas
 * (improbable joins repeated values with ", "; nice-grpc-web sends a line
 * each). Base64 never contains a comma, so the split is unambiguous.
 */
export function decodeBinaryValue (name: string, value: string): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const part of value.split(',')) {
    const item = part.trim()
    if (!BASE64.test(item) || item.length % 4 === 1) throw new HeaderBlockError(`Metadata value for key "${name}" is not base64`)
    const bytes = Buffer.from(item, 'base64')
    out.push(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength))
  }
  return out
}

/** Transport keys of this protocol that a handler never sees. */
const transportKeys = new Set(['x-grpc-web'])

/**
 * Request metadata from the header lines, as wire entries for
 * `requestMetadata()`: `-bin` values base64-decoded (one entry per value),
 * other values checked and kept as they came (a value improbable joined with
 * ", " stays joined, as HTTP/2 joins repeated headers), `x-grpc-web` dropped.
 * `grpc-timeout` and `content-type` stay in: requestMetadata strips them.
 */
export function requestEntries (lines: readonly HeaderLine[]): MetadataEntry[] {
  const entries: MetadataEntry[] = []
  // A line repeating the one before (name, or name and value) is looked at once.
  let last: string | null = null
  let skip = false
  let binary = false
  let checked: string | null = null
  for (const [name, value] of lines) {
    if (name !== last) {
      last = name
      skip = transportKeys.has(name)
      binary = isBinaryKey(name)
      checked = null
    }
    if (skip) continue
    if (binary) {
      for (const bytes of decodeBinaryValue(name, value)) entries.push([name, bytes])
    } else {
      if (value !== checked) {
        const problem = checkValue(name, value)
        if (problem !== null) throw new HeaderBlockError(problem)
        checked = value
      }
      entries.push([name, value])
    }
  }
  return entries
}

/**
 * Metadata entries as a header block: one `name: value` CRLF line per value,
 * `-bin` values in padded base64. Keys and ASCII values are emitted as given
 * (grpc-js Metadata has already checked them).
 */
export function encodeHeaderBlock (entries: readonly MetadataEntry[]): string {
  let text = ''
  for (const [name, value] of entries) {
    const v = typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')
    text += `${name}: ${v}\r\n`
  }
  return text
}

/** ASCII text to bytes (the text is ASCII by construction). */
export function asciiBytes (text: string): Uint8Array {
  const out = new Uint8Array(text.length)
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i)
  return out
}

// Milliseconds per unit; the sub-millisecond units are divided by their
// count per millisecond (an exact integer) rather than multiplied by a fraction.
const msPerUnit: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1 }
const unitsPerMs: Record<string, number> = { u: 1000, n: 1_000_000 }

/**
 * A `grpc-timeout` value in milliseconds (rounded up to a whole ms), or null
 * when it is not what the gRPC spec allows: 1 to 8 digits and one unit of
 * H, M, S, m, u, n. Stricter than grpc-js, whose unanchored pattern also
 * takes "x5S" or "5S, 3S", and which truncates large values to 32 bits.
 */
export function parseGrpcTimeout (value: string): number | null {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value)
  if (match === null) return null
  const amount = Number(match[1])
  const unit = match[2]!
  return unit in msPerUnit ? amount * msPerUnit[unit]! : Math.ceil(amount / unitsPerMs[unit]!)
}
