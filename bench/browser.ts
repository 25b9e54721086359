/**
 * `npm run bench:browser` (about 3 minutes; `-- --quick`, about 20 s, writes
 * into the OS temp folder): the Echo service called from one page in
 * Debian's Chromium (headless, playwright-core) four ways: this project's
 * browser client over its WebSocket, its HTTP fallback over gRPC-Web,
 * connect-web over fetch against connect-fastify, and a raw WebSocket echo
 * as the floor (bench/browser-page.ts). The page comes from this process's
 * own Fastify app; each server is a process of its own, all on 127.0.0.1.
 *
 * Writes docs/bench-browser.json, .md and .svg (--quick: into
 * fastify-grpc-ws-bench-browser/ in the OS temp folder; or --out DIR).
 * Options: --quick, --reps N, --no-pin, --out DIR; for investigating:
 * --systems a,b, --scenarios REGEX (the report then has gaps). Exits 1 if a call failed.
 * Needs Chromium at /usr/bin/chromium (apt-get install -y chromium).
 */
import Fastify from 'fastify'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { chromium, type Browser, type CDPSession, type Page } from 'playwright-core'
import { CHROMIUM, CHROMIUM_ARGS, bundle, requireChromium } from '../test/helpers/browser.js'
import { flag, option, windowFigures, type RunResult, type Scenario, type ServerSample } from './common.js'
import type { PageSystem, PageTargets } from './browser-page.js'
import { BROWSER_LABELS, BROWSER_SYSTEMS, browserTable, summarizeBrowser, writeBrowserReports, type BrowserMeasurement, type BrowserPlan, type BrowserResults } from './browser-report.js'
import type { LoadSpec } from './load.js'
import { BENCH_DIR, BUILD_DIR, ServerProcess, buildBundles, cpuShares, cpuTimes, hasTaskset, killAll, machineBasics, packageVersions, type CpuTimes, type ServerKind } from './procs.js'


const quick = flag('--quick')
const plan: BrowserPlan = quick
  ? { name: 'quick', reps: Number(option('--reps') ?? 1), warmupMs: 100, windowMs: 300, prewarmMs: 200, unarySizes: [100, 65536], unaryInflight: [64], streamInflight: 1000, budgetMs: 45_000 }
  : { name: 'default', reps: Number(option('--reps') ?? 3), warmupMs: 250, windowMs: 1000, prewarmMs: 500, unarySizes: [100, 65536], unaryInflight: [1, 64, 256], streamInflight: 1000, budgetMs: 420_000 }
const outDir = resolve(option('--out') ?? (quick ? join(os.tmpdir(), 'fastify-grpc-ws-bench-browser') : join(BENCH_DIR, '..', 'docs')))
// Servers on CPU 0, Chromium (all its processes) on CPU 1, where the machine allows it.
const pin = !flag('--no-pin') && os.availableParallelism() >= 2 && hasTaskset()
// The page keeps what it measures in a Float64Array of latencies this long at most.
const MAX_OPS = 2_000_000
/** Systems that have a bidi call (the fetch clients send one request message per call). */
const BIDI: PageSystem[] = ['web', 'ws']
const SYSTEMS = option('--systems')?.split(',').filter((x): x is PageSystem => BROWSER_SYSTEMS.includes(x as PageSystem)) ?? BROWSER_SYSTEMS
const scenarioFilter = option('--scenarios') === undefined ? null : new RegExp(option('--scenarios')!)

const started = performance.now()
const log = (line: string): void => { console.log(`[${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s] ${line}`) }

const hardStop = setTimeout(() => {
  console.error(`bench:browser: still running after ${plan.budgetMs + 30_000} ms; stopping`)
  killAll()
  process.exit(2)
}, plan.budgetMs + 30_000)
hardStop.unref()
process.on('exit', killAll)
process.on('SIGINT', () => { killAll(); process.exit(130) })
process.on('SIGTERM', () => { killAll(); process.exit(143) })

