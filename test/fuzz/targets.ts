/**
 * Fuzz targets for every parser of peer bytes. Each target is a fast-check
 * arbitrary aimed at its parser's branches (valid encodings, then mutated:
 * see mutate.ts) and a check that throws when a property breaks:
 *
 * - the parser returns a value or throws its documented error class, never
 *   anything else (a RangeError or TypeError is a finding);
 * - what it returns is what a reference model of the wire format says, and
 *   round-trips where an encoder exists: parse(encode(v)) equals v, and
 *   encode(parse(x)) parses to the same value (and is x where x is canonical);
 * - its work is bounded by its input: entries and frames decoded ≤ bytes,
 *   bytes held ≤ bytes fed.
 *
 * Used by test/reliability/fuzz-parsers.test.ts (a bounded run) and
 * test/fuzz/run.ts (`npm run fuzz`, a long one).
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { TruncatedError } from '../../lib/protocol/bytes.js'
import { FRAME_HEADER_SIZE, CloseCode, FrameDecoder, ProtocolError, encodeFrame, type Frame } from '../../lib/protocol/frame.js'
import { FRAME_CHARGE } from '../../lib/protocol/flow-control.js'
import { InboundMessages, type InboundError } from '../../lib/protocol/inbound.js'
import { MetadataError, encodeMetadata, isBinaryKey, readMetadata, type MetadataEntry } from '../../lib/protocol/metadata.js'
import { ByteReader } from '../../lib/protocol/bytes.js'
import {
  buildCall, buildGoAway, buildHeaders, buildSettings, buildTrailers, buildWindowUpdate, NO_TIMEOUT,
  parseCall, parseGoAway, parseHeaders, parseSettings, parseTrailers, parseWindowUpdate,
  type CallStart, type CallStatus, type GoAway, type Settings
} from '../../lib/protocol/payload.js'
import { Status } from '../../lib/protocol/status.js'
import { CallError, Control, MessageReassembler, PREFIX_SIZE, parseClientMessage } from '../../lib/server/grpc-websockets/frames.js'
import {
  HeaderBlockError, asciiBytes, encodeHeaderBlock, parseGrpcTimeout, parseHeaderBlock, requestEntries
} from '../../lib/server/grpc-websockets/header-block.js'
import { cutsArb, hex, mutate, mutated, split, type Mutated, type Mutation } from './mutate.js'

export interface Target<T = any> {
  name: string
  /** The source file whose parser this drives. */
  module: string
  arbitrary: fc.Arbitrary<T>
  /** Throws (an AssertionError or {@link Finding}) when a property breaks. */
  check: (input: T) => void
  /** Bytes of input, for the work-per-byte figures of the long run. */
  size: (input: T) => number
  /** The input as the raw bytes a regression test needs. */
  describe: (input: T) => string
  /**
   * Set while a property of this target is known to fail, in code outside
   * the parsers: the bounded test leaves the target out, the long run still
   * runs it and reports what it finds.
   */
  open?: string
}

/** A broken property other than a failed assertion: an undocumented exception. */
export class Finding extends Error {
  override name = 'Finding'
}

type ErrorClass = abstract new (...args: any[]) => Error

/** Runs `parse`; an error of one of the `allowed` classes is an answer, anything else a finding. */
function attempt<R> (parse: () => R, allowed: readonly ErrorClass[]): { value: R } | { error: Error } {
  try {
    return { value: parse() }
  } catch (err) {
    if (allowed.some(c => err instanceof c)) return { error: err as Error }
    const e = err as Error
    throw new Finding(`threw ${e?.name ?? typeof err}: ${e?.message ?? String(err)} (allowed: ${allowed.map(c => c.name).join(', ')})`)
  }
}

const isValidUtf8 = (bytes: Uint8Array): boolean => {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    return true
  } catch {
    return false
  }
}

function concat (parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const describeMutated = (m: Mutated<unknown>): string => `hex ${hex(m.bytes)}`
const sizeMutated = (m: Mutated<unknown>): number => m.bytes.length

// --- values ------------------------------------------------------------------

const u32 = fc.oneof(
  fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xfffffffe, NO_TIMEOUT),
  fc.integer({ min: 0, max: 0xffffffff })
)
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.constant('/test.Test/Unary'))

