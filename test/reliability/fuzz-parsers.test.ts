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
  'header-block': 1000,
  'grpc-timeout': 50000,
  'client-message': 20000,
  reassembler: 4000
}

for (const target of targets) {
  // A target with an open finding in a file this suite does not fix runs only in `npm run fuzz`.
  if (target.open !== undefined) continue
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