function scenarios (): Scenario[] {
  const list: Scenario[] = []
  for (const size of plan.unarySizes) {
    for (const inflight of plan.unaryInflight) list.push({ key: `unary-${size}-c${inflight}`, pattern: 'unary', size, inflight })
  }
  list.push({ key: 'server-stream-100', pattern: 'server-stream', size: 100, inflight: 1 })
  list.push({ key: `bidi-100-p${plan.streamInflight}`, pattern: 'bidi', size: 100, inflight: plan.streamInflight })
  return scenarioFilter === null ? list : list.filter(s => scenarioFilter.test(s.key))
}

function rotate<T> (list: readonly T[], by: number): T[] {
  const n = by % list.length
  return [...list.slice(n), ...list.slice(0, n)]
}

// --- Chromium's CPU, from /proc ---------------------------------------------------

const TICK_US = 10_000 // USER_HZ is 100 on Linux

/** µs of CPU used so far by Chromium's processes: this process's descendants named chrom*, the servers' trees left out. */
function chromiumCpuUs (servers: number[]): number {
  const parent = new Map<number, number>()
  const info = new Map<number, { comm: string, us: number }>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const close = stat.lastIndexOf(')')
      const comm = stat.slice(stat.indexOf('(') + 1, close)
      const f = stat.slice(close + 2).split(' ')
      // After the comm: state, ppid, … utime (14th field of the line), stime (15th).
      parent.set(Number(name), Number(f[1]))
      info.set(Number(name), { comm, us: (Number(f[11]) + Number(f[12])) * TICK_US })
    } catch {}
  }
  const excluded = new Set(servers)
  let total = 0
  for (const [pid, i] of info) {
    if (!/chrom/i.test(i.comm)) continue
    let p = pid
    let ours = false
    while (p > 1) {
      if (excluded.has(p)) break
      p = parent.get(p) ?? 0
      if (p === process.pid) { ours = true; break }
    }
    if (ours) total += i.us
  }
  return total
}

async function pageTaskSeconds (cdp: CDPSession): Promise<number> {
  const { metrics } = await cdp.send('Performance.getMetrics')
  return metrics.find(m => m.name === 'TaskDuration')?.value ?? NaN
}

// --- one measurement ------------------------------------------------------------------

interface Rig { page: Page, cdp: CDPSession, targets: PageTargets, servers: Map<PageSystem, ServerProcess> }

let onMark: ((phase: 'start' | 'end') => void) | null = null

