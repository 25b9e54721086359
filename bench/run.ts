/**
 * `npm run bench` (about 12 minutes) and `npm run bench:quick` (about a minute):
 * the Echo service served by this plugin over WebSocket, by grpc-js over
 * HTTP/2, by a bare @fastify/websocket echo (the floor) and by Connect-node
 * on Fastify; calls forwarded by the plugin to that grpc-js server, against
 * a direct grpc-js client to it; the plugin's HTTP routes (gRPC-Web,
 * Connect) against connect-fastify over HTTP/1.1; then the fan-out section
 * (bench/fanout.ts: topics beside a raw ws broadcast and Socket.IO, on one
 * instance and on two over Redis). Each server and each client in its own
 * process on 127.0.0.1.
 *
 * Writes docs/bench.json, docs/bench.md and docs/bench.svg (--quick or
 * --only: into the OS temp folder, fastify-grpc-ws-bench/; or the folder
 * given with --out). Options: --quick, --reps N, --no-pin, --no-bufferutil,
 * --out DIR; --only forward|http runs just that section (what
 * `npm run bench:forward` and `npm run bench:http` do) and prints its
 * tables; for investigating: --systems a,b, --scenarios REGEX,
 * --skip startup,throughput,memory,hold,fanout.
 */
import { mkdirSync } from 'node:fs'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { createRequire } from 'node:module'
import { setTimeout as sleep } from 'node:timers/promises'
import { flag, option, windowFigures, type ClientSystem, type MemSpec, type RunResult, type RunSpec, type Scenario, type ServerSample } from './common.js'
import { BENCH_DIR, ClientProcess, ServerProcess, buildBundles, cpuShares, cpuTimes, hasTaskset, killAll as killProcs, machineBasics, packageVersions, type CpuTimes, type ServerKind, type SpawnOptions } from './procs.js'
import { FANOUT_FULL, FANOUT_QUICK, fanoutFailures, killFanout, runFanout } from './fanout.js'
import { HTTP_SATURATED_KEY, forwardSection, httpSection, summarize, writeReports, type Measurement, type MemoryResult, type HoldResult, type StartupResult, type BenchResults, type Plan } from './report.js'


const quick = flag('--quick')
const plan: Plan = quick
  ? {
      name: 'quick',
      reps: Number(option('--reps') ?? 1),
      warmupMs: 150,
      windowMs: 300,
      prewarmMs: 300,
      unarySizes: [100, 65536],
      unaryInflight: [64],
      streamInflight: 1000,
      memCount: 300,
      memWarm: 20,
      memSettleMs: 300,
      holdCount: 1000,
      holdMs: 500,
      startupRounds: 2,
      startupKinds: ['node', 'bare', 'plugin'],
      maxForeignCpuPct: 20,
      retries: 0,
      budgetMs: 60_000
    }
  : {
      name: 'default',
      reps: Number(option('--reps') ?? 3),
      warmupMs: 250,
      windowMs: 1000,
      prewarmMs: 600,
      unarySizes: [100, 65536],
      unaryInflight: [1, 64, 256],
      streamInflight: 1000,
      memCount: 2000,
      memWarm: 50,
      memSettleMs: 1000,
      holdCount: 10_000,
      holdMs: 2000,
      startupRounds: 5,
      startupKinds: ['node', 'bare', 'plugin', 'connect'],
      maxForeignCpuPct: 20,
      retries: 12,
      budgetMs: 360_000
    }
// The quick plan's fan-out is a smoke: 200 subscribers, one step, on one instance and on two over Redis.
const fanoutPlan = quick ? FANOUT_QUICK : FANOUT_FULL
const killAll = (): void => { killProcs(); killFanout() }
// Pinned when the machine can: two CPUs at least, and taskset (util-linux) present.
const pin = !flag('--no-pin') && os.availableParallelism() >= 2 && hasTaskset()
const SERVER_CPU = pin ? 0 : null
const CLIENT_CPU = pin ? 1 : null
// --only forward|http: one section's systems and scenarios, nothing else.
const ONLY: Record<string, { systems: ClientSystem[], scenarios: RegExp }> = {
  forward: { systems: ['grpc', 'forward-grpcjs', 'forward-lean'], scenarios: new RegExp(`^(unary-100-c64|bidi-100-p${plan.streamInflight})$`) },
  http: { systems: ['plugin-http-grpcweb', 'cf-http-grpcweb', 'plugin-http-connect', 'cf-http-connect'], scenarios: /^unary-100-c64(-2p)?$/ }
}
/**
 * One client process of connect-node over HTTP/1.1 saturates its core before
 * either HTTP server does, so the HTTP rows are also measured with this many
 * client processes (the scenario HTTP_SATURATED_KEY: 32 calls in flight
 * each, not pinned) driving the pinned server: the calls/s it can give.
 */
