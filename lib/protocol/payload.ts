/**
 * Builders and parsers for each frame type's payload. Builders return one
 * whole frame (header included) in a single allocation.
 */
import { ByteReader, ByteWriter, asciiLength, utf8Decode, utf8Encode, utf8EncodeNonAscii } from './bytes.js'
import { FRAME_HEADER_SIZE, FrameType, ProtocolError, writeFrameHeader } from './frame.js'
import { metadataSize, readCallMetadata, readMetadata, writeMetadata, type MetadataEntry } from './metadata.js'
import type { RecentText } from './recent-text.js'

/** CALL timeout value meaning "no deadline". */
export const NO_TIMEOUT = 0xffffffff

/**
 * A string field's UTF-8 size, and its bytes when it is not plain ASCII
 * (ASCII, the usual case, is written in place without an intermediate array).
 */
function textField (text: string): { size: number, ascii: boolean, encoded: Uint8Array | null } {
  const n = asciiLength(text)
  if (n !== -1) return { size: n, ascii: true, encoded: null }
  const encoded = utf8EncodeNonAscii(text)
  return { size: encoded.byteLength, ascii: false, encoded }
}

function build (type: number, flags: number, streamId: number, size: number, fill?: (w: ByteWriter) => void, out: Uint8Array = new Uint8Array(FRAME_HEADER_SIZE + size)): Uint8Array {
  writeFrameHeader(out, 0, type, flags, streamId, size)
  if (fill !== undefined) {
    const w = new ByteWriter(out)
    w.offset = FRAME_HEADER_SIZE
    fill(w)
  }
  return out
}

// SETTINGS ---------------------------------------------------------------

// The ids as plain constants, which a bundler inlines into the table below
// (and leaves SettingId out of a client that never names it).
const MAX_CONCURRENT_STREAMS = 1
const INITIAL_WINDOW_SIZE = 2
const MAX_FRAME_SIZE = 3
const MAX_MESSAGE_SIZE = 4
const MAX_METADATA_SIZE = 5

export const SettingId = { MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, MAX_MESSAGE_SIZE, MAX_METADATA_SIZE } as const

/** What a server announces in its first frame. */
export interface Settings {
  /** Streams the client may have open at once. */
  maxConcurrentStreams: number
  /** The server's receive window for each new stream, in message bytes. */
  initialWindowSize: number
  /** The largest WebSocket message (one frame or a batch of frames) the server accepts. */
  maxFrameSize: number
  /** The largest request message the server accepts. */
  maxMessageSize: number
  /** The largest encoded metadata block the server accepts. */
  maxMetadataSize: number
}

/**
 * Each setting: its id, its field, and its range (PROTOCOL.md §4.1), in the
 * order a SETTINGS frame lists them. A value outside its range would break
 * the receiver's arithmetic (a frame limit of 5 bytes leaves a negative
 * MESSAGE payload; 0 streams starts no call).
 */
const settingTable: Array<[id: number, name: keyof Settings, min: number, max: number]> = [
  [MAX_CONCURRENT_STREAMS, 'maxConcurrentStreams', 1, 0x7fffffff],
  [INITIAL_WINDOW_SIZE, 'initialWindowSize', 1024, 0x7fffffff],
  [MAX_FRAME_SIZE, 'maxFrameSize', 16384, 16777216],
  // And 0xFFFFFFFF: no limit (the server's -1).
  [MAX_MESSAGE_SIZE, 'maxMessageSize', 0, 0x7fffffff],
  [MAX_METADATA_SIZE, 'maxMetadataSize', 1024, 16777216]
]

export function buildSettings (settings: Settings): Uint8Array {
  return build(FrameType.SETTINGS, 0, 0, settingTable.length * 6, w => {
    for (const [id, name] of settingTable) {
      w.u16(id)
      w.u32(settings[name])
    }
  })
}

/** Reads the settings a peer sent over `defaults`; unknown ids are ignored. */
export function parseSettings (payload: Uint8Array, defaults: Settings): Settings {
  const settings = { ...defaults }
  const r = new ByteReader(payload)
  while (r.remaining > 0) {
    const id = r.u16('setting id')
    const value = r.u32('setting value')
    const entry = settingTable.find(([known]) => known === id)
    if (entry !== undefined) settings[entry[1]] = value
  }
  return settings
}

/** Throws a {@link ProtocolError} naming the first setting outside its range (§4.1). */
export function validateSettings (settings: Settings): void {
  for (const [, name, min, max] of settingTable) {
    const value = settings[name]
    if ((value < min || value > max) && !(name === 'maxMessageSize' && value === 0xffffffff)) {
      // maxFrameSize: MAX_FRAME_SIZE
      throw new ProtocolError(`SETTINGS ${name.replace(/[A-Z]/g, c => '_' + c).toUpperCase()} ${value} is outside ${min} … ${max}`)
    }
  }
}