async function runInPage (rig: Rig, system: PageSystem, size: number, spec: LoadSpec): Promise<RunResult> {
  const timeoutMs = spec.warmupMs + spec.windowMs + 30_000
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([
      rig.page.evaluate(async ([system, targets, size, spec]) => await (globalThis as any).bench.run(system, targets, size, spec), [system, rig.targets, size, spec] as const),
      new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${system}: no result in ${timeoutMs} ms`)) }, timeoutMs) })
    ])
  } finally {
    clearTimeout(timer)
  }
}

interface Sample { server: Promise<ServerSample>, chromiumUs: number, pageTask: Promise<number>, stat: CpuTimes[], at: number }

async function measure (rig: Rig, rep: number, scenario: Scenario, system: PageSystem): Promise<BrowserMeasurement> {
  const server = rig.servers.get(system)!
  const serverPids = [...rig.servers.values()].map(s => s.child.pid ?? -1)
  const samples: Partial<Record<'start' | 'end', Sample>> = {}
  onMark = phase => {
    const sample: Sample = { server: server.sample(), chromiumUs: chromiumCpuUs(serverPids), pageTask: pageTaskSeconds(rig.cdp), stat: cpuTimes(), at: performance.now() }
    sample.server.catch(() => {})
    sample.pageTask.catch(() => {})
    samples[phase] = sample
  }
  const spec: LoadSpec = { pattern: scenario.pattern, inflight: scenario.inflight, warmupMs: plan.warmupMs, windowMs: plan.windowMs, maxOps: MAX_OPS }
  let result: RunResult
  try {
    result = await runInPage(rig, system, scenario.size, spec)
  } catch (err) {
    result = { ops: 0, seconds: 0, p50Ms: null, p99Ms: null, p90Ms: null, p999Ms: null, maxMs: null, clientCpuUs: 0, errors: 1, firstError: err instanceof Error ? err.message.split('\n')[0]! : String(err) }
  }
  onMark = null
  const a = samples.start
  const b = samples.end
  const m: BrowserMeasurement = {
    ...windowFigures(rep, scenario, system, result),
    serverUsPerOp: null,
    serverCpuPct: null,
    chromiumCpuPct: null,
    chromiumUsPerOp: null,
    pageBusyPct: null,
    foreignCpuPct: 0
  }
  if (a !== undefined && b !== undefined && result.ops > 0) {
    const seconds = (b.at - a.at) / 1000
    const serverUs = (await b.server).cpuUs - (await a.server).cpuUs
    const chromiumUs = b.chromiumUs - a.chromiumUs
    m.serverUsPerOp = serverUs / result.ops
    m.serverCpuPct = serverUs / (seconds * 1e4)
    m.chromiumUsPerOp = chromiumUs / result.ops
    m.chromiumCpuPct = chromiumUs / (seconds * 1e4)
    m.pageBusyPct = 100 * ((await b.pageTask) - (await a.pageTask)) / seconds
    const busy = cpuShares(a.stat, b.stat).reduce((n, c) => n + c.busy, 0)
    m.foreignCpuPct = Math.max(0, busy - m.serverCpuPct - m.chromiumCpuPct)
  }
  const lat = m.p50Ms === null ? '' : `  p50 ${m.p50Ms.toFixed(2)} ms p99 ${(m.p99Ms ?? NaN).toFixed(2)} ms`
  log(`rep ${rep + 1}/${plan.reps} ${scenario.key.padEnd(18)} ${system.padEnd(11)} ${Math.round(m.rate).toLocaleString('en-US').padStart(9)} /s${lat}  server ${fmtPct(m.serverCpuPct)}  chromium ${fmtPct(m.chromiumCpuPct)}  page thread ${fmtPct(m.pageBusyPct)}  other ${m.foreignCpuPct.toFixed(0)} %${m.errors > 0 ? `  ERRORS ${m.errors}: ${m.firstError ?? ''}` : ''}`)
  return m
}

const fmtPct = (x: number | null): string => x === null ? '–' : `${x.toFixed(0)} %`

// --- a repetition --------------------------------------------------------------------------

const SERVER_OF: Record<PageSystem, ServerKind> = { web: 'http-plugin', http: 'http-plugin', 'connect-web': 'http-connect', ws: 'ws' }

async function repetition (page: Page, cdp: CDPSession, origin: string, rep: number): Promise<BrowserMeasurement[]> {
  const kinds = [...new Set(Object.values(SERVER_OF))]
  const env = { BENCH_BROWSER_ORIGIN: origin }
  const started = await Promise.all(kinds.map(async kind => await ServerProcess.start(kind, { cpu: pin ? 0 : null, env })))
  const byKind = new Map(kinds.map((k, i) => [k, started[i]!]))
  const servers = new Map(BROWSER_SYSTEMS.map(s => [s, byKind.get(SERVER_OF[s])!]))
  const rig: Rig = {
    page,
    cdp,
    servers,
    targets: {
      plugin: `http://127.0.0.1:${byKind.get('http-plugin')!.port}/grpc`,
      connect: `http://127.0.0.1:${byKind.get('http-connect')!.port}/grpc`,
      ws: `ws://127.0.0.1:${byKind.get('ws')!.port}`
    }
  }
  const out: BrowserMeasurement[] = []
  try {
    // Warm every server and client (JIT, CORS preflights, keep-alive connections) before anything counts.
    for (const system of rotate(SYSTEMS, rep)) {
      await runInPage(rig, system, 100, { pattern: 'unary', inflight: 64, warmupMs: plan.prewarmMs, windowMs: 50, maxOps: MAX_OPS })
    }
    log(`rep ${rep + 1}/${plan.reps}: servers started, every system warmed up (${plan.prewarmMs} ms of unary calls each)`)
    for (const [i, scenario] of scenarios().entries()) {
      for (const system of rotate(SYSTEMS, rep + i)) {
        if (scenario.pattern === 'bidi' && !BIDI.includes(system)) continue
        out.push(await measure(rig, rep, scenario, system))
      }
    }
  } finally {
    await Promise.all(started.map(async s => { await s.stop() }))
  }
  return out
}