const keyArb = fc.oneof(
  fc.constantFrom('a', 'b', 'x-bin', 'grpc-timeout', 'user-agent', 'authorization', 'content-type', 'x-grpc-web', 'grpc-status', '-bin', 'a.b_c-d'),
  fc.stringMatching(/^[a-z0-9_.-]{1,16}$/),
  fc.stringMatching(/^[a-z0-9_.-]{1,8}-bin$/)
)
const asciiValue = fc.oneof(
  { weight: 30, arbitrary: fc.stringMatching(/^[\x20-\x7e]{0,40}$/) },
  // Past 4 KiB, readMetadata decodes a value in chunks.
  { weight: 1, arbitrary: fc.tuple(fc.stringMatching(/^[\x20-\x7e]$/), fc.integer({ min: 4095, max: 9000 })).map(([c, n]) => c.repeat(n)) }
)
const entryArb: fc.Arbitrary<MetadataEntry> = keyArb.chain(key =>
  isBinaryKey(key)
    ? fc.uint8Array({ maxLength: 40 }).map((v): MetadataEntry => [key, v])
    : asciiValue.map((v): MetadataEntry => [key, v]))
/** Few distinct entries, or one entry repeated many times (the repeated-key cases). */
export const metadataArb: fc.Arbitrary<MetadataEntry[]> = fc.oneof(
  { weight: 4, arbitrary: fc.array(entryArb, { maxLength: 8 }) },
  { weight: 1, arbitrary: fc.tuple(entryArb, fc.integer({ min: 1, max: 300 })).map(([e, k]) => Array.from({ length: k }, () => e)) }
)

/** A payload: the frame a builder made, without its header. */
const payloadOf = (frame: Uint8Array): Uint8Array => frame.subarray(FRAME_HEADER_SIZE)

// Each valid entry takes at least 2 + 1 + 4 bytes (a key is never empty).
const MIN_ENTRY = 7

// --- protocol payloads ---------------------------------------------------------

const defaults: Settings = { maxConcurrentStreams: 100, initialWindowSize: 65535, maxFrameSize: 262144, maxMessageSize: 4194304, maxMetadataSize: 16384 }
const settingNames: Record<number, keyof Settings> = { 1: 'maxConcurrentStreams', 2: 'initialWindowSize', 3: 'maxFrameSize', 4: 'maxMessageSize', 5: 'maxMetadataSize' }

const settingsTarget: Target<Mutated<Settings | Array<[number, number]>>> = {
  name: 'settings',
  module: 'lib/protocol/payload.ts',
  arbitrary: fc.oneof(
    mutated(fc.record({ maxConcurrentStreams: u32, initialWindowSize: u32, maxFrameSize: u32, maxMessageSize: u32, maxMetadataSize: u32 }, { noNullPrototype: true }), s => payloadOf(buildSettings(s))),
    // Unknown ids, repeated ids, any order.
    mutated(fc.array(fc.tuple(fc.oneof(fc.integer({ min: 0, max: 7 }), fc.constantFrom(0x7fff, 0xffff)), u32), { maxLength: 12 }), pairs => {
      const out = new Uint8Array(pairs.length * 6)
      const view = new DataView(out.buffer)
      pairs.forEach(([id, v], i) => { view.setUint16(i * 6, id); view.setUint32(i * 6 + 2, v) })
      return out
    })
  ),
  check ({ value, mutations, bytes }) {
    const got = attempt(() => parseSettings(bytes, defaults), [TruncatedError])
    // Model: 6-byte (id, value) pairs over the defaults, the last of an id winning, unknown ids skipped.
    if (bytes.length % 6 !== 0) {
      assert.ok('error' in got, `a ${bytes.length}-byte SETTINGS payload is not whole pairs`)
      return
    }
    assert.ok('value' in got)
    const expected = { ...defaults }
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    for (let at = 0; at < bytes.length; at += 6) {
      const name = settingNames[view.getUint16(at)]
      if (name !== undefined) expected[name] = view.getUint32(at + 2)
    }
    assert.deepEqual(got.value, expected)
    assert.deepEqual(parseSettings(payloadOf(buildSettings(got.value)), defaults), got.value, 'encode(parse(x)) parses back')
    if (mutations.length === 0 && !Array.isArray(value)) assert.deepEqual(got.value, value, 'parse(encode(v)) is v')
  },
  size: sizeMutated,
  describe: describeMutated
}

const callArb: fc.Arbitrary<CallStart> = fc.record({ path: text, timeoutMs: u32, initialWindowSize: u32, metadata: metadataArb }, { noNullPrototype: true })

