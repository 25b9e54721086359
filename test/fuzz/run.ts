/**
 * The long fuzz run (`npm run fuzz`): every target of targets.ts in turn, in
 * a child process, in batches of fresh random seeds until its share of the
 * CPU time is spent (or six times that in wall time, on a busy machine). Prints runs, CPU time, findings (with the input as raw bytes
 * and the fast-check seed and path that replay it) and the slowest inputs per
 * byte (superlinear work shows there), then exits 1 if anything was found.
 * A child that sends no progress for `--hang` seconds is a hang: it is
 * stopped and the batch's seed reported.
 *
 *   npm run fuzz -- [--seconds 600] [--target call,header-block] [--hang 60] [--guided]
 *
 * --guided: coverage-guided (guided.ts) for the targets whose inputs are
 * bytes; the others run as without it.
 *
 * --seconds is CPU time for all the chosen targets together; FUZZ_SECONDS
 * sets its default (60).
 */
import { parseArgs } from 'node:util'
import { fork } from 'node:child_process'
import type { Session } from 'node:inspector'
import fc from 'fast-check'
import { guided, isByteInput, startCoverage } from './guided.js'
import type { Target } from './targets.js'

interface Slow { ns: number, bytes: number, input: string }
type Report =
  | { kind: 'batch', seed: number, runs: number }
  | { kind: 'finding', seed: number, path: string, input: string, error: string }
  | { kind: 'done', runs: number, cpuMs: number, slowest: Slow[], corpus?: number, blocksReached?: number }

const BATCH = 2000
const WALL_PER_CPU = 6
// Inputs slower than this (best of several re-runs) and per byte are reported as findings.
const SLOW_NS = 200_000
const SLOW_NS_PER_BYTE = 5_000

function timeBest (target: Target, input: unknown, times: number): number {
  let best = Infinity
  for (let i = 0; i < times; i++) {
    const t0 = process.hrtime.bigint()
    try { target.check(input) } catch {}
    best = Math.min(best, Number(process.hrtime.bigint() - t0))
  }
  return best
}

function work (target: Target, seconds: number, session: Session | null): void {
  const post = (r: Report): void => { process.send!(r) }
  const cpu0 = process.cpuUsage()
  const wallEnd = Date.now() + seconds * 1000 * WALL_PER_CPU
  const spent = (): boolean => {
    const u = process.cpuUsage(cpu0)
    return u.user + u.system >= seconds * 1e6 || Date.now() >= wallEnd
  }
  if (session !== null && isByteInput(fc.sample(target.arbitrary, 1)[0])) {
    post({ kind: 'batch', seed: 0, runs: 0 })
    const r = guided(target, spent, session, runs => { post({ kind: 'batch', seed: 0, runs }) })
    for (const f of r.findings) post({ kind: 'finding', seed: 0, path: '(guided)', input: f.input, error: f.error })
    const usage = process.cpuUsage(cpu0)
    post({ kind: 'done', runs: r.runs, cpuMs: Math.round((usage.user + usage.system) / 1000), slowest: [], corpus: r.corpus, blocksReached: r.blocksReached })
    return
  }
  let runs = 0
  let slowest: Array<Slow & { value: unknown }> = []
  const seen = new Set<string>()
  while (!spent()) {
    const seed = (Math.random() * 2 ** 31) | 0
    post({ kind: 'batch', seed, runs })
    const result = fc.check(fc.property(target.arbitrary, input => {
      const t0 = process.hrtime.bigint()
      target.check(input)
      // Only passing runs are timed: a failure's cost is mostly its assertion message.
      const ns = Number(process.hrtime.bigint() - t0)
      const bytes = target.size(input)
      if (slowest.length < 3 || ns / (bytes + 16) > slowest[2]!.ns / (slowest[2]!.bytes + 16)) {
        slowest.push({ ns, bytes, input: '', value: input })
        slowest.sort((a, b) => b.ns / (b.bytes + 16) - a.ns / (a.bytes + 16))
        slowest = slowest.slice(0, 3)
      }
    }), { numRuns: BATCH, seed, endOnFailure: false })
    runs += result.numRuns
    if (result.failed) {
      const error = String((result.errorInstance as Error)?.message ?? result.errorInstance).split('\n')[0]!
      const key = error.replace(/\d+/g, 'N')
      if (!seen.has(key)) {
        seen.add(key)
        post({ kind: 'finding', seed, path: result.counterexamplePath ?? '', input: target.describe(result.counterexample![0]), error })
      }
    }
  }
  // Timings of one run are noisy (GC, JIT): keep the best of several.
  const confirmed = slowest.map(s => ({ ns: timeBest(target, s.value, 5), bytes: s.bytes, input: target.describe(s.value) }))
  const usage = process.cpuUsage(cpu0)
  post({ kind: 'done', runs, cpuMs: Math.round((usage.user + usage.system) / 1000), slowest: confirmed })
}