const SATURATING_CLIENTS = 2
const only = option('--only')
if (only !== undefined && ONLY[only] === undefined) throw new Error(`--only ${only}: expected one of ${Object.keys(ONLY).join(', ')}`)
// A smoke run or a section must not overwrite the published results in docs/.
const outDir = resolve(option('--out') ?? (quick || only !== undefined ? join(os.tmpdir(), 'fastify-grpc-ws-bench') : join(BENCH_DIR, '..', 'docs')))
const childEnv: Record<string, string> = flag('--no-bufferutil') ? { WS_NO_BUFFER_UTIL: '1' } : {}
const MAX_OPS = 50_000_000

const started = performance.now()
const elapsed = (): string => `${((performance.now() - started) / 1000).toFixed(1).padStart(5)} s`
const log = (line: string): void => { console.log(`[${elapsed()}] ${line}`) }

// Bounded in time whatever happens: children die with us.
const HARD_STOP_MS = plan.budgetMs + fanoutPlan.budgetMs + 60_000 // default: 14 min 40 s
const hardStop = setTimeout(() => {
  console.error(`bench: still running after ${HARD_STOP_MS} ms; stopping`)
  killAll()
  process.exit(2)
}, HARD_STOP_MS)
hardStop.unref()
process.on('exit', killAll)
process.on('SIGINT', () => { killAll(); process.exit(130) })
process.on('SIGTERM', () => { killAll(); process.exit(143) })

const ALL_SYSTEMS: ClientSystem[] = [
  'plugin-lean', 'plugin-grpcjs', 'grpc', 'ws', 'connect', 'plugin-web', 'plugin-connect',
  'forward-grpcjs', 'forward-lean', 'plugin-http-grpcweb', 'cf-http-grpcweb', 'plugin-http-connect', 'cf-http-connect'
]
/**
 * Clients measured in some rows only: the Connect transport beside the plain
 * client it runs on, the forwarder beside direct grpc-js, the HTTP routes
 * beside connect-fastify (unary only).
 */
const bidiKey = `bidi-100-p${plan.streamInflight}`
// --quick (the CI smoke) has the forwarder and the HTTP routes answer unary calls only, with no connect-fastify beside them.
const forwardRows = quick && only === undefined ? ['unary-100-c64'] : ['unary-100-c64', bidiKey]
// The quick plan measures the HTTP routes with one client only (a smoke, no connect-fastify to compare with).
const httpRows = quick && only === undefined ? ['unary-100-c64'] : ['unary-100-c64', HTTP_SATURATED_KEY]
const ROWS_OF: Partial<Record<ClientSystem, string[]>> = {
  'plugin-web': ['unary-100-c64'],
  'plugin-connect': ['unary-100-c64'],
  'forward-grpcjs': forwardRows,
  'forward-lean': forwardRows,
  'plugin-http-grpcweb': httpRows,
  'cf-http-grpcweb': httpRows,
  'plugin-http-connect': httpRows,
  'cf-http-connect': httpRows
}
/** Whether a system is measured in a scenario: the saturated one only where a system lists it. */
function measures (system: ClientSystem, key: string): boolean {
  const rows = ROWS_OF[system]
  return rows === undefined ? key !== HTTP_SATURATED_KEY : rows.includes(key)
}
// --systems a,b and --scenarios REGEX narrow a run down (for investigating; the report then has gaps).
const DEFAULT_SYSTEMS = only !== undefined ? ONLY[only]!.systems : quick ? ALL_SYSTEMS.filter(x => !x.startsWith('cf-')) : ALL_SYSTEMS
const SYSTEMS = option('--systems')?.split(',').filter((x): x is ClientSystem => ALL_SYSTEMS.includes(x as ClientSystem)) ?? DEFAULT_SYSTEMS
const scenarioFilter = option('--scenarios') === undefined ? (only === undefined ? null : ONLY[only]!.scenarios) : new RegExp(option('--scenarios')!)
const skip = new Set(only === undefined ? (option('--skip') ?? '').split(',') : ['startup', 'memory', 'hold', 'fanout'])