const callTarget: Target<Mutated<CallStart>> = {
  name: 'call',
  module: 'lib/protocol/payload.ts',
  arbitrary: mutated(callArb, c => payloadOf(buildCall(1, c))),
  check ({ value, mutations, bytes }) {
    const got = attempt(() => parseCall(bytes), [TruncatedError, MetadataError])
    if (mutations.length === 0) {
      assert.ok('value' in got, 'a built CALL parses')
      const { metadataSize, pathBytes, ...start } = got.value
      assert.deepEqual(start, value, 'parse(encode(v)) is v')
      assert.deepEqual([...pathBytes], [...new TextEncoder().encode(value.path)], 'pathBytes are the path\'s UTF-8')
    }
    if (!('value' in got)) return
    const call = got.value
    assert.ok(call.metadata.length <= bytes.length / MIN_ENTRY, `${call.metadata.length} entries from ${bytes.length} bytes`)
    assert.ok(call.metadataSize <= bytes.length - 10)
    const again = payloadOf(buildCall(1, call))
    const { metadataSize: _a, pathBytes: _c, ...reparsed } = parseCall(again)
    const { metadataSize: _b, pathBytes: _d, ...first } = call
    assert.deepEqual(reparsed, first, 'encode(parse(x)) parses to parse(x)')
    // Bytes after the metadata block are ignored (PROTOCOL.md §6.1), and a path that is not UTF-8 decodes with U+FFFD.
    const pathBytes = bytes.subarray(10, 10 + ((bytes[8]! << 8) | bytes[9]!))
    if (isValidUtf8(pathBytes)) assert.deepEqual(again, bytes.subarray(0, again.length), 'encode(parse(x)) is x up to ignored bytes')
  },
  size: sizeMutated,
  describe: describeMutated
}

const headersTarget: Target<Mutated<MetadataEntry[]>> = {
  name: 'headers',
  module: 'lib/protocol/payload.ts, lib/protocol/metadata.ts',
  arbitrary: mutated(metadataArb, m => payloadOf(buildHeaders(1, m))),
  check ({ value, mutations, bytes }) {
    const got = attempt(() => parseHeaders(bytes), [TruncatedError, MetadataError])
    if (mutations.length === 0) {
      assert.ok('value' in got, 'a built HEADERS parses')
      assert.deepEqual(got.value, value, 'parse(encode(v)) is v')
    }
    if (!('value' in got)) return
    assert.ok(got.value.length <= bytes.length / MIN_ENTRY, `${got.value.length} entries from ${bytes.length} bytes`)
    const again = encodeMetadata(got.value)
    assert.deepEqual(again, bytes.subarray(0, again.length), 'encode(parse(x)) is x up to ignored bytes')
  },
  size: sizeMutated,
  describe: describeMutated
}

/** readMetadata on its own, at an offset inside a larger payload, as CALL and TRAILERS read it. */
const metadataTarget: Target<Mutated<MetadataEntry[]> & { skip: number }> = {
  name: 'metadata',
  module: 'lib/protocol/metadata.ts',
  arbitrary: fc.tuple(mutated(metadataArb, encodeMetadata), fc.integer({ min: 0, max: 3 })).map(([m, skip]) => ({ ...m, skip })),
  check ({ value, mutations, bytes, skip }) {
    const framed = new Uint8Array(skip + bytes.length)
    framed.set(bytes, skip)
    const r = new ByteReader(framed)
    r.offset = skip
    const got = attempt(() => readMetadata(r), [TruncatedError, MetadataError])
    if (mutations.length === 0) {
      assert.ok('value' in got)
      assert.deepEqual(got.value, value)
      assert.equal(r.remaining, 0, 'a whole block is read to its end')
    }
    if (!('value' in got)) return
    assert.ok(got.value.length <= bytes.length / MIN_ENTRY)
    assert.ok(r.offset <= framed.length)
    const again = encodeMetadata(got.value)
    assert.equal(again.length, r.offset - skip, 'the reader stops at the end of the block')
    assert.deepEqual(again, bytes.subarray(0, again.length))
    for (const [, v] of got.value) {
      // Binary values are copies: they outlive the frame.
      if (v instanceof Uint8Array && v.length > 0) assert.notEqual(v.buffer, framed.buffer)
    }
  },
  size: sizeMutated,
  describe: m => `hex ${hex(m.bytes)} at offset ${m.skip}`
}