// CALL -------------------------------------------------------------------

export interface CallStart {
  /** `/package.Service/Method` */
  path: string
  /** Milliseconds the call may take, or {@link NO_TIMEOUT}. */
  timeoutMs: number
  /** The client's receive window for this stream, in message bytes. */
  initialWindowSize: number
  metadata: readonly MetadataEntry[]
}

/** `alloc`: where the frame's bytes come from (zero-filled, not written by anyone else); default a new array. */
export function buildCall (streamId: number, call: CallStart, alloc?: (n: number) => Uint8Array): Uint8Array {
  const path = textField(call.path)
  if (path.size > 0xffff) throw new RangeError(`method path of ${path.size} bytes is longer than 65535`)
  const size = 4 + 4 + 2 + path.size + metadataSize(call.metadata)
  return build(FrameType.CALL, 0, streamId, size, w => {
    w.u32(call.timeoutMs)
    w.u32(call.initialWindowSize)
    w.u16(path.size)
    w.text(call.path, path.ascii, path.encoded)
    writeMetadata(w, call.metadata)
  }, alloc?.(FRAME_HEADER_SIZE + size))
}

export interface ParsedCall extends CallStart {
  metadata: MetadataEntry[]
  /** Encoded size of the metadata block, for the receiver's limit. */
  metadataSize: number
  /** The path's bytes: a view of the payload. */
  pathBytes: Uint8Array
}

/** `paths`: the paths decoded before, found again by their bytes. */
export function parseCall (payload: Uint8Array, paths?: RecentText): ParsedCall {
  const r = new ByteReader(payload)
  const timeoutMs = r.u32('timeout')
  const initialWindowSize = r.u32('window')
  const pathBytes = r.take(r.u16('path length'), 'path')
  const path = paths === undefined ? utf8Decode(pathBytes) : paths.decode(pathBytes)
  const metadataSize = r.remaining
  const metadata = readCallMetadata(r)
  return { path, timeoutMs, initialWindowSize, metadata, metadataSize, pathBytes }
}

// HEADERS ----------------------------------------------------------------

export function buildHeaders (streamId: number, metadata: readonly MetadataEntry[]): Uint8Array {
  return build(FrameType.HEADERS, 0, streamId, metadataSize(metadata), w => writeMetadata(w, metadata))
}

export function parseHeaders (payload: Uint8Array): MetadataEntry[] {
  return readMetadata(new ByteReader(payload))
}

// TRAILERS ---------------------------------------------------------------

export interface CallStatus {
  code: number
  details: string
  metadata: MetadataEntry[]
  /** A status made on the client: the local error behind it (a socket's), if any. */
  cause?: unknown
}

export function buildTrailers (streamId: number, status: { code: number, details: string, metadata: readonly MetadataEntry[] }): Uint8Array {
  const details = textField(status.details)
  return build(FrameType.TRAILERS, 0, streamId, 4 + 4 + details.size + metadataSize(status.metadata), w => {
    w.i32(status.code)
    w.u32(details.size)
    w.text(status.details, details.ascii, details.encoded)
    writeMetadata(w, status.metadata)
  })
}

export function parseTrailers (payload: Uint8Array): CallStatus {
  const r = new ByteReader(payload)
  const code = r.i32('status code')
  const details = utf8Decode(r.take(r.u32('details length'), 'details'))
  const metadata = readMetadata(r)
  return { code, details, metadata }
}

// WINDOW_UPDATE, PING, GOAWAY, and the empty frames ------------------------

export function buildWindowUpdate (streamId: number, increment: number): Uint8Array {
  return build(FrameType.WINDOW_UPDATE, 0, streamId, 4, w => w.u32(increment))
}

export function parseWindowUpdate (payload: Uint8Array): number {
  return new ByteReader(payload).u32('window increment')
}

export const PING_PAYLOAD_SIZE = 8

export function buildPing (flags: number, data: Uint8Array): Uint8Array {
  return build(FrameType.PING, flags, 0, PING_PAYLOAD_SIZE, w => w.put(data.subarray(0, PING_PAYLOAD_SIZE)))
}

export interface GoAway {
  /** The highest stream id the server has accepted and will finish. */
  lastStreamId: number
  reason: string
}

export function buildGoAway (goAway: GoAway): Uint8Array {
  const reason = utf8Encode(goAway.reason)
  return build(FrameType.GOAWAY, 0, 0, 4 + reason.byteLength, w => {
    w.u32(goAway.lastStreamId)
    w.put(reason)
  })
}

export function parseGoAway (payload: Uint8Array): GoAway {
  const r = new ByteReader(payload)
  const lastStreamId = r.u32('last stream id')
  return { lastStreamId, reason: utf8Decode(r.rest()) }
}

/** HALF_CLOSE, CANCEL: frames with no payload. */
export function buildEmpty (type: number, streamId: number): Uint8Array {
  return build(type, 0, streamId, 0)
}