function scenarios (): Scenario[] {
  const list: Scenario[] = []
  for (const size of plan.unarySizes) {
    for (const inflight of plan.unaryInflight) list.push({ key: `unary-${size}-c${inflight}`, pattern: 'unary', size, inflight })
  }
  list.push({ key: HTTP_SATURATED_KEY, pattern: 'unary', size: 100, inflight: 64 })
  list.push({ key: 'server-stream-100', pattern: 'server-stream', size: 100, inflight: 1 })
  list.push({ key: bidiKey, pattern: 'bidi', size: 100, inflight: plan.streamInflight })
  return scenarioFilter === null ? list : list.filter(s => scenarioFilter.test(s.key))
}

function rotate<T> (list: readonly T[], by: number): T[] {
  const n = by % list.length
  return [...list.slice(n), ...list.slice(0, n)]
}

const serverOptions = (extra: Partial<SpawnOptions> = {}): SpawnOptions => ({ cpu: SERVER_CPU, env: childEnv, ...extra })
const clientOptions = (extra: Partial<SpawnOptions> = {}): SpawnOptions => ({ cpu: CLIENT_CPU, env: childEnv, ...extra })

// --- start-up ------------------------------------------------------------------

async function startupPhase (): Promise<StartupResult[]> {
  const out: StartupResult[] = []
  const kinds = plan.startupKinds as ServerKind[]
  for (let round = 0; round <= plan.startupRounds; round++) {
    for (const kind of rotate(kinds, round)) {
      const server = await ServerProcess.start(kind, { cpu: null, env: childEnv })
      await server.stop()
      // Round 0 warms the file cache and is discarded.
      if (round > 0) out.push({ round, kind, spawnToReadyMs: server.spawnToReadyMs, inProcessMs: server.readyMs })
    }
  }
  log(`start-up: ${plan.startupRounds} rounds of ${kinds.join(', ')} (+1 discarded warm round)`)
  return out
}

// --- throughput ------------------------------------------------------------------

const elapsedMs = (): number => performance.now() - started
// Contended measurements are repeated at most this often in a run, and not past this point of it.
let retriesLeft = plan.retries
const retryUntilMs = plan.budgetMs * 0.6

/**
 * Other processes share this machine (other test runs, say). A
 * measurement during which they used more than maxForeignCpuPct of a core is
 * repeated, up to `retries` times while the time budget allows; the least
 * disturbed attempt is kept, with its foreign load on record.
 */
async function measure (rep: number, scenario: Scenario, system: ClientSystem, clients: ClientProcess[], server: ServerProcess, target: string, upstream: ServerProcess | null): Promise<Measurement> {
  let best: Measurement | null = null
  for (let attempt = 1; ; attempt++) {
    const m = await measureOnce(rep, scenario, system, clients, server, target, upstream)
    m.attempts = attempt
    if (best === null || m.foreignCpuPct < best.foreignCpuPct) best = { ...m }
    if (m.foreignCpuPct <= plan.maxForeignCpuPct || attempt > 2 || retriesLeft <= 0 || elapsedMs() > retryUntilMs) break
    retriesLeft--
    log(`  other processes used ${m.foreignCpuPct.toFixed(0)} % of a core meanwhile: measuring again (${retriesLeft} repeats left in this run)`)
  }
  best.attempts = best.attempts ?? 1
  return best
}

/**
 * Several clients' windows as one: their calls summed, their rates summed,
 * the worst of their latency quantiles (the histograms stay in the clients).
 */
function combined (results: RunResult[]): RunResult {
  if (results.length === 1) return results[0]!
  const ops = results.reduce((n, r) => n + r.ops, 0)
  const rate = results.reduce((n, r) => n + (r.seconds > 0 ? r.ops / r.seconds : 0), 0)
  const worst = (pick: (r: RunResult) => number | null): number | null => {
    const v = results.map(pick).filter((x): x is number => x !== null)
    return v.length === 0 ? null : Math.max(...v)
  }
  return {
    ops,
    seconds: rate > 0 ? ops / rate : 0,
    p50Ms: worst(r => r.p50Ms),
    p90Ms: worst(r => r.p90Ms),
    p99Ms: worst(r => r.p99Ms),
    p999Ms: worst(r => r.p999Ms),
    maxMs: worst(r => r.maxMs),
    clientCpuUs: results.reduce((n, r) => n + r.clientCpuUs, 0),
    errors: results.reduce((n, r) => n + r.errors, 0),
    firstError: results.find(r => r.firstError !== null)?.firstError ?? null
  }
}