const trailersArb: fc.Arbitrary<CallStatus> = fc.record({
  code: fc.oneof(fc.integer({ min: 0, max: 16 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
  details: text,
  metadata: metadataArb
}, { noNullPrototype: true })

const trailersTarget: Target<Mutated<CallStatus>> = {
  name: 'trailers',
  module: 'lib/protocol/payload.ts',
  arbitrary: mutated(trailersArb, s => payloadOf(buildTrailers(1, s))),
  check ({ value, mutations, bytes }) {
    const got = attempt(() => parseTrailers(bytes), [TruncatedError, MetadataError])
    if (mutations.length === 0) {
      assert.ok('value' in got, 'built TRAILERS parse')
      assert.deepEqual(got.value, value, 'parse(encode(v)) is v')
    }
    if (!('value' in got)) return
    const status = got.value
    assert.ok(Number.isInteger(status.code) && status.code >= -0x80000000 && status.code <= 0x7fffffff)
    assert.ok(status.metadata.length <= bytes.length / MIN_ENTRY)
    const again = payloadOf(buildTrailers(1, status))
    assert.deepEqual(parseTrailers(again), status, 'encode(parse(x)) parses to parse(x)')
    const detailsLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4)
    if (isValidUtf8(bytes.subarray(8, 8 + detailsLength))) assert.deepEqual(again, bytes.subarray(0, again.length))
  },
  size: sizeMutated,
  describe: describeMutated
}

const goAwayTarget: Target<Mutated<GoAway>> = {
  name: 'goaway',
  module: 'lib/protocol/payload.ts',
  arbitrary: mutated(fc.record({ lastStreamId: u32, reason: text }, { noNullPrototype: true }), g => payloadOf(buildGoAway(g))),
  check ({ value, mutations, bytes }) {
    const got = attempt(() => parseGoAway(bytes), [TruncatedError])
    assert.equal('error' in got, bytes.length < 4, 'only a payload shorter than its id field is refused')
    if (mutations.length === 0 && 'value' in got) assert.deepEqual(got.value, value)
    if (!('value' in got)) return
    const again = payloadOf(buildGoAway(got.value))
    assert.deepEqual(parseGoAway(again), got.value)
    if (isValidUtf8(bytes.subarray(4))) assert.deepEqual(again, bytes)
  },
  size: sizeMutated,
  describe: describeMutated
}

const windowUpdateTarget: Target<Mutated<number>> = {
  name: 'window-update',
  module: 'lib/protocol/payload.ts',
  arbitrary: mutated(u32, n => payloadOf(buildWindowUpdate(1, n))),
  check ({ value, mutations, bytes }) {
    const got = attempt(() => parseWindowUpdate(bytes), [TruncatedError])
    assert.equal('error' in got, bytes.length < 4)
    if (!('value' in got)) return
    assert.equal(got.value, new DataView(bytes.buffer, bytes.byteOffset).getUint32(0))
    if (mutations.length === 0) assert.equal(got.value, value)
  },
  size: sizeMutated,
  describe: describeMutated
}

// --- the frame decoder -------------------------------------------------------------

interface FrameSpec { type: number, flags: number, streamId: number, payload: Uint8Array }
const frameSpecArb: fc.Arbitrary<FrameSpec> = fc.record({
  type: fc.oneof(fc.integer({ min: 1, max: 10 }), fc.integer({ min: 0, max: 255 })),
  flags: fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.integer({ min: 0, max: 255 })),
  streamId: u32,
  payload: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 80 }))
})

interface DecoderInput extends Mutated<FrameSpec[]> { cuts: number[], maxPayload: number }

/** What the wire format says `bytes` hold: whole frames, then an oversized header or a partial frame. */
function modelFrames (bytes: Uint8Array, maxPayload: number): { frames: FrameSpec[], oversized: boolean, left: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const frames: FrameSpec[] = []
  let at = 0
  while (bytes.length - at >= FRAME_HEADER_SIZE) {
    const length = view.getUint32(at + 6)
    if (length > maxPayload) return { frames, oversized: true, left: bytes.length - at }
    if (bytes.length - at - FRAME_HEADER_SIZE < length) break
    frames.push({ type: bytes[at]!, flags: bytes[at + 1]!, streamId: view.getUint32(at + 2), payload: bytes.slice(at + 10, at + 10 + length) })
    at += FRAME_HEADER_SIZE + length
  }
  return { frames, oversized: false, left: bytes.length - at }
}

const plain = (f: Frame | FrameSpec): FrameSpec => ({ type: f.type, flags: f.flags, streamId: f.streamId, payload: f.payload.slice() })