// --- main ----------------------------------------------------------------------------

async function launch (): Promise<Browser> {
  requireChromium()
  let executablePath = CHROMIUM
  if (pin) {
    // Chromium's processes inherit the affinity of the first.
    executablePath = join(BUILD_DIR, 'chromium-cpu1.sh')
    writeFileSync(executablePath, `#!/bin/sh\nexec taskset -c 1 ${CHROMIUM} "$@"\n`, { mode: 0o755 })
  }
  return await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 })
}

async function main (): Promise<void> {
  log(`bench:browser (${plan.name}): ${plan.reps} repetition(s), ${plan.warmupMs} ms warm-up + ${plan.windowMs} ms window per measurement; pinning ${pin ? 'on' : 'off'}`)
  const loadAvgStart = os.loadavg()[0]!
  if (loadAvgStart > 1) log(`note: load average ${loadAvgStart.toFixed(2)}: other processes are busy on this machine; figures will be noisier (see "other %" per line)`)
  await buildBundles()
  const script = await bundle(join(BENCH_DIR, 'browser-page.ts'))

  const app = Fastify({ logger: false, forceCloseConnections: true })
  app.get('/', async (_request, reply) => await reply.type('text/html').send('<!doctype html><meta charset="utf-8"><title>bench:browser</title><script type="module" src="/page.js"></script>'))
  app.get('/page.js', async (_request, reply) => await reply.type('text/javascript').send(script))
  app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const origin = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`

  const browser = await launch()
  const results: BrowserResults = {
    date: new Date().toISOString(),
    chromium: `Chromium ${browser.version()}`,
    machine: {
      ...machineBasics(),
      pinned: pin ? 'servers on CPU 0, Chromium on CPU 1 (taskset)' : 'no',
      versions: packageVersions(['playwright-core', 'fastify', '@fastify/websocket', '@connectrpc/connect', '@connectrpc/connect-web', '@connectrpc/connect-fastify', '@bufbuild/protobuf', 'esbuild']),
      loadAvgStart,
      loadAvgEnd: NaN
    },
    plan,
    measurements: [],
    durationS: 0
  }
  log(`${results.chromium}; page at ${origin}`)
  try {
    const page = await browser.newPage()
    const pageErrors: string[] = []
    page.on('pageerror', err => { pageErrors.push(err.message) })
    await page.exposeFunction('benchMark', (phase: 'start' | 'end') => { onMark?.(phase) })
    await page.goto(`${origin}/`)
    await page.waitForFunction(() => 'bench' in globalThis, undefined, { timeout: 10_000 })
    const cdp = await page.context().newCDPSession(page)
    await cdp.send('Performance.enable')
    for (let rep = 0; rep < plan.reps; rep++) results.measurements.push(...await repetition(page, cdp, origin, rep))
    for (const e of pageErrors) log(`page error: ${e}`)
  } finally {
    await browser.close()
    await app.close()
  }
  results.durationS = (performance.now() - started) / 1000
  results.machine.loadAvgEnd = os.loadavg()[0]!
  const summary = summarizeBrowser(results)
  mkdirSync(outDir, { recursive: true })
  writeBrowserReports(outDir, results, summary)
  console.log(`\n${browserTable(results, summary)}\n`)
  log(`done in ${results.durationS.toFixed(0)} s: ${join(outDir, 'bench-browser.md')}, bench-browser.json, bench-browser.svg`)
  log(`goal: at 64 unary calls in flight, fastify-grpc-ws/client ≥ 5x connect-web: ${summary.goal.text} (${summary.goal.met === true ? 'met' : summary.goal.met === false ? 'not met' : 'n/a'})`)
  // No figure is judged, but every call must have succeeded.
  const failed = results.measurements.filter(m => m.errors > 0)
  for (const m of failed) log(`FAILED rep ${m.rep + 1} ${m.scenario} ${BROWSER_LABELS[m.system]}: ${m.errors} call(s), first: ${m.firstError ?? '?'}`)
  if (failed.length > 0) process.exitCode = 1
}

main().then(() => { process.exit(process.exitCode ?? 0) }, (err: unknown) => {
  console.error(err)
  killAll()
  process.exit(1)
})