/**
 * `upstream`: the server behind a forwarder, whose CPU is sampled with the
 * forwarder's. With several clients, each keeps its share of the calls in
 * flight, and the server is sampled from the first client's window start to
 * the last one's end (their windows start together, within milliseconds).
 */
async function measureOnce (rep: number, scenario: Scenario, system: ClientSystem, clients: ClientProcess[], server: ServerProcess, target: string, upstream: ServerProcess | null): Promise<Measurement> {
  const spec: RunSpec = {
    system, target, pattern: scenario.pattern, size: scenario.size, inflight: Math.ceil(scenario.inflight / clients.length),
    warmupMs: plan.warmupMs, windowMs: plan.windowMs, maxOps: MAX_OPS
  }
  let startStat: CpuTimes[] = []
  let endStat: CpuTimes[] = []
  let startSample: Promise<ServerSample[]> | null = null
  let endSample: Promise<ServerSample[]> | null = null
  let starts = 0
  let ends = 0
  let startAt = 0
  let endAt = 0
  const sample = (): Promise<ServerSample[]> => {
    const p = Promise.all(upstream === null ? [server.sample()] : [server.sample(), upstream.sample()])
    p.catch(() => {}) // awaited below; never an unhandled rejection meanwhile
    return p
  }
  for (const client of clients) {
    client.onMark = phase => {
      if (phase === 'start' && ++starts === 1) { startSample = sample(); startStat = cpuTimes(); startAt = performance.now() }
      if (phase === 'end' && ++ends === clients.length) { endSample = sample(); endStat = cpuTimes(); endAt = performance.now() }
    }
  }
  const replies = await Promise.all(clients.map(async client => await client.ask({ cmd: 'run', id: client.newId(), spec }, plan.warmupMs + plan.windowMs + 30_000)))
  for (const client of clients) client.onMark = null
  const result = combined(replies.map(reply => (reply as { result: RunResult }).result))
  if (startSample === null || endSample === null) throw new Error(`${scenario.key} ${system}: the client never marked its window (${JSON.stringify(result)})`)
  const [a, ua] = await (startSample as Promise<ServerSample[]>)
  const [b, ub] = await (endSample as Promise<ServerSample[]>)
  const serverCpuUs = b!.cpuUs - a!.cpuUs
  const upstreamCpuUs = ua === undefined || ub === undefined ? null : ub.cpuUs - ua.cpuUs
  // The server's share of a core over the time it was sampled; one client's window is that time.
  const sampledS = clients.length === 1 ? result.seconds : (endAt - startAt) / 1000
  const m: Measurement = {
    ...windowFigures(rep, scenario, system, result),
    serverUsPerOp: result.ops > 0 ? serverCpuUs / result.ops : null,
    upstreamUsPerOp: upstreamCpuUs !== null && result.ops > 0 ? upstreamCpuUs / result.ops : null,
    upstreamCpuPct: upstreamCpuUs !== null && sampledS > 0 ? upstreamCpuUs / (sampledS * 1e4) : null,
    clientUsPerOp: result.ops > 0 ? result.clientCpuUs / result.ops : null,
    serverCpuPct: sampledS > 0 ? serverCpuUs / (sampledS * 1e4) : null,
    clientCpuPct: result.seconds > 0 ? result.clientCpuUs / (result.seconds * 1e4) : null,
    machineCpu: cpuShares(startStat, endStat),
    foreignCpuPct: 0,
    attempts: 1
  }
  // Machine busy time not spent by this server (and upstream) and client (in % of one core; the orchestrator's IPC forwarding is in it too).
  const machineBusy = m.machineCpu.reduce((n, c) => n + c.busy, 0)
  const upstreamPct = m.upstreamCpuPct ?? 0
  m.foreignCpuPct = Math.max(0, machineBusy - (m.serverCpuPct ?? 0) - upstreamPct - (m.clientCpuPct ?? 0))
  const lat = m.p50Ms === null ? '' : `  p50 ${m.p50Ms.toFixed(2)} ms p99 ${(m.p99Ms ?? NaN).toFixed(2)} ms`
  const mc = m.machineCpu.map(c => `${c.busy.toFixed(0)}/${c.idle.toFixed(0)}/${c.steal.toFixed(0)}`).join(' ')
  log(`rep ${rep + 1}/${plan.reps} ${scenario.key.padEnd(20)} ${system.padEnd(14)} ${Math.round(m.rate).toLocaleString('en-US').padStart(9)} /s${lat}  server ${(m.serverUsPerOp ?? NaN).toFixed(1)} µs/op (${(m.serverCpuPct ?? NaN).toFixed(0)} %)${m.upstreamUsPerOp == null ? '' : ` upstream ${m.upstreamUsPerOp.toFixed(1)} µs/op (${upstreamPct.toFixed(0)} %)`}  client${clients.length > 1 ? `s (${clients.length})` : ''} ${(m.clientCpuPct ?? NaN).toFixed(0)} %  other ${m.foreignCpuPct.toFixed(0)} %  [cpus busy/idle/steal ${mc}]${m.errors > 0 ? `  ERRORS ${m.errors}: ${m.firstError ?? ''}` : ''}`)
  return m
}