const decoderTarget: Target<DecoderInput> = {
  name: 'frame-decoder',
  module: 'lib/protocol/frame.ts',
  arbitrary: fc.tuple(
    mutated(fc.array(frameSpecArb, { maxLength: 6 }), frames => concat(frames.map(f => encodeFrame(f.type, f.flags, f.streamId, f.payload)))),
    cutsArb,
    fc.constantFrom(0, 1, 9, 10, 16, 64, 80, 81, 0x7fffffff)
  ).map(([m, cuts, maxPayload]) => ({ ...m, cuts, maxPayload })),
  check ({ value, mutations, bytes, cuts, maxPayload }) {
    const model = modelFrames(bytes, maxPayload)
    if (mutations.length === 0 && value.every(f => f.payload.length <= maxPayload)) {
      assert.deepEqual(model.frames, value.map(plain), 'the model reads back what was encoded')
    }
    // In one piece.
    const whole = new FrameDecoder(maxPayload)
    const once = attempt(() => whole.push(bytes), [ProtocolError])
    if ('error' in once) {
      assert.ok(model.oversized, `refused: ${once.error.message}`)
      assert.equal((once.error as ProtocolError).closeCode, CloseCode.MESSAGE_TOO_BIG)
    } else {
      assert.ok(!model.oversized, 'an oversized frame header was accepted')
      assert.deepEqual(once.value.map(plain), model.frames)
      assert.equal(whole.buffered, model.left)
      const again = concat(once.value.map(f => encodeFrame(f.type, f.flags, f.streamId, f.payload)))
      assert.deepEqual(again, bytes.subarray(0, bytes.length - model.left), 'encode(decode(x)) is x')
    }
    // In pieces: the same frames, the same refusal, whatever the split.
    const pieces = new FrameDecoder(maxPayload)
    const got: FrameSpec[] = []
    let fed = 0
    let refused = false
    for (const piece of split(bytes, cuts)) {
      const before = pieces.buffered
      const r = attempt(() => pieces.push(piece), [ProtocolError])
      fed += piece.length
      if ('error' in r) {
        refused = true
        break
      }
      assert.ok(r.value.length <= (before + piece.length) / FRAME_HEADER_SIZE, 'frames ≤ bytes / 10')
      // Copy now: payloads are views, valid until the next push.
      got.push(...r.value.map(plain))
      assert.ok(pieces.buffered <= fed && pieces.buffered < FRAME_HEADER_SIZE + Math.max(maxPayload, 0) + 1, `holds ${pieces.buffered} bytes after ${fed}`)
    }
    assert.equal(refused, model.oversized, 'split decoding refuses exactly when whole decoding does')
    if (refused) {
      assert.deepEqual(got, model.frames.slice(0, got.length), 'frames before the refusal are the model\'s')
    } else {
      assert.deepEqual(got, model.frames)
      assert.equal(pieces.buffered, model.left)
    }
  },
  size: m => m.bytes.length,
  describe: m => `hex ${hex(m.bytes)}, maxPayload ${m.maxPayload}, cut into ${JSON.stringify(m.cuts)}`
}

// --- InboundMessages ------------------------------------------------------------------

type InboundOp = { op: 'frame', size: number, more: boolean } | { op: 'consume' }
interface InboundInput { windowSize: number, maxMessageSize: number, ops: InboundOp[] }

const inboundArb: fc.Arbitrary<InboundInput> = fc.record({
  windowSize: fc.constantFrom(0, 1, 2, 3, 10, 100, 1000, 65535, 0x7fffffff),
  maxMessageSize: fc.constantFrom(-1, 0, 1, 10, 100, 4096),
  ops: fc.array(fc.oneof(
    { weight: 4, arbitrary: fc.record({ op: fc.constant('frame' as const), size: fc.oneof(fc.constantFrom(0, 0, 1, 2, 5, 9, 10, 11, 50, 100, 101), fc.nat({ max: 1100 })), more: fc.boolean() }) },
    { weight: 1, arbitrary: fc.constant({ op: 'consume' as const }) }
  ), { maxLength: 120 })
})

/**
 * Drives one stream's InboundMessages as a peer would, checking it against
 * the window and size rules of PROTOCOL.md §7, message contents, and credit.
 * `bounded` adds the accounting the window promises (every MORE piece and every
 * queued message costs something).
 */
