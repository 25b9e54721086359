/**
 * Coverage-guided fuzzing of the byte-input targets (`npm run fuzz -- --guided`),
 * as libFuzzer does it: V8's block coverage of the parser's files (through
 * node:inspector) says which inputs reach code, or skip code, in a way no
 * earlier input did; those join a corpus, and later inputs are the corpus
 * mutated (mutate.ts) or spliced, with some fresh samples mixed in.
 *
 * Taking coverage costs about 10 ms, so it is taken once per batch; a batch
 * that found something new is re-run in halves, down to the inputs that did.
 */
import { Session } from 'node:inspector'
import fc from 'fast-check'
import { mutate, mutationArb, type Mutated, type Mutation } from './mutate.js'
import type { Target } from './targets.js'

interface Coverage { result: Array<{ url: string, functions: Array<{ ranges: Array<{ startOffset: number, endOffset: number, count: number }> }> }> }

const BATCH = 200
const MAX_CORPUS = 5000

/** Starts block coverage; call before the code to watch is loaded, so that all of it is counted. */
export function startCoverage (): Session {
  const session = new Session()
  session.connect()
  // A session in the same thread answers synchronously.
  session.post('Profiler.enable')
  session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true })
  return session
}

/** Blocks of `files` run (`:1`) or skipped (`:0`) since the last call; taking resets the counts. */
function take (session: Session, files: readonly string[]): string[] {
  let coverage: Coverage | undefined
  session.post('Profiler.takePreciseCoverage', (err, r) => {
    if (err !== null) throw err
    coverage = r as Coverage
  })
  const keys: string[] = []
  for (const script of coverage!.result) {
    if (!files.some(f => script.url.endsWith(f))) continue
    for (const fn of script.functions) {
      for (const range of fn.ranges) keys.push(`${script.url}:${range.startOffset}-${range.endOffset}:${range.count > 0 ? 1 : 0}`)
    }
  }
  return keys
}

export function isByteInput (input: unknown): input is Mutated<unknown> {
  return typeof input === 'object' && input !== null && (input as Mutated<unknown>).bytes instanceof Uint8Array && Array.isArray((input as Mutated<unknown>).mutations)
}

export interface GuidedResult { runs: number, corpus: number, blocksReached: number, findings: Array<{ input: string, error: string }> }

/** Fuzzes `target` until `spent()` says the budget is used; `progress` after every batch. */
export function guided (target: Target, spent: () => boolean, session: Session, progress: (runs: number) => void): GuidedResult {
  const files = [...target.module.split(', '), 'lib/protocol/bytes.ts', 'lib/protocol/metadata.ts']
  const known = new Set<string>()
  const corpus: Array<Mutated<unknown>> = []
  const findings: GuidedResult['findings'] = []
  const seen = new Set<string>()
  const pool = fc.sample(mutationArb, 10_000)
  let fresh: Array<Mutated<unknown>> = []
  let runs = 0

  const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!
  const sample = (): Mutated<unknown> => {
    if (fresh.length === 0) fresh = fc.sample(target.arbitrary, { numRuns: 1000, seed: (Math.random() * 2 ** 31) | 0 })
    return fresh.pop()!
  }
  const child = (): Mutated<unknown> => {
    const parent = pick(corpus)
    if (Math.random() < 0.1 && corpus.length > 1) {
      // Splice: the start of one input, the end of another (frames and messages in sequence).
      const other = pick(corpus).bytes
      const a = Math.floor(Math.random() * (parent.bytes.length + 1))
      const b = Math.floor(Math.random() * (other.length + 1))
      const bytes = new Uint8Array(a + other.length - b)
      bytes.set(parent.bytes.subarray(0, a))
      bytes.set(other.subarray(b), a)
      return { ...parent, mutations: [...parent.mutations, { op: 'truncate', at: a }], bytes }
    }
    const ms: Mutation[] = Array.from({ length: 1 + Math.floor(Math.random() * 3) }, () => pick(pool))
    return { ...parent, mutations: [...parent.mutations, ...ms], bytes: ms.reduce(mutate, parent.bytes) }
  }
  const run = (input: Mutated<unknown>): void => {
    runs++
    try {
      target.check(input)
    } catch (err) {
      const error = String((err as Error)?.message ?? err).split('\n')[0]!
      const key = error.replace(/\d+/g, 'N')
      if (!seen.has(key)) {
        seen.add(key)
        findings.push({ input: target.describe(input), error })
      }
    }
  }
  const isNew = (keys: readonly string[]): boolean => keys.some(k => !known.has(k))
  const absorb = (input: Mutated<unknown>, keys: readonly string[]): void => {
    if (!isNew(keys)) return
    for (const k of keys) known.add(k)
    if (corpus.length < MAX_CORPUS) corpus.push(input)
  }

  const bisect = (inputs: Array<Mutated<unknown>>): void => {
    for (const input of inputs) run(input)
    const keys = take(session, files)
    if (!isNew(keys)) return
    if (inputs.length === 1) {
      absorb(inputs[0]!, keys)
      return
    }
    const half = inputs.length >> 1
    bisect(inputs.slice(0, half))
    bisect(inputs.slice(half))
  }

  take(session, files)
  while (!spent()) {
    const batch = Array.from({ length: BATCH }, (_, i) => (i % 10 === 0 || corpus.length === 0 ? sample() : child()))
    for (const input of batch) run(input)
    if (isNew(take(session, files))) {
      bisect(batch.slice(0, BATCH / 2))
      bisect(batch.slice(BATCH / 2))
    }
    progress(runs)
  }
  return { runs, corpus: corpus.length, blocksReached: [...known].filter(k => k.endsWith(':1')).length, findings }
}