/** The server process each client system talks to. */
function serverKindOf (system: ClientSystem): ServerKind {
  switch (system) {
    case 'plugin-lean':
    case 'plugin-grpcjs':
    case 'plugin-web':
    case 'plugin-connect':
    case 'plugin-http-grpcweb':
    case 'plugin-http-connect': return 'plugin'
    case 'forward-grpcjs':
    case 'forward-lean': return 'forward'
    case 'cf-http-grpcweb':
    case 'cf-http-connect': return 'http-connect'
    case 'grpc':
    case 'ws':
    case 'connect': return system
  }
}

async function throughputRep (rep: number): Promise<Measurement[]> {
  // Only the servers the clients need; the forwarder forwards to the grpc-js server of the 'grpc' rows.
  const kinds = [...new Set(SYSTEMS.map(serverKindOf))]
  if (kinds.includes('forward') && !kinds.includes('grpc')) kinds.push('grpc')
  const servers = new Map<ServerKind, ServerProcess>()
  const first = kinds.filter(k => k !== 'forward')
  for (const [i, s] of (await Promise.all(first.map(async k => await ServerProcess.start(k, serverOptions())))).entries()) servers.set(first[i]!, s)
  if (kinds.includes('forward')) {
    // Pinned with the other servers; its upstream moves to the clients' CPU while it is measured (below).
    servers.set('forward', await ServerProcess.start('forward', serverOptions({ env: { ...childEnv, UPSTREAM_TARGET: `127.0.0.1:${servers.get('grpc')!.port}` } })))
  }
  const clients = new Map<ClientSystem, ClientProcess>()
  for (const [i, c] of (await Promise.all(SYSTEMS.map(async () => await ClientProcess.start(clientOptions())))).entries()) clients.set(SYSTEMS[i]!, c)
  // The saturating clients float over both CPUs, where the server's spare time is too.
  const saturating = new Map<ClientSystem, ClientProcess[]>()
  for (const system of SYSTEMS.filter(x => measures(x, HTTP_SATURATED_KEY) && scenarios().some(sc => sc.key === HTTP_SATURATED_KEY))) {
    saturating.set(system, await Promise.all(Array.from({ length: SATURATING_CLIENTS }, async () => await ClientProcess.start(clientOptions({ cpu: null })))))
  }
  const clientsOf = (system: ClientSystem, scenario: Scenario): ClientProcess[] => scenario.key === HTTP_SATURATED_KEY ? saturating.get(system)! : [clients.get(system)!]
  const serverOf = (system: ClientSystem): ServerProcess => servers.get(serverKindOf(system))!
  const upstreamOf = (system: ClientSystem): ServerProcess | null => serverKindOf(system) === 'forward' ? servers.get('grpc')! : null
  const targetOf = (system: ClientSystem): string => {
    const server = serverOf(system)
    switch (system) {
      case 'plugin-lean':
      case 'plugin-grpcjs':
      case 'plugin-web':
      case 'plugin-connect':
      case 'forward-lean': return `ws://127.0.0.1:${server.port}/grpc`
      case 'forward-grpcjs': return `127.0.0.1:${server.grpcPort}`
      case 'grpc': return `127.0.0.1:${server.port}`
      case 'ws': return `ws://127.0.0.1:${server.port}`
      case 'connect': return `http://127.0.0.1:${server.port}`
      case 'plugin-http-grpcweb':
      case 'plugin-http-connect':
      case 'cf-http-grpcweb':
      case 'cf-http-connect': return `http://127.0.0.1:${server.port}/grpc`
    }
  }
  const out: Measurement[] = []
  try {
    // Warm every server and client up (JIT, buffers) before anything counts.
    for (const system of rotate(SYSTEMS, rep)) {
      const spec: RunSpec = { system, target: targetOf(system), pattern: 'unary', size: 100, inflight: 64, warmupMs: plan.prewarmMs, windowMs: 50, maxOps: MAX_OPS }
      for (const client of [clients.get(system)!, ...saturating.get(system) ?? []]) await client.ask({ cmd: 'run', id: client.newId(), spec }, plan.prewarmMs + 30_000)
    }
    log(`rep ${rep + 1}/${plan.reps}: servers and clients started and warmed up (${plan.prewarmMs} ms of unary calls each)`)
    for (const [i, scenario] of scenarios().entries()) {
      // Systems alternate, and the order turns from one scenario and repetition to the next.
      for (const system of rotate(SYSTEMS, rep + i)) {
        if (!measures(system, scenario.key)) continue
        const upstream = upstreamOf(system)
        // Each row's system under test has the servers' CPU to itself: for a
        // direct row the grpc-js server, for a forwarded row the forwarder,
        // whose upstream goes to the clients' CPU meanwhile, as if on a host of
        // its own (on two cores, one of the three processes has to share).
        if (upstream !== null && CLIENT_CPU !== null) upstream.pin(CLIENT_CPU)
        try {
          out.push(await measure(rep, scenario, system, clientsOf(system, scenario), serverOf(system), targetOf(system), upstream))
        } finally {
          if (upstream !== null && SERVER_CPU !== null) upstream.pin(SERVER_CPU)
        }
      }
    }
  } finally {
    await Promise.all([...clients.values(), ...[...saturating.values()].flat()].map(async c => { await c.stop() }))
    await Promise.all([...servers.values()].map(async s => { await s.stop() }))
  }
  return out
}

