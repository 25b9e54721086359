/**
 * A bounded fuzz of every parser of peer bytes (targets in test/fuzz/targets.ts:
 * structure-aware fast-check inputs, each checked for documented errors only,
 * agreement with a model of the wire format, round trips, and work bounded by
 * the input), and the regression tests for what the long run
 * (`npm run fuzz`) found, with the minimal inputs as raw bytes.
 */
import fc from 'fast-check'
import t from 'tap'
import { ByteReader, TruncatedError } from '../../lib/protocol/bytes.js'
import { FrameDecoder, encodeFrame } from '../../lib/protocol/frame.js'
import { readMetadata } from '../../lib/protocol/metadata.js'
import { parseCall, parseHeaders, parseTrailers } from '../../lib/protocol/payload.js'
import { targets } from '../fuzz/targets.js'

// Runs per target: under a second of CPU each here (about 15 s for the file with coverage on).
const runs: Record<string, number> = {
  'frame-decoder': 3000,
  settings: 10000,
  call: 2000,
  headers: 4000,
  metadata: 3000,
  trailers: 2000,
  goaway: 10000,
  'window-update': 20000,
  inbound: 5000,
  'inbound-bounded': 5000,
  'header-block': 1000,
  'grpc-timeout': 50000,
  'client-message': 20000,
  reassembler: 4000
}

for (const target of targets) {
  t.test(`Should hold every property of ${target.name} (${target.module}) for mutated inputs`, async t => {
    const numRuns = runs[target.name]
    t.ok(numRuns, 'a run count is set for every target')
    fc.assert(fc.property(target.arbitrary, target.check), { numRuns })
    t.pass(`${numRuns} inputs`)
  })
}

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'))

/** The largest length an Array was constructed with while `fn` ran. */
function largestArraySized (fn: () => void): number {
  const RealArray = globalThis.Array
  let largest = 0
  const note = (args: unknown[]): void => {
    if (args.length === 1 && typeof args[0] === 'number') largest = Math.max(largest, args[0])
  }
  globalThis.Array = new Proxy(RealArray, {
    construct (target, args, newTarget) { note(args); return Reflect.construct(target, args, newTarget) },
    apply (target, self, args) { note(args); return Reflect.apply(target, self, args) }
  })
  try {
    fn()
  } finally {
    globalThis.Array = RealArray
  }
  return largest
}

t.test('Should size a metadata block\'s entries by the bytes read, not by the count announced', async t => {
  // Found by `npm run fuzz` as the slowest input per byte: 0.7 ms of CPU for a 2-byte block
  // (65,535-slot array); the same truncation with a count of 1 costs 15 µs.
  const cases: Array<[string, () => unknown]> = [
    ['metadata block ffff', () => readMetadata(new ByteReader(hex('ffff')))],
    ['HEADERS ffff', () => parseHeaders(hex('ffff'))],
    ['CALL with count ffff', () => parseCall(hex('00000000 00000000 0000 ffff'))],
    ['TRAILERS with count ffff', () => parseTrailers(hex('00000000 00000000 ffff'))],
    ['count fffe, one entry, then nothing', () => readMetadata(new ByteReader(hex('fffe 0001 61 00000000')))]
  ]
  for (const [name, parse] of cases) {
    let error: unknown
    const largest = largestArraySized(() => {
      try { parse() } catch (err) { error = err }
    })
    t.ok(error instanceof TruncatedError, `${name}: TruncatedError`)
    t.ok(largest <= 16, `${name}: largest array sized ${largest}`)
  }
})

/** Bytes copied by Uint8Array set() and slice() while `fn` runs. */
function bytesCopied (fn: () => void): number {
  const proto = Uint8Array.prototype
  const { set, slice } = proto
  let copied = 0
  Object.defineProperty(proto, 'set', {
    configurable: true,
    writable: true,
    value: function (this: Uint8Array, source: ArrayLike<number>, offset?: number) { copied += source.length; set.call(this, source, offset) }
  })
  Object.defineProperty(proto, 'slice', {
    configurable: true,
    writable: true,
    value: function (this: Uint8Array, start?: number, end?: number) { const out = slice.call(this, start, end); copied += out.length; return out }
  })
  try {
    fn()
  } finally {
    // The originals live on %TypedArray%.prototype: removing the own properties restores them.
    delete (proto as { set?: unknown }).set
    delete (proto as { slice?: unknown }).slice
  }
  return copied
}

t.test('Should decode a frame fed a byte at a time with work linear in its size', async t => {
  // Before: every push re-joined everything held so far, so a frame of n bytes
  // fed in 1-byte pieces copied n²/2 bytes (8.4 MB for this 4 KiB frame).
  const payload = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff)
  const bytes = encodeFrame(0x04, 0x02, 7, payload)
  const decoder = new FrameDecoder(8192)
  const frames: Array<{ type: number, flags: number, streamId: number, payload: Uint8Array }> = []
  const copied = bytesCopied(() => {
    for (let i = 0; i < bytes.length; i++) {
      for (const f of decoder.push(bytes.subarray(i, i + 1))) frames.push({ ...f, payload: f.payload })
    }
  })
  t.equal(frames.length, 1)
  t.same({ ...frames[0], payload: [...frames[0]!.payload] }, { type: 4, flags: 2, streamId: 7, payload: [...payload] })
  t.equal(decoder.buffered, 0)
  t.ok(copied <= 3 * bytes.length, `${copied} bytes copied for a ${bytes.length}-byte frame`)
})

t.test('Should decode frames split anywhere, the held frame growing only to its own size', async t => {
  const frames = [encodeFrame(0x04, 0, 1, new Uint8Array(1000).fill(1)), encodeFrame(0x05, 0, 1), encodeFrame(0x04, 0, 3, new Uint8Array(37).fill(3))]
  const bytes = Uint8Array.from(frames.flatMap(f => [...f]))
  for (const size of [1, 3, 9, 10, 11, 64, 1009, 1010, 1011]) {
    const decoder = new FrameDecoder(1000)
    const got: number[][] = []
    const copied = bytesCopied(() => {
      for (let at = 0; at < bytes.length; at += size) {
        for (const f of decoder.push(bytes.subarray(at, at + size))) got.push([f.type, f.streamId, f.payload.length, f.payload[0] ?? -1])
      }
    })
    t.same(got, [[4, 1, 1000, 1], [5, 1, 0, -1], [4, 3, 37, 3]], `pieces of ${size}`)
    t.ok(copied <= 3 * bytes.length, `pieces of ${size}: ${copied} bytes copied for ${bytes.length}`)
    t.equal(decoder.buffered, 0)
  }
})