function checkInbound ({ windowSize, maxMessageSize, ops }: InboundInput, bounded: boolean): void {
  const credits: number[] = []
  const inbound = new InboundMessages(windowSize, maxMessageSize, n => credits.push(n))
  let accepted = 0 // window the frames took: payload + FRAME_CHARGE each
  let released = 0 // window whose credit may go back
  let partial: number[] = []
  let pieces = 0
  let piecesHeld = 0 // credit of pieces that arrived while a whole message waited unread
  const queue: number[] = [] // credit held for each whole message not yet taken
  let counter = 0
  for (const step of ops) {
    if (step.op === 'consume') {
      const n = queue.shift()
      inbound.consumed()
      if (n !== undefined) released += n
      if (queue.length === 0) {
        released += piecesHeld
        piecesHeld = 0
      }
    } else {
      const chunk = Uint8Array.from({ length: step.size }, () => (counter++) & 0xff)
      const credit = credits.reduce((a, b) => a + b, 0)
      const room = windowSize - accepted + credit
      const cost = step.size + FRAME_CHARGE
      let r: Uint8Array | null | InboundError
      try {
        r = inbound.receive(chunk, step.more)
      } catch (err) {
        // The one refusal that ends the connection: an empty piece.
        if (err instanceof ProtocolError && step.more && step.size === 0) return
        throw new Finding(`receive threw ${(err as Error).name}: ${(err as Error).message}`)
      }
      assert.ok(!(step.more && step.size === 0), 'an empty MORE piece was accepted')
      const tooBig = maxMessageSize >= 0 && partial.length + step.size > maxMessageSize
      if (cost > room || tooBig) {
        assert.ok(r !== null && !(r instanceof Uint8Array), `${step.size} bytes (${cost} charged) with room ${room} (max ${maxMessageSize}) were accepted`)
        assert.equal(r.code, Status.RESOURCE_EXHAUSTED)
        assert.equal(typeof r.details, 'string')
        return // the stream ends here
      }
      assert.ok(r === null || r instanceof Uint8Array, `refused ${step.size} bytes with room ${room}: ${JSON.stringify(r)}`)
      accepted += cost
      if (step.more) {
        assert.equal(r, null)
        partial.push(...chunk)
        pieces++
        if (queue.length === 0) released += cost
        else piecesHeld += cost
        chunk.fill(0xee) // the socket reuses its buffer: the piece must have been copied
        if (bounded) assert.ok(pieces <= partial.length, `${pieces} MORE pieces held for a message of ${partial.length} bytes`)
      } else {
        assert.ok(r instanceof Uint8Array)
        assert.deepEqual([...r], [...partial, ...chunk], 'the message is its pieces joined')
        queue.push(cost + piecesHeld)
        piecesHeld = 0
        partial = []
        pieces = 0
        if (bounded) assert.ok(queue.length * FRAME_CHARGE <= Math.max(FRAME_CHARGE, windowSize), `${queue.length} messages queued with a ${windowSize}-byte window`)
      }
    }
    // Credit: never more than was released.
    const credit = credits.reduce((a, b) => a + b, 0)
    assert.ok(credits.every(c => c > 0), 'no zero WINDOW_UPDATE')
    assert.ok(credit <= released, `${credit} bytes of credit for ${released} released`)
    const owed = released - credit
    const room = windowSize - accepted + credit
    // Credit may wait for half a window, or for the application to take a
    // queued message; never with the sender stuck (a window too small for
    // two frames is stuck by its size alone).
    if (windowSize >= 2 * (FRAME_CHARGE + 1)) {
      assert.ok(owed === 0 || queue.length > 0 || (owed < windowSize / 2 && room > FRAME_CHARGE), `${owed} bytes of credit held back with room ${room}`)
    }
  }
}

const inboundTarget: Target<InboundInput> = {
  name: 'inbound',
  module: 'lib/protocol/inbound.ts',
  arbitrary: inboundArb,
  check: input => { checkInbound(input, false) },
  size: i => i.ops.reduce((n, o) => n + (o.op === 'frame' ? FRAME_HEADER_SIZE + o.size : 0), 0),
  describe: i => JSON.stringify(i)
}

const inboundBoundedTarget: Target<InboundInput> = {
  ...inboundTarget,
  name: 'inbound-bounded',
  check: input => { checkInbound(input, true) }
}

// --- grpc-websockets ---------------------------------------------------------------------

interface HeaderLineSpec { name: string, sep: string, value: string, eol: string, blankBefore: boolean }
const bin64 = (bytes: Uint8Array, style: number): string => {
  const b = Buffer.from(bytes).toString(style === 2 ? 'base64url' : 'base64')
  return style === 1 ? b.replace(/=+$/, '') : b
}
const headerLineArb: fc.Arbitrary<HeaderLineSpec> = keyArb.chain(key => fc.record({
  name: fc.mixedCase(fc.constant(key)),
  sep: fc.constantFrom(':', ': ', ':\t', ':  '),
  value: isBinaryKey(key)
    ? fc.array(fc.tuple(fc.uint8Array({ maxLength: 20 }), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 3 }).map(vs => vs.map(([b, s]) => bin64(b, s)).join(', '))
    : key === 'grpc-timeout' ? fc.oneof(fc.stringMatching(/^\d{1,9}[HMSmunx]$/), asciiValue) : asciiValue,
  eol: fc.constantFrom('\r\n', '\n'),
  blankBefore: fc.boolean()
}))
const headerBlockText = (lines: readonly HeaderLineSpec[]): string =>
  lines.map(l => `${l.blankBefore ? '\r\n' : ''}${l.name}${l.sep}${l.value}${l.eol}`).join('')

/** The entries requestEntries should give for unmutated lines (names lower-cased, values trimmed, -bin decoded). */
function modelEntries (lines: readonly HeaderLineSpec[]): MetadataEntry[] {
  const out: MetadataEntry[] = []
  for (const l of lines) {
    const name = l.name.toLowerCase()
    const value = l.value.replace(/^[ \t]+|[ \t]+$/g, '')
    if (name === 'x-grpc-web') continue
    if (isBinaryKey(name)) for (const part of value.split(',')) out.push([name, new Uint8Array(Buffer.from(part.trim(), 'base64'))])
    else out.push([name, value])
  }
  return out
}

const plainEntries = (entries: readonly MetadataEntry[]): MetadataEntry[] =>
  entries.map(([k, v]) => [k, typeof v === 'string' ? v : new Uint8Array(v)])