// --- idle connections ------------------------------------------------------------

/**
 * V8 grows its young generation (up to 3 × 16 MiB) with the rate at which a
 * process allocates, not with what it keeps, and RSS keeps the pages it
 * touched: over 2,000 connections that growth can amount to several KiB per
 * connection, and varies from run to run. The runs the target compares hold
 * it at 1 MiB per semi-space in every server, so RSS counts what the
 * connections keep; one run per server with V8's defaults is shown beside them.
 */
const YOUNG_GENERATION_CAP = ['--max-semi-space-size=1']

async function memoryRun (rep: number, system: MemSpec['system'], v8Defaults = false): Promise<MemoryResult> {
  const noFile = plan.memCount + plan.memWarm + 1000
  const nodeArgs = ['--expose-gc', ...(v8Defaults ? [] : YOUNG_GENERATION_CAP)]
  const server = await ServerProcess.start(system, serverOptions({ nodeArgs, noFile }))
  const client = await ClientProcess.start(clientOptions({ noFile }))
  try {
    const fresh = await server.gcAndSample()
    const target = system === 'grpc' ? `127.0.0.1:${server.port}` : system === 'ws' ? `ws://127.0.0.1:${server.port}` : `ws://127.0.0.1:${server.port}/grpc`
    const open = async (count: number): Promise<{ opened: number, failed: number, ms: number, firstError: string | null }> => {
      const spec: MemSpec = { system, target, count, batch: 50, timeoutMs: 60_000 }
      return await client.ask({ cmd: 'open', id: client.newId(), spec }, 90_000) as any
    }
    const warm = await open(plan.memWarm)
    await sleep(500)
    const before = await server.gcAndSample()
    const opened = await open(plan.memCount)
    await sleep(plan.memSettleMs)
    const after = await server.gcAndSample()
    await client.ask({ cmd: 'closeAll', id: client.newId() }, 30_000)
    const n = opened.opened
    const r: MemoryResult = {
      rep,
      system,
      v8Defaults,
      count: n,
      failed: opened.failed + warm.failed,
      firstError: opened.firstError ?? warm.firstError,
      openMs: opened.ms,
      freshRss: fresh.rss,
      rssBefore: before.rss,
      rssAfter: after.rss,
      rssPerConnKiB: (after.rss - before.rss) / n / 1024,
      heapPerConnKiB: (after.heapUsed - before.heapUsed) / n / 1024,
      externalPerConnKiB: (after.external - before.external) / n / 1024,
      serverConnections: after.connections
    }
    log(`rep ${rep + 1} idle ${system.padEnd(6)}${v8Defaults ? ' (V8 defaults)' : ''} ${n} connections in ${Math.round(r.openMs)} ms: ${r.rssPerConnKiB.toFixed(1)} KiB RSS each (heap ${r.heapPerConnKiB.toFixed(1)}), server sees ${String(r.serverConnections)}${r.failed > 0 ? `, ${r.failed} FAILED: ${r.firstError ?? ''}` : ''}`)
    return r
  } finally {
    await client.stop()
    await server.stop()
  }
}