async function runTarget (target: Target, seconds: number, hangSeconds: number, guide: boolean): Promise<{ runs: number, cpuMs: number, findings: string[], guided?: string }> {
  // The child runs this same file, so it needs tsx's loader too.
  const child = fork(new URL(import.meta.url), ['--child', target.name, String(seconds), ...(guide ? ['--guided'] : [])], { execArgv: ['--import', 'tsx'] })
  const findings: string[] = []
  let lastSeed = 0
  let runs = 0
  return await new Promise((resolve, reject) => {
    let watchdog = setTimeout(onHang, hangSeconds * 1000)
    function onHang (): void {
      findings.push(guide
        ? `HANG: no progress for ${hangSeconds} s in the coverage-guided loop after ${runs} runs`
        : `HANG: no progress for ${hangSeconds} s in the batch of seed ${lastSeed} (replay: fc.check(property, { seed: ${lastSeed}, numRuns: ${BATCH} }))`)
      child.kill('SIGKILL')
    }
    child.on('message', (r: Report) => {
      clearTimeout(watchdog)
      watchdog = setTimeout(onHang, hangSeconds * 1000)
      if (r.kind === 'batch') {
        lastSeed = r.seed
        runs = r.runs
      } else if (r.kind === 'finding') {
        findings.push(`${r.error}\n      input: ${r.input}\n      replay: seed ${r.seed}, path "${r.path}"`)
      } else {
        clearTimeout(watchdog)
        for (const s of r.slowest) {
          const line = `${(s.ns / 1000).toFixed(1)} µs for ${s.bytes} bytes: ${s.input.slice(0, 300)}`
          console.log(`    slowest: ${line}`)
          if (s.ns > SLOW_NS && s.ns / Math.max(1, s.bytes) > SLOW_NS_PER_BYTE) findings.push(`SLOW: ${line}`)
        }
        resolve({ runs: r.runs, cpuMs: r.cpuMs, findings, guided: r.corpus !== undefined ? `guided: corpus ${r.corpus}, ${r.blocksReached} blocks reached` : undefined })
      }
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(watchdog)
      if (code !== 0 && signal !== 'SIGKILL') findings.push(`CRASH: the fuzzing process exited with ${signal ?? code} in the batch of seed ${lastSeed}`)
      resolve({ runs, cpuMs: -1, findings })
    })
  })
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string', default: process.env.FUZZ_SECONDS ?? '60' },
      target: { type: 'string' },
      hang: { type: 'string', default: '60' },
      guided: { type: 'boolean', default: false }
    }
  })
  const { targets } = await import('./targets.js')
  const wanted = values.target?.split(',')
  const chosen = targets.filter(t => wanted === undefined || wanted.includes(t.name))
  if (chosen.length === 0) throw new Error(`no target named ${values.target}; targets: ${targets.map(t => t.name).join(', ')}`)
  const share = Number(values.seconds) / chosen.length
  console.log(`fuzzing ${chosen.length} targets, ${share.toFixed(1)} s of CPU each${values.guided ? ', coverage-guided where the input is bytes' : ''}`)
  let total = 0
  let found = 0
  let cpu = 0
  for (const target of chosen) {
    const r = await runTarget(target, share, Number(values.hang), values.guided)
    total += r.runs
    cpu += Math.max(0, r.cpuMs)
    found += r.findings.length
    console.log(`${target.name} (${target.module}): ${r.runs} runs, ${r.cpuMs} ms CPU, ${r.findings.length} findings${r.guided !== undefined ? ` (${r.guided})` : ''}${target.open !== undefined ? ` (open: ${target.open})` : ''}`)
    for (const f of r.findings) console.log(`  - ${f}`)
  }
  console.log(`${total} runs, ${(cpu / 1000).toFixed(1)} s CPU, ${found} findings`)
  process.exitCode = found > 0 ? 1 : 0
}

const child = process.argv.indexOf('--child')
if (child === -1) {
  await main()
} else {
  // Coverage starts before the targets (and the code they drive) load, so that all of it is counted.
  const session = process.argv.includes('--guided') ? startCoverage() : null
  const { targets } = await import('./targets.js')
  work(targets.find(t => t.name === process.argv[child + 1])!, Number(process.argv[child + 2]), session)
  process.disconnect!()
}