const headerBlockTarget: Target<Mutated<HeaderLineSpec[]>> = {
  name: 'header-block',
  module: 'lib/server/grpc-websockets/header-block.ts',
  arbitrary: fc.oneof(
    { weight: 4, arbitrary: mutated(fc.array(headerLineArb, { maxLength: 8 }), lines => asciiBytes(headerBlockText(lines))) },
    // One key many times: the joins and splits of repeated values.
    { weight: 1, arbitrary: mutated(fc.tuple(headerLineArb, fc.integer({ min: 1, max: 200 })).map(([l, k]) => Array.from({ length: k }, () => l)), lines => asciiBytes(headerBlockText(lines))) },
    // A folded continuation line (refused), which random mutations rarely make.
    {
      weight: 1,
      arbitrary: fc.tuple(fc.array(headerLineArb, { minLength: 1, maxLength: 4 }), fc.constantFrom(' x', '\tx', ' ')).map(([lines, fold]): Mutated<HeaderLineSpec[]> => {
        const original = asciiBytes(headerBlockText(lines))
        const m: Mutation = { op: 'append', bytes: asciiBytes(`${fold}\r\n`) }
        return { value: lines, original, mutations: [m], bytes: mutate(original, m) }
      })
    }
  ),
  check ({ value, mutations, bytes }) {
    const parsed = attempt(() => parseHeaderBlock(bytes), [HeaderBlockError])
    if (!('value' in parsed)) {
      assert.ok(mutations.length > 0, `refused an unmutated block: ${parsed.error.message}`)
      return
    }
    const lines = parsed.value
    assert.ok(lines.length <= bytes.length / 2, `${lines.length} lines from ${bytes.length} bytes`)
    for (const [name, v] of lines) {
      assert.equal(name, name.toLowerCase())
      assert.ok(!/^[ \t]|[ \t]$/.test(v), 'values are trimmed')
    }
    const entries = attempt(() => requestEntries(lines), [HeaderBlockError])
    if (mutations.length === 0) {
      assert.ok('value' in entries, 'unmutated lines give entries')
      assert.deepEqual(plainEntries(entries.value), modelEntries(value))
    }
    if (!('value' in entries)) return
    assert.ok(entries.value.length <= bytes.length + lines.length, `${entries.value.length} entries from ${bytes.length} bytes`)
    // encode(parse(x)) parses to parse(x): what the server sends back in this format, a client reads as sent.
    const again = requestEntries(parseHeaderBlock(asciiBytes(encodeHeaderBlock(entries.value))))
    assert.deepEqual(plainEntries(again), plainEntries(entries.value))
  },
  size: sizeMutated,
  describe: describeMutated
}

const unitMs: Record<string, [multiply: bigint, divide: bigint]> = { H: [3_600_000n, 1n], M: [60_000n, 1n], S: [1000n, 1n], m: [1n, 1n], u: [1n, 1000n], n: [1n, 1_000_000n] }

const grpcTimeoutTarget: Target<string> = {
  name: 'grpc-timeout',
  module: 'lib/server/grpc-websockets/header-block.ts',
  arbitrary: fc.oneof(
    fc.stringMatching(/^\d{0,10}[HMSmun]$/),
    fc.tuple(fc.stringMatching(/^\d{1,9}$/), fc.constantFrom('H', 'M', 'S', 'm', 'u', 'n', 'h', 's', 'x', ''), fc.constantFrom('', ' ', ', 5S', '\n', 'S')).map(([d, u, tail]) => d + u + tail),
    fc.string({ maxLength: 12 }),
    fc.string({ unit: 'binary', maxLength: 10 })
  ),
  check (value) {
    const got = (() => {
      try {
        return parseGrpcTimeout(value)
      } catch (err) {
        throw new Finding(`threw ${(err as Error).name}: ${(err as Error).message}`)
      }
    })()
    // Model: 1 to 8 ASCII digits and one unit (the gRPC spec), sub-millisecond units rounded up.
    const digits = value.slice(0, -1)
    const unit = unitMs[value.slice(-1)]
    const valid = unit !== undefined && digits.length >= 1 && digits.length <= 8 && [...digits].every(c => c >= '0' && c <= '9')
    if (!valid) {
      assert.equal(got, null)
      return
    }
    const [mul, div] = unit
    const expected = (BigInt(digits) * mul + div - 1n) / div
    assert.equal(got, Number(expected))
    assert.ok(Number.isSafeInteger(got))
  },
  size: v => v.length,
  describe: v => JSON.stringify(v)
}