async function holdPhase (): Promise<HoldResult> {
  const count = plan.holdCount
  const noFile = count + 1000
  const server = await ServerProcess.start('plugin', serverOptions({ noFile }))
  const client = await ClientProcess.start(clientOptions({ noFile }))
  try {
    const fresh = await server.sample()
    const spec: MemSpec = { system: 'plugin', target: `ws://127.0.0.1:${server.port}/grpc`, count, batch: 100, timeoutMs: 60_000 }
    log(`holding ${count.toLocaleString('en-US')} idle connections to the plugin (bounded: 60 s to open)`)
    const opened = await client.ask({ cmd: 'open', id: client.newId(), spec }, 90_000) as any
    const afterOpen = await server.sample()
    await sleep(plan.holdMs)
    const afterHold = await server.sample()
    const called = await client.ask({ cmd: 'callAll', id: client.newId(), timeoutMs: 30_000 }, 45_000) as any
    const afterCalls = await server.sample()
    await client.ask({ cmd: 'closeAll', id: client.newId() }, 30_000)
    const r: HoldResult = {
      target: count,
      opened: opened.opened,
      failed: opened.failed,
      firstError: opened.firstError,
      openMs: opened.ms,
      heldMs: plan.holdMs,
      serverConnectionsAfterOpen: afterOpen.connections,
      serverConnectionsAfterHold: afterHold.connections,
      serverConnectionsAfterCalls: afterCalls.connections,
      callsOk: called.ok,
      callsFailed: called.failed,
      callsMs: called.ms,
      freshRss: fresh.rss,
      rssHeld: afterHold.rss
    }
    log(`held: ${r.opened} opened in ${Math.round(r.openMs)} ms, server saw ${String(r.serverConnectionsAfterHold)} after ${r.heldMs} ms, then one call on each: ${r.callsOk} ok, ${r.callsFailed} failed; server RSS ${(r.rssHeld / 2 ** 20).toFixed(0)} MiB`)
    return r
  } finally {
    await client.stop()
    await server.stop()
  }
}

// --- main -----------------------------------------------------------------------

function machine (): BenchResults['machine'] {
  const require = createRequire(import.meta.url)
  let bufferutil = false
  try { require.resolve('bufferutil'); bufferutil = childEnv.WS_NO_BUFFER_UTIL === undefined } catch {}
  return {
    ...machineBasics(),
    bufferutil,
    pinned: pin ? `servers on CPU ${String(SERVER_CPU)}, clients on CPU ${String(CLIENT_CPU)} (taskset)` : 'no',
    loadAvgStart: os.loadavg()[0]!,
    loadAvgEnd: NaN,
    versions: packageVersions(['fastify', '@fastify/websocket', 'ws', 'bufferutil', '@grpc/grpc-js', '@grpc/proto-loader', '@connectrpc/connect', '@connectrpc/connect-node', '@connectrpc/connect-fastify', '@bufbuild/protobuf'])
  }
}

async function main (): Promise<void> {
  log(`bench (${plan.name}): ${plan.reps} repetition(s), ${plan.warmupMs} ms warm-up + ${plan.windowMs} ms window per measurement; pinning ${pin ? 'on' : 'off'}`)
  const load = os.loadavg()[0]!
  if (load > 1) log(`note: load average ${load.toFixed(2)}: other processes are busy on this machine; figures will be noisier (see "other %" per line)`)
  await buildBundles()
  const results: BenchResults = {
    date: new Date().toISOString(),
    machine: machine(),
    plan,
    startup: [],
    throughput: [],
    memory: [],
    hold: null,
    fanout: null,
    durationS: 0,
    notes: []
  }
  if (!skip.has('startup')) results.startup = await startupPhase()
  if (!skip.has('throughput')) for (let rep = 0; rep < plan.reps; rep++) results.throughput.push(...await throughputRep(rep))
  if (!skip.has('memory')) {
    for (let rep = 0; rep < plan.reps; rep++) {
      for (const system of rotate(['ws', 'plugin', 'grpc'] as const, rep)) {
        // grpc-js (context only, no target) is the slowest to open: it goes when time runs short.
        if (system === 'grpc' && elapsedMs() > plan.budgetMs * 0.8) {
          results.notes.push(`idle memory of grpc-js skipped in repetition ${rep + 1} to stay within the time budget`)
          continue
        }
        results.memory.push(await memoryRun(rep, system))
      }
    }
    for (const system of ['ws', 'plugin'] as const) results.memory.push(await memoryRun(0, system, true))
  }
  if (!skip.has('hold')) results.hold = await holdPhase()
  if (!skip.has('fanout')) {
    log(`fan-out (${fanoutPlan.name}): ${fanoutPlan.sizes.map(s => `${s.sockets}×${s.streams}`).join(', ')} subscribers; ${fanoutPlan.systems.join(', ')}; not pinned (servers, clients and redis-server share both cores)`)
    results.fanout = await runFanout(fanoutPlan, log)
  }
  results.durationS = (performance.now() - started) / 1000
  results.machine.loadAvgEnd = os.loadavg()[0]!
  const summary = summarize(results)
  mkdirSync(outDir, { recursive: true })
  writeReports(outDir, results, summary)
  log(`done in ${results.durationS.toFixed(0)} s: ${join(outDir, 'bench.md')}, bench.json, bench.svg`)
  if (only !== undefined) console.log(['', ...(only === 'forward' ? forwardSection(results, summary) : httpSection(results, summary))].join('\n'))
  // A partial run judges only the targets it measured.
  for (const t of summary.targets.filter(t => only === undefined || t.pass !== null)) log(`target ${t.pass === true ? 'MET    ' : t.pass === false ? 'NOT MET' : '   n/a '} ${t.name}: ${t.measured}`)
  // No figure is judged here (timings vary by machine), but the plugin must
  // have answered every call and accepted every connection.
  const failures = pluginFailures(results)
  for (const f of failures) log(`FAILED ${f}`)
  if (failures.length > 0) process.exitCode = 1
}


/** The clients of the plugin (and of the forwarder) whose failed calls fail the run; plugin-web and plugin-connect are the clients' own rows. */
const PLUGIN_SYSTEMS: ReadonlySet<ClientSystem> = new Set(['plugin-lean', 'plugin-grpcjs', 'forward-grpcjs', 'forward-lean', 'plugin-http-grpcweb', 'plugin-http-connect'])

function pluginFailures (results: BenchResults): string[] {
  const out: string[] = []
  for (const m of results.throughput) {
    if (PLUGIN_SYSTEMS.has(m.system) && m.errors > 0) {
      out.push(`rep ${m.rep + 1} ${m.scenario} ${m.system}: ${m.errors} call(s) failed, first: ${m.firstError ?? '?'}`)
    }
  }
  for (const m of results.memory) {
    if (m.system === 'plugin' && m.failed > 0) out.push(`idle memory, rep ${m.rep + 1}: ${m.failed} connection(s) failed, first: ${m.firstError ?? '?'}`)
  }
  if (results.fanout !== null) out.push(...fanoutFailures(results.fanout))
  const h = results.hold
  if (h !== null && (h.failed > 0 || h.callsFailed > 0 || h.opened < h.target)) {
    out.push(`holding ${h.target} connections: ${h.opened} opened, ${h.failed} failed, ${h.callsFailed} call(s) failed${h.firstError !== null ? `, first: ${h.firstError}` : ''}`)
  }
  return out
}

main().then(() => { process.exit(process.exitCode ?? 0) }, (err: unknown) => {
  console.error(err)
  killAll()
  process.exit(1)
})