const clientMessageTarget: Target<Uint8Array> = {
  name: 'client-message',
  module: 'lib/server/grpc-websockets/frames.ts',
  arbitrary: fc.oneof(
    fc.tuple(fc.constantFrom(0, 1, 2, 0x80, 0xff), fc.uint8Array({ maxLength: 8 })).map(([c, rest]) => Uint8Array.from([c, ...rest])),
    fc.constantFrom(new Uint8Array(0), Uint8Array.of(1), Uint8Array.of(0)),
    fc.uint8Array({ maxLength: 16 })
  ),
  check (bytes) {
    const got = attempt(() => parseClientMessage(bytes), [CallError])
    if (bytes.length > 0 && bytes[0] === Control.DATA) {
      assert.ok('value' in got && got.value.kind === 'data')
      assert.deepEqual(got.value.bytes, bytes.subarray(1))
    } else if (bytes.length === 1 && bytes[0] === Control.END) {
      assert.ok('value' in got && got.value.kind === 'end')
    } else {
      assert.ok('error' in got, 'refused')
      assert.equal((got.error as CallError).code, Status.INTERNAL)
    }
  },
  size: b => b.length,
  describe: b => `hex ${hex(b)}`
}

interface GrpcMessageSpec { flags: number, body: Uint8Array }
interface ReassemblerInput extends Mutated<GrpcMessageSpec[]> { cuts: number[], maxMessageSize: number }

const reassemblerTarget: Target<ReassemblerInput> = {
  name: 'reassembler',
  module: 'lib/server/grpc-websockets/frames.ts',
  arbitrary: fc.tuple(
    mutated(fc.array(fc.record({
      flags: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 0x80, 0x81, 0xff) }),
      body: fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 70 }))
    }), { maxLength: 8 }), ms => concat(ms.map(m => {
      const out = new Uint8Array(PREFIX_SIZE + m.body.length)
      out[0] = m.flags
      new DataView(out.buffer).setUint32(1, m.body.length)
      out.set(m.body, PREFIX_SIZE)
      return out
    }))),
    cutsArb,
    fc.constantFrom(-1, 0, 1, 16, 64, 70, 0x7fffffff)
  ).map(([m, cuts, maxMessageSize]) => ({ ...m, cuts, maxMessageSize })),
  check ({ value, mutations, bytes, cuts, maxMessageSize }) {
    // Model: 5-byte prefixes; flags other than 0 and lengths over the limit refused once the prefix is whole.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    const expected: Uint8Array[] = []
    let at = 0
    let refused: number | null = null
    while (bytes.length - at >= PREFIX_SIZE) {
      const flags = bytes[at]!
      const length = view.getUint32(at + 1)
      if (flags !== 0) { refused = Status.INTERNAL; break }
      if (maxMessageSize !== -1 && length > maxMessageSize) { refused = Status.RESOURCE_EXHAUSTED; break }
      if (bytes.length - at - PREFIX_SIZE < length) break
      expected.push(bytes.slice(at + PREFIX_SIZE, at + PREFIX_SIZE + length))
      at += PREFIX_SIZE + length
    }
    if (mutations.length === 0 && refused === null) assert.deepEqual(expected, value.map(m => m.body))
    const reassembler = new MessageReassembler(maxMessageSize)
    const got: Uint8Array[] = []
    let fed = 0
    let error: CallError | null = null
    for (const piece of split(bytes, cuts)) {
      const r = attempt(() => reassembler.push(piece), [CallError])
      fed += piece.length
      if ('error' in r) {
        error = r.error as CallError
        break
      }
      assert.ok(r.value.length <= piece.length / PREFIX_SIZE + 1, `${r.value.length} messages from ${piece.length} bytes`)
      got.push(...r.value.map(m => m.slice()))
      const cap = PREFIX_SIZE + (maxMessageSize === -1 ? Infinity : maxMessageSize)
      assert.ok(reassembler.buffered <= fed && reassembler.buffered <= cap, `holds ${reassembler.buffered} bytes after ${fed}`)
    }
    assert.equal(error?.code ?? null, refused, 'refused exactly where the model is, with its code')
    if (error !== null) {
      assert.deepEqual(got, expected.slice(0, got.length))
    } else {
      assert.deepEqual(got, expected)
      assert.equal(reassembler.buffered, bytes.length - at)
    }
  },
  size: m => m.bytes.length,
  describe: m => `hex ${hex(m.bytes)}, maxMessageSize ${m.maxMessageSize}, cut into ${JSON.stringify(m.cuts)}`
}

export const targets: Target[] = [
  decoderTarget,
  settingsTarget,
  callTarget,
  headersTarget,
  metadataTarget,
  trailersTarget,
  goAwayTarget,
  windowUpdateTarget,
  inboundTarget,
  inboundBoundedTarget,
  headerBlockTarget,
  grpcTimeoutTarget,
  clientMessageTarget,
  reassemblerTarget
]
