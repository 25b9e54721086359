/**
 * From raw measurements to medians, per-repetition ratios, the targets, and
 * the three outputs: bench.json, bench.md and a hand-written bench.svg.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { median, medianOrNull, summarizeRepetitions, type ClientSystem, type Pattern } from './common.js'
import { fanoutMarkdown, fanoutTargets, type FanoutResults } from './fanout.js'

export interface Plan {
  name: string
  reps: number
  warmupMs: number
  windowMs: number
  /** Unary calls each system runs, uncounted, before a repetition's first measurement. */
  prewarmMs: number
  unarySizes: number[]
  unaryInflight: number[]
  streamInflight: number
  memCount: number
  memWarm: number
  memSettleMs: number
  holdCount: number
  holdMs: number
  startupRounds: number
  startupKinds: string[]
  /** A measurement disturbed by more foreign CPU than this (% of a core) is repeated. */
  maxForeignCpuPct: number
  /** Repeats allowed in a whole run (each measurement at most twice more). */
  retries: number
  budgetMs: number
}

/** What identifies a figure, and the figures themselves: shared by a measurement and a summary row. */
interface Figures {
  scenario: string
  pattern: Pattern
  size: number
  inflight: number
  system: ClientSystem
  rate: number
  p50Ms: number | null
  p99Ms: number | null
  serverUsPerOp: number | null
  /** Behind the forwarder: the upstream's CPU per call (the forwarder's is serverUsPerOp). */
  upstreamUsPerOp?: number | null
  /** Behind the forwarder: the upstream's share of a core (%). */
  upstreamCpuPct?: number | null
  clientUsPerOp: number | null
  serverCpuPct: number | null
  clientCpuPct: number | null
  errors: number
}

export interface Measurement extends Figures {
  rep: number
  ops: number
  seconds: number
  firstError: string | null
  /** Each CPU's busy / idle / steal share (%) over the window, from /proc/stat. */
  machineCpu: Array<{ busy: number, idle: number, steal: number }>
  /** CPU (% of one core) used on the machine by other processes during the window. */
  foreignCpuPct: number
  /** How many times it was measured (repeated when other processes disturbed it). */
  attempts: number
}

export interface MemoryResult {
  rep: number
  system: 'plugin' | 'ws' | 'grpc'
  /** Run with V8's default young generation instead of the capped one (shown for reference). */
  v8Defaults: boolean
  count: number
  failed: number
  firstError: string | null
  openMs: number
  freshRss: number
  rssBefore: number
  rssAfter: number
  rssPerConnKiB: number
  heapPerConnKiB: number
  externalPerConnKiB: number
  serverConnections: number | null
}

export interface HoldResult {
  target: number
  opened: number
  failed: number
  firstError: string | null
  openMs: number
  heldMs: number
  serverConnectionsAfterOpen: number | null
  serverConnectionsAfterHold: number | null
  serverConnectionsAfterCalls: number | null
  callsOk: number
  callsFailed: number
  callsMs: number
  freshRss: number
  rssHeld: number
}

export interface StartupResult {
  round: number
  kind: string
  spawnToReadyMs: number
  inProcessMs: number
}

export interface BenchResults {
  date: string
  machine: {
    cpuModel: string
    cores: number
    memoryGiB: number
    os: string
    node: string
    bufferutil: boolean
    pinned: string
    versions: Record<string, string>
    /** 1-minute load average when the run started and when it ended (other work shares the machine). */
    loadAvgStart: number
    loadAvgEnd: number
  }
  plan: Plan
  startup: StartupResult[]
  throughput: Measurement[]
  memory: MemoryResult[]
  hold: HoldResult | null
  /** The fan-out section (bench/fanout.ts), or null when skipped. */
  fanout: FanoutResults | null
  durationS: number
  notes: string[]
}

/** Medians over the repetitions of one system in one scenario. */
export interface Row extends Figures {
  reps: number
  rateMin: number
  rateMax: number
}

export interface Ratio {
  scenario: string
  a: ClientSystem
  b: ClientSystem
  field: 'rate' | 'serverUsPerOp' | 'clientUsPerOp'
  median: number
  perRep: number[]
}

export interface Target {
  name: string
  /** Which client drove the plugin, when it matters. */
  client: string
  measured: string
  value: number | null
  pass: boolean | null
}

export interface Summary {
  rows: Row[]
  ratios: Ratio[]
  memory: Array<{ system: string, rssPerConnKiB: number, range: [number, number], heapPerConnKiB: number, externalPerConnKiB: number, openMs: number, freshRssMiB: number, connections: number }>
  /** One run per server with V8's default young generation. */
  memoryV8Defaults: Array<{ system: string, rssPerConnKiB: number, heapPerConnKiB: number }>
  memoryRatio: { median: number, perRep: number[] } | null
  startup: Array<{ kind: string, median: number, min: number, max: number, inProcess: number }>
  startupRatio: { median: number, perRound: number[] } | null
  targets: Target[]
}

export const LABELS: Record<ClientSystem, string> = {
  'plugin-lean': 'fastify-grpc-ws, lean client',
  'plugin-grpcjs': 'fastify-grpc-ws, grpc-js client',
  'plugin-web': 'fastify-grpc-ws, plain client',
  'plugin-connect': 'fastify-grpc-ws, Connect transport',
  grpc: 'grpc-js, HTTP/2',
  ws: 'raw @fastify/websocket echo',
  connect: 'Connect-node on Fastify, HTTP/2',
  'forward-grpcjs': 'forwarded, grpc-js client on grpcServer (HTTP/2 in)',
  'forward-lean': 'forwarded, lean client on the WebSocket route',
  'plugin-http-grpcweb': 'fastify-grpc-ws, gRPC-Web, HTTP/1.1',
  'plugin-http-connect': 'fastify-grpc-ws, Connect, HTTP/1.1',
  'cf-http-grpcweb': 'connect-fastify, gRPC-Web, HTTP/1.1',
  'cf-http-connect': 'connect-fastify, Connect, HTTP/1.1'
}

const DESCRIPTIONS: Record<ClientSystem, string> = {
  'plugin-lean': 'this plugin over WebSocket, driven by `ClientSession` (lib/client/session.ts, the protocol core without grpc-js): pre-encoded requests, responses counted, not decoded. Measures the server fairly.',
  'plugin-grpcjs': 'this plugin over WebSocket, driven by a stock grpc-js client over `createWebSocketChannel` (this project\'s Node client). **Includes grpc-js client-side costs** (protobufjs, grpc-js call stack), which share the machine with the server.',
  'plugin-web': 'this plugin over WebSocket, driven by the plain client (`fastify-grpc-ws/client`, as browsers use it) over `ws`, messages through protobuf-es `toBinary`/`fromBinary`. Unary 100 B at 64 in flight only.',
  'plugin-connect': 'the same plain client and codec under a Connect client (`createClient` over `fastify-grpc-ws/connect`): beside the plain client, the cost of the Connect layer (interceptor chain, Headers, message normalization). Unary 100 B at 64 in flight only.',
  grpc: 'grpc-js `Server` over HTTP/2, stock grpc-js client, one channel.',
  ws: 'the floor: `@fastify/websocket` route echoing each binary message, `ws` client; no protobuf, no framing, no gRPC semantics.',
  connect: '`@connectrpc/connect-fastify` with runtime descriptors (no codegen), Connect protocol over HTTP/2 (h2c, one session), binary, `connect-node` client.',
  'forward-grpcjs': 'a Fastify app with no handlers of its own, forwarding echo.Echo to the grpc-js server of the grpc-js rows (another process); a stock grpc-js client calls the app\'s `grpcServer`, so HTTP/2 in and HTTP/2 out.',
  'forward-lean': 'the same forwarder, called by the lean client over its WebSocket route.',
  'plugin-http-grpcweb': 'the plugin\'s HTTP route (the same server process as the WebSocket rows), connect-node\'s `createGrpcWebTransport` over HTTP/1.1, binary.',
  'plugin-http-connect': 'the plugin\'s HTTP route, connect-node\'s `createConnectTransport` over HTTP/1.1, binary.',
  'cf-http-grpcweb': '`@connectrpc/connect-fastify` over HTTP/1.1 with the same Echo as Connect handlers, runtime descriptors; the same gRPC-Web client.',
  'cf-http-connect': 'the same connect-fastify server; the same Connect client.'
}

/** The systems of the main tables; the forwarded and HTTP rows have sections of their own. */
const SYSTEM_ORDER: ClientSystem[] = ['plugin-lean', 'plugin-grpcjs', 'plugin-web', 'plugin-connect', 'grpc', 'connect', 'ws']
const FORWARD_SYSTEMS: ClientSystem[] = ['forward-grpcjs', 'forward-lean']
/** The HTTP rows measured with two client processes (bench/run.ts). */
export const HTTP_SATURATED_KEY = 'unary-100-c64-2p'

/** Each HTTP protocol: the plugin's row and connect-fastify's. */
const HTTP_PAIRS: Array<{ protocol: string, plugin: ClientSystem, cf: ClientSystem }> = [
  { protocol: 'gRPC-Web', plugin: 'plugin-http-grpcweb', cf: 'cf-http-grpcweb' },
  { protocol: 'Connect', plugin: 'plugin-http-connect', cf: 'cf-http-connect' }
]

export function summarize (results: BenchResults): Summary {
  const groups = new Map<string, Measurement[]>()
  for (const m of results.throughput) {
    const key = `${m.scenario}|${m.system}`
    const list = groups.get(key) ?? []
    list.push(m)
    groups.set(key, list)
  }
  const rows: Row[] = []
  for (const list of groups.values()) {
    rows.push({
      ...summarizeRepetitions(list),
      upstreamUsPerOp: medianOrNull(list.map(m => m.upstreamUsPerOp ?? null)),
      upstreamCpuPct: medianOrNull(list.map(m => m.upstreamCpuPct ?? null)),
      clientUsPerOp: medianOrNull(list.map(m => m.clientUsPerOp)),
      serverCpuPct: medianOrNull(list.map(m => m.serverCpuPct)),
      clientCpuPct: medianOrNull(list.map(m => m.clientCpuPct))
    })
  }

  const ratio = (scenario: string, a: ClientSystem, b: ClientSystem, field: 'rate' | 'serverUsPerOp' | 'clientUsPerOp'): Ratio | null => {
    const perRep: number[] = []
    for (let rep = 0; rep < results.plan.reps; rep++) {
      const ma = results.throughput.find(m => m.rep === rep && m.scenario === scenario && m.system === a)
      const mb = results.throughput.find(m => m.rep === rep && m.scenario === scenario && m.system === b)
      const va = ma?.[field]
      const vb = mb?.[field]
      if (va != null && vb != null && vb > 0 && ma!.errors === 0 && mb!.errors === 0) perRep.push(va / vb)
    }
    return perRep.length === 0 ? null : { scenario, a, b, field, median: median(perRep), perRep }
  }
  const ratios: Ratio[] = []
  const scenariosSeen = [...new Set(results.throughput.map(m => m.scenario))]
  for (const scenario of scenariosSeen) {
    for (const a of ['plugin-lean', 'plugin-grpcjs', 'grpc', 'connect'] as ClientSystem[]) {
      for (const field of ['rate', 'serverUsPerOp'] as const) {
        const r = ratio(scenario, a, 'ws', field)
        if (r !== null) ratios.push(r)
      }
    }
    for (const a of ['plugin-lean', 'plugin-grpcjs', 'connect'] as ClientSystem[]) {
      for (const field of ['rate', 'serverUsPerOp'] as const) {
        const r = ratio(scenario, a, 'grpc', field)
        if (r !== null) ratios.push(r)
      }
    }
    // The Connect transport's own overhead, beside the plain client it runs on.
    for (const field of ['rate', 'serverUsPerOp', 'clientUsPerOp'] as const) {
      const r = ratio(scenario, 'plugin-connect', 'plugin-web', field)
      if (r !== null) ratios.push(r)
    }
    // Forwarded against direct (server CPU: the forwarder's against the upstream's when called directly).
    for (const a of FORWARD_SYSTEMS) {
      for (const field of ['rate', 'serverUsPerOp'] as const) {
        const r = ratio(scenario, a, 'grpc', field)
        if (r !== null) ratios.push(r)
      }
    }
    // The HTTP routes against connect-fastify, protocol by protocol.
    for (const pair of HTTP_PAIRS) {
      for (const field of ['rate', 'serverUsPerOp'] as const) {
        const r = ratio(scenario, pair.plugin, pair.cf, field)
        if (r !== null) ratios.push(r)
      }
    }
  }

  // Idle memory
  const capped = results.memory.filter(m => m.v8Defaults !== true)
  const memSystems = [...new Set(capped.map(m => m.system))]
  const memory = memSystems.map(system => {
    const list = capped.filter(m => m.system === system)
    const per = list.map(m => m.rssPerConnKiB)
    return {
      system,
      rssPerConnKiB: median(per),
      range: [Math.min(...per), Math.max(...per)] as [number, number],
      heapPerConnKiB: median(list.map(m => m.heapPerConnKiB)),
      externalPerConnKiB: median(list.map(m => m.externalPerConnKiB)),
      openMs: median(list.map(m => m.openMs)),
      freshRssMiB: median(list.map(m => m.freshRss / 2 ** 20)),
      connections: median(list.map(m => m.count))
    }
  })
  const memPerRep: number[] = []
  for (let rep = 0; rep < results.plan.reps; rep++) {
    const p = capped.find(m => m.rep === rep && m.system === 'plugin')
    const w = capped.find(m => m.rep === rep && m.system === 'ws')
    if (p !== undefined && w !== undefined && w.rssPerConnKiB > 0) memPerRep.push(p.rssPerConnKiB / w.rssPerConnKiB)
  }
  const memoryRatio = memPerRep.length === 0 ? null : { median: median(memPerRep), perRep: memPerRep }
  const memoryV8Defaults = results.memory.filter(m => m.v8Defaults === true).map(m => ({ system: m.system, rssPerConnKiB: m.rssPerConnKiB, heapPerConnKiB: m.heapPerConnKiB }))

  // Start-up
  const kinds = [...new Set(results.startup.map(s => s.kind))]
  const startup = kinds.map(kind => {
    const list = results.startup.filter(s => s.kind === kind)
    const t = list.map(s => s.spawnToReadyMs)
    return { kind, median: median(t), min: Math.min(...t), max: Math.max(...t), inProcess: median(list.map(s => s.inProcessMs)) }
  })
  const perRound: number[] = []
  for (const round of [...new Set(results.startup.map(s => s.round))]) {
    const p = results.startup.find(s => s.round === round && s.kind === 'plugin')
    const b = results.startup.find(s => s.round === round && s.kind === 'bare')
    if (p !== undefined && b !== undefined) perRound.push(p.spawnToReadyMs / b.spawnToReadyMs)
  }
  const startupRatio = perRound.length === 0 ? null : { median: median(perRound), perRound }

  // Targets
  const targets: Target[] = []
  const findRatio = (scenario: string, a: ClientSystem, b: ClientSystem, field: 'rate' | 'serverUsPerOp' | 'clientUsPerOp'): Ratio | undefined =>
    ratios.find(r => r.scenario === scenario && r.a === a && r.b === b && r.field === field)
  const findRow = (scenario: string, system: ClientSystem): Row | undefined => rows.find(r => r.scenario === scenario && r.system === system)
  const fmtRatio = (r: Ratio | undefined, asPct: boolean): string => {
    if (r === undefined) return 'not measured'
    const f = (x: number): string => asPct ? `${(x * 100).toFixed(0)} %` : `${x.toFixed(2)}x`
    return `${f(r.median)} (per rep: ${r.perRep.map(f).join(', ')})`
  }
  const u100 = 'unary-100-c64'
  const u64k = 'unary-65536-c64'
  const bidi = `bidi-100-p${results.plan.streamInflight}`
  for (const client of ['plugin-lean', 'plugin-grpcjs'] as ClientSystem[]) {
    const label = client === 'plugin-lean' ? 'lean client' : 'grpc-js client'
    const cpu = findRatio(u100, client, 'ws', 'serverUsPerOp')
    const pl = findRow(u100, client)
    const ws = findRow(u100, 'ws')
    targets.push({
      name: 'unary 100 B, 64 in flight: server CPU per call ≤ 2x raw ws echo per message',
      client: label,
      measured: `${pl?.serverUsPerOp?.toFixed(1) ?? '?'} vs ${ws?.serverUsPerOp?.toFixed(1) ?? '?'} µs: ${fmtRatio(cpu, false)}`,
      value: cpu?.median ?? null,
      pass: cpu === undefined ? null : cpu.median <= 2
    })
    const thr = findRatio(u100, client, 'ws', 'rate')
    targets.push({
      name: 'unary 100 B, 64 in flight: throughput ≥ 50 % of raw ws echo',
      client: label,
      measured: `${fmtInt(pl?.rate)} vs ${fmtInt(ws?.rate)} /s: ${fmtRatio(thr, true)}`,
      value: thr?.median ?? null,
      pass: thr === undefined ? null : thr.median >= 0.5
    })
    const vsGrpc = findRatio(u100, client, 'grpc', 'rate')
    targets.push({
      name: 'unary 100 B, 64 in flight: throughput ≥ 5x grpc-js',
      client: label,
      measured: `${fmtInt(pl?.rate)} vs ${fmtInt(findRow(u100, 'grpc')?.rate)} /s: ${fmtRatio(vsGrpc, false)}`,
      value: vsGrpc?.median ?? null,
      pass: vsGrpc === undefined ? null : vsGrpc.median >= 5
    })
    targets.push({
      name: 'unary 100 B, 64 in flight: p99 < 2 ms',
      client: label,
      measured: pl?.p99Ms == null ? 'not measured' : `p99 ${pl.p99Ms.toFixed(2)} ms (p50 ${pl.p50Ms?.toFixed(2) ?? '?'} ms)`,
      value: pl?.p99Ms ?? null,
      pass: pl?.p99Ms == null ? null : pl.p99Ms < 2
    })
    const big = findRatio(u64k, client, 'ws', 'rate')
    targets.push({
      name: 'unary 64 KiB, 64 in flight: throughput ≥ 75 % of raw ws echo',
      client: label,
      measured: `${fmtInt(findRow(u64k, client)?.rate)} vs ${fmtInt(findRow(u64k, 'ws')?.rate)} /s: ${fmtRatio(big, true)}`,
      value: big?.median ?? null,
      pass: big === undefined ? null : big.median >= 0.75
    })
    const bi = findRatio(bidi, client, 'ws', 'rate')
    targets.push({
      name: `bidi, pipelined on one stream (${results.plan.streamInflight} in flight): msgs/s ≥ 70 % of raw ws echo`,
      client: label,
      measured: `${fmtInt(findRow(bidi, client)?.rate)} vs ${fmtInt(findRow(bidi, 'ws')?.rate)} /s: ${fmtRatio(bi, true)}`,
      value: bi?.median ?? null,
      pass: bi === undefined ? null : bi.median >= 0.7
    })
  }
  for (const client of FORWARD_SYSTEMS) {
    const label = client === 'forward-grpcjs' ? 'grpc-js client (HTTP/2 in)' : 'lean client (WebSocket in)'
    for (const [key, what] of [[u100, 'forwarded unary 100 B, 64 in flight: calls/s'], [bidi, `forwarded bidi, pipelined on one stream (${results.plan.streamInflight} in flight): msgs/s`]] as const) {
      const r = findRatio(key, client, 'grpc', 'rate')
      const f = findRow(key, client)
      targets.push({
        name: `${what} ≥ 80 % of a direct grpc-js client to the same upstream`,
        client: label,
        measured: `${fmtInt(f?.rate)} vs ${fmtInt(findRow(key, 'grpc')?.rate)} /s: ${fmtRatio(r, true)}; forwarder CPU ${fmt(f?.serverUsPerOp)} µs per call`,
        value: r?.median ?? null,
        pass: r === undefined ? null : r.median >= 0.8
      })
    }
  }
  for (const pair of HTTP_PAIRS) {
    const p = findRow(u100, pair.plugin)
    const c = findRow(u100, pair.cf)
    const rate = findRatio(u100, pair.plugin, pair.cf, 'rate')
    const cpu = findRatio(u100, pair.plugin, pair.cf, 'serverUsPerOp')
    // Calls/s is the server's only where the clients have cores to spare: the two-client rows when measured.
    const ps = findRow(HTTP_SATURATED_KEY, pair.plugin)
    const cs = findRow(HTTP_SATURATED_KEY, pair.cf)
    const rateS = findRatio(HTTP_SATURATED_KEY, pair.plugin, pair.cf, 'rate')
    const judged = rateS ?? rate
    targets.push({
      name: `${pair.protocol} (binary) unary 100 B, 64 in flight, HTTP/1.1: calls/s ≥ connect-fastify's`,
      client: `connect-node ${pair.protocol} transport`,
      measured: rateS === undefined
        ? `${fmtInt(p?.rate)} vs ${fmtInt(c?.rate)} /s: ${fmtRatio(rate, false)}`
        : `two client processes: ${fmtInt(ps?.rate)} vs ${fmtInt(cs?.rate)} /s: ${fmtRatio(rateS, false)}; one (client-bound at ${fmt(p?.clientCpuPct, 0)} / ${fmt(c?.clientCpuPct, 0)} % of its core): ${fmtRatio(rate, false)}`,
      value: judged?.median ?? null,
      pass: judged === undefined ? null : judged.median >= 1
    })
    targets.push({
      name: `${pair.protocol} (binary) unary 100 B, 64 in flight, HTTP/1.1: server CPU per call ≤ connect-fastify's`,
      client: `connect-node ${pair.protocol} transport`,
      measured: `${fmt(p?.serverUsPerOp)} vs ${fmt(c?.serverUsPerOp)} µs: ${fmtRatio(cpu, false)}`,
      value: cpu?.median ?? null,
      pass: cpu === undefined ? null : cpu.median <= 1
    })
  }
  const memPlugin = memory.find(m => m.system === 'plugin')
  const memWs = memory.find(m => m.system === 'ws')
  const defPlugin = memoryV8Defaults.find(m => m.system === 'plugin')
  const defWs = memoryV8Defaults.find(m => m.system === 'ws')
  const withDefaults = defPlugin === undefined || defWs === undefined
    ? ''
    : `; with V8's default young generation (one run): ${defPlugin.rssPerConnKiB.toFixed(1)} vs ${defWs.rssPerConnKiB.toFixed(1)} KiB, ${(defPlugin.rssPerConnKiB / defWs.rssPerConnKiB).toFixed(2)}x`
  targets.push({
    name: `idle connection: server RSS ≤ 1.3x raw @fastify/websocket (${results.plan.memCount.toLocaleString('en-US')} idle)`,
    client: 'lean client',
    measured: memoryRatio === null
      ? 'not measured'
      : `${memPlugin?.rssPerConnKiB.toFixed(1) ?? '?'} vs ${memWs?.rssPerConnKiB.toFixed(1) ?? '?'} KiB: ${memoryRatio.median.toFixed(2)}x (per rep: ${memoryRatio.perRep.map(x => x.toFixed(2)).join(', ')})${withDefaults}`,
    value: memoryRatio?.median ?? null,
    pass: memoryRatio === null ? null : memoryRatio.median <= 1.3
  })
  const hold = results.hold
  targets.push({
    name: `${(hold?.target ?? results.plan.holdCount).toLocaleString('en-US')} concurrent idle connections held`,
    client: 'lean client',
    measured: hold === null
      ? 'not measured'
      : `${hold.opened.toLocaleString('en-US')} opened in ${(hold.openMs / 1000).toFixed(1)} s; server held ${String(hold.serverConnectionsAfterHold)} after ${hold.heldMs / 1000} s; one call on each: ${hold.callsOk.toLocaleString('en-US')} ok, ${hold.callsFailed} failed`,
    value: hold?.serverConnectionsAfterHold ?? null,
    pass: hold === null ? null : hold.opened === hold.target && hold.serverConnectionsAfterHold === hold.target && hold.callsOk === hold.target
  })
  const sPlugin = startup.find(s => s.kind === 'plugin')
  const sBare = startup.find(s => s.kind === 'bare')
  targets.push({
    name: 'start-up (spawn → listening) ≤ 1.2x bare Fastify + @fastify/websocket + grpc-js',
    client: '—',
    measured: startupRatio === null
      ? 'not measured'
      : `${sPlugin?.median.toFixed(0) ?? '?'} vs ${sBare?.median.toFixed(0) ?? '?'} ms: ${startupRatio.median.toFixed(2)}x (per round: ${startupRatio.perRound.map(x => x.toFixed(2)).join(', ')})`,
    value: startupRatio?.median ?? null,
    pass: startupRatio === null ? null : startupRatio.median <= 1.2
  })

  if (results.fanout != null) {
    for (const t of fanoutTargets(results.fanout)) targets.push({ name: `fan-out, ${t.name}`, client: 'topics', measured: t.measured, value: null, pass: t.pass })
  }

  return { rows, ratios, memory, memoryV8Defaults, memoryRatio, startup, startupRatio, targets }
}

// --- formatting --------------------------------------------------------------------

export function fmtInt (x: number | null | undefined): string {
  return x == null || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US')
}

export function fmt (x: number | null | undefined, digits = 1): string {
  return x == null || !Number.isFinite(x) ? '–' : x.toFixed(digits)
}

export function sizeLabel (size: number): string {
  return size >= 1024 ? `${size / 1024} KiB` : `${size} B`
}

function machineLine (r: BenchResults): string {
  const m = r.machine
  return `${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; bufferutil ${m.bufferutil ? 'loaded' : 'not used'}; pinning: ${m.pinned}`
}

export function compactTable (r: BenchResults, s: Summary): string {
  const row = (scenario: string, system: ClientSystem): Row | undefined => s.rows.find(x => x.scenario === scenario && x.system === system)
  const bidi = `bidi-100-p${r.plan.streamInflight}`
  const lines = [
    '| system | unary 100 B, 64 in flight: calls/s | p50 / p99 ms | server CPU µs/call | unary 64 KiB, 64 in flight: calls/s | bidi, one stream: msgs/s | server stream: msgs/s |',
    '|---|---:|---:|---:|---:|---:|---:|'
  ]
  for (const system of SYSTEM_ORDER) {
    const u = row('unary-100-c64', system)
    lines.push(`| ${LABELS[system]} | ${fmtInt(u?.rate)} | ${fmt(u?.p50Ms, 2)} / ${fmt(u?.p99Ms, 2)} | ${fmt(u?.serverUsPerOp)} | ${fmtInt(row('unary-65536-c64', system)?.rate)} | ${fmtInt(row(bidi, system)?.rate)} | ${fmtInt(row('server-stream-100', system)?.rate)} |`)
  }
  return lines.join('\n')
}

function markdown (r: BenchResults, s: Summary): string {
  const out: string[] = []
  const row = (scenario: string, system: ClientSystem): Row | undefined => s.rows.find(x => x.scenario === scenario && x.system === system)
  out.push('# Benchmark: fastify-grpc-ws next to grpc-js, Connect-node and a raw WebSocket echo', '')
  out.push(`Generated by \`npm run ${r.plan.name === 'quick' ? 'bench:quick' : 'bench'}\` on ${r.date} in ${r.durationS.toFixed(0)} s.`, '')
  out.push(`Machine: ${machineLine(r)}.`, '')
  out.push(`Versions: ${Object.entries(r.machine.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '')
  out.push(`Plan "${r.plan.name}": ${r.plan.reps} repetition(s); each measurement ${r.plan.warmupMs} ms warm-up then a ${r.plan.windowMs} ms window. Every figure is the median over repetitions; every ratio is the median of per-repetition ratios (both systems measured in the same repetition, minutes apart at most).`, '')
  if (r.plan.reps < 3) out.push('**This is a smoke run (fewer than 3 repetitions): do not quote its numbers.**', '')

  out.push('## Summary', '', compactTable(r, s), '')

  out.push('## Targets', '')
  out.push('| target | plugin driven by | measured | verdict |', '|---|---|---|---|')
  for (const t of s.targets) out.push(`| ${t.name} | ${t.client} | ${t.measured} | ${t.pass === true ? 'met' : t.pass === false ? '**not met**' : 'n/a'} |`)
  out.push('')

  out.push('## Systems', '')
  const measured = new Set(s.rows.map(x => x.system))
  for (const system of [...SYSTEM_ORDER, ...FORWARD_SYSTEMS, ...HTTP_PAIRS.flatMap(p => [p.plugin, p.cf])]) {
    if (SYSTEM_ORDER.includes(system) || measured.has(system)) out.push(`- **${LABELS[system]}**: ${DESCRIPTIONS[system]}`)
  }
  out.push('')

  out.push('## Unary calls: calls/s (median; min–max over repetitions)', '')
  const unary = s.rows.filter(x => x.pattern === 'unary')
  const cols = [...new Set(unary.map(x => x.scenario))]
  const colOf = (key: string): Row => unary.find(x => x.scenario === key)!
  out.push(`| system | ${cols.map(c => `${sizeLabel(colOf(c).size)}, ${colOf(c).inflight} in flight`).join(' | ')} |`)
  out.push(`|---|${cols.map(() => '---:').join('|')}|`)
  for (const system of SYSTEM_ORDER) {
    out.push(`| ${LABELS[system]} | ${cols.map(c => {
      const x = row(c, system)
      return x === undefined ? '–' : `${fmtInt(x.rate)} (${fmtInt(x.rateMin)}–${fmtInt(x.rateMax)})${x.errors > 0 ? ` ⚠ ${x.errors} errors` : ''}`
    }).join(' | ')} |`)
  }
  out.push('')
  out.push('The plugin allows 100 concurrent streams per connection by default (`maxConcurrentStreams`), so at 256 in flight its clients queue the rest locally; grpc-js and Connect over HTTP/2 do not limit at 256.', '')

  out.push('## Unary calls: latency and CPU', '')
  out.push('Latency is measured by the client from issuing a call to its completion. CPU is `process.cpuUsage()` of each process over the window, divided by the calls completed in it.', '')
  out.push('| scenario | system | p50 ms | p99 ms | server CPU µs/call | client CPU µs/call | server / client CPU use |', '|---|---|---:|---:|---:|---:|---:|')
  for (const c of cols) {
    for (const system of SYSTEM_ORDER) {
      const x = row(c, system)
      if (x === undefined) continue
      out.push(`| ${sizeLabel(x.size)}, ${x.inflight} in flight | ${LABELS[system]} | ${fmt(x.p50Ms, 2)} | ${fmt(x.p99Ms, 2)} | ${fmt(x.serverUsPerOp)} | ${fmt(x.clientUsPerOp)} | ${fmt(x.serverCpuPct, 0)} % / ${fmt(x.clientCpuPct, 0)} % |`)
    }
  }
  out.push('')

  out.push('## Streams: messages/s on one stream (100 B messages)', '')
  out.push(`Server streaming: one call; the server writes as fast as flow control lets it (respecting \`write()\` back-pressure) and the client counts messages in the window, then cancels. Bidi: one call; the client keeps up to ${r.plan.streamInflight} messages in flight (pipelined), each echoed. The raw ws rows are a server pushing on one socket (server stream) and the echo socket with ${r.plan.streamInflight} in flight (bidi).`, '')
  out.push('| system | server stream msgs/s | server CPU µs/msg | bidi msgs/s | server CPU µs/msg | bidi server / client CPU use |', '|---|---:|---:|---:|---:|---:|')
  const bidiKey = `bidi-100-p${r.plan.streamInflight}`
  for (const system of SYSTEM_ORDER) {
    const ss = row('server-stream-100', system)
    const bd = row(bidiKey, system)
    if (ss === undefined && bd === undefined) continue
    out.push(`| ${LABELS[system]} | ${fmtInt(ss?.rate)} | ${fmt(ss?.serverUsPerOp)} | ${fmtInt(bd?.rate)} | ${fmt(bd?.serverUsPerOp)} | ${fmt(bd?.serverCpuPct, 0)} % / ${fmt(bd?.clientCpuPct, 0)} % |`)
  }
  out.push('')

  out.push(...forwardSection(r, s), ...httpSection(r, s))

  out.push('## Ratios (median of per-repetition ratios; per-repetition values in brackets)', '')
  out.push('| scenario | A | B | A/B throughput | A/B server CPU per op |', '|---|---|---|---:|---:|')
  const pairs = new Set(s.ratios.map(x => `${x.scenario}|${x.a}|${x.b}`))
  for (const p of pairs) {
    const [scenario, a, b] = p.split('|') as [string, ClientSystem, ClientSystem]
    const t = s.ratios.find(x => x.scenario === scenario && x.a === a && x.b === b && x.field === 'rate')
    const c = s.ratios.find(x => x.scenario === scenario && x.a === a && x.b === b && x.field === 'serverUsPerOp')
    const f = (x: Ratio | undefined): string => x === undefined ? '–' : `${x.median.toFixed(2)} [${x.perRep.map(v => v.toFixed(2)).join(', ')}]`
    out.push(`| ${scenario} | ${LABELS[a]} | ${LABELS[b]} | ${f(t)} | ${f(c)} |`)
  }
  out.push('')
  const connectClientCpu = s.ratios.find(x => x.a === 'plugin-connect' && x.b === 'plugin-web' && x.field === 'clientUsPerOp')
  if (connectClientCpu !== undefined) {
    out.push(`The Connect transport's own overhead (${connectClientCpu.scenario}): client CPU per call ${connectClientCpu.median.toFixed(2)}x the plain client's [${connectClientCpu.perRep.map(v => v.toFixed(2)).join(', ')}], on the same socket, server and codec.`, '')
  }

  out.push(`## Idle connections (${r.plan.memCount.toLocaleString('en-US')} after ${r.plan.memWarm} warm-up connections)`, '')
  out.push('Each connection made one call (one echo) and then idled. Per connection = (server RSS after − RSS after the warm-up connections) / count, both after a forced GC (`--expose-gc`). The plugin is driven by `ClientSession` connections, ws by `ws` sockets, grpc-js by one channel each (`grpc.use_local_subchannel_pool`).', '')
  out.push('The servers run with their young generation held at 1 MiB per semi-space (`--max-semi-space-size=1`), all alike. V8 otherwise grows it (up to 3 × 16 MiB) with the rate at which the process allocates while the connections open, not with what it keeps, and RSS keeps the pages it touched: that growth adds several KiB to each of 2,000 connections and varies from run to run. The last table is one run per server with V8\'s defaults.', '')
  out.push('| server | RSS KiB per connection (median; range) | heap KiB/conn | external KiB/conn | fresh server RSS MiB | time to open |', '|---|---:|---:|---:|---:|---:|')
  const memLabel: Record<string, string> = { plugin: 'fastify-grpc-ws', ws: 'raw @fastify/websocket', grpc: 'grpc-js HTTP/2' }
  for (const m of s.memory) out.push(`| ${memLabel[m.system] ?? m.system} | ${fmt(m.rssPerConnKiB)} (${fmt(m.range[0])}–${fmt(m.range[1])}) | ${fmt(m.heapPerConnKiB)} | ${fmt(m.externalPerConnKiB)} | ${fmt(m.freshRssMiB, 0)} | ${(m.openMs / 1000).toFixed(2)} s |`)
  out.push('')
  if (s.memoryV8Defaults.length > 0) {
    out.push('With V8\'s default young generation (one run each):', '', '| server | RSS KiB per connection | heap KiB/conn |', '|---|---:|---:|')
    for (const m of s.memoryV8Defaults) out.push(`| ${memLabel[m.system] ?? m.system} | ${fmt(m.rssPerConnKiB)} | ${fmt(m.heapPerConnKiB)} |`)
    out.push('')
  }
  if (r.hold !== null) {
    const h = r.hold
    out.push(`**${h.target.toLocaleString('en-US')} concurrent connections to the plugin:** ${h.opened.toLocaleString('en-US')} opened (${h.failed} failed${h.firstError !== null ? `: ${h.firstError}` : ''}) in ${(h.openMs / 1000).toFixed(1)} s, 100 at a time, each with one call; the server counted ${String(h.serverConnectionsAfterOpen)} open, and ${String(h.serverConnectionsAfterHold)} after holding them ${h.heldMs / 1000} s; then one more call on every connection: ${h.callsOk.toLocaleString('en-US')} ok, ${h.callsFailed} failed, in ${(h.callsMs / 1000).toFixed(1)} s. Server RSS ${(h.freshRss / 2 ** 20).toFixed(0)} MiB fresh, ${(h.rssHeld / 2 ** 20).toFixed(0)} MiB holding them (no forced GC).`, '')
  }

  out.push('## Start-up: spawn → listening', '')
  out.push(`\`spawn(node server.mjs)\` until the server reports from its listen callback; ${r.plan.startupRounds} rounds after one discarded warm round, kinds alternated. Each server is an esbuild bundle of its own entry (dependencies loaded from node_modules as usual), so no TypeScript loader is timed.`, '')
  const kindLabel: Record<string, string> = {
    node: 'bare node (no server)',
    bare: 'Fastify + @fastify/websocket + grpc-js (proto-loader), both listening',
    plugin: 'Fastify + fastify-grpc-ws + grpc-js (proto-loader), both listening',
    ws: 'Fastify + @fastify/websocket',
    grpc: 'grpc-js (proto-loader)',
    connect: 'Fastify (HTTP/2) + connect-fastify, runtime descriptors'
  }
  out.push('| server | median ms | range | in-process ms at listening |', '|---|---:|---:|---:|')
  for (const x of s.startup) out.push(`| ${kindLabel[x.kind] ?? x.kind} | ${x.median.toFixed(0)} | ${x.min.toFixed(0)}–${x.max.toFixed(0)} | ${x.inProcess.toFixed(0)} |`)
  out.push('')

  if (r.fanout != null) out.push(fanoutMarkdown(r.fanout, { targets: false }))

  out.push('## Method and caveats', '')
  out.push('- Every server and every client is its own Node process on 127.0.0.1; the orchestrator (`bench/run.ts`) only forwards IPC. Servers of all four systems run side by side, idle except the one under load; each system has its own client process. Systems alternate within each scenario, and the order rotates between scenarios and repetitions.')
  out.push('- Server CPU is sampled in the server process with `process.cpuUsage()` when the client opens and closes its window (the IPC round trip adds well under a millisecond); the client counts what completed inside the window.')
  out.push(`- ${r.machine.cores} cores only: client and server share the machine. With the pinning above each has one core (Node's helper threads included). Throughput is that of the *pair*: a client that saturates its core (grpc-js, Connect) caps the figure. Server CPU per call is the transferable figure.`)
  out.push('- Windows are short so that the default run ends within 5 minutes; run-to-run drift on this VM is large (see the baselines), so compare systems by the ratios, which are taken within one repetition.')
  const foreign = r.throughput.map(m => m.foreignCpuPct)
  const repeated = r.throughput.filter(m => m.attempts > 1).length
  out.push(`- This machine is shared with other work. Each window records the CPU other processes used (from \`/proc/stat\`, minus this server and client): median ${median(foreign).toFixed(0)} %, max ${Math.max(0, ...foreign).toFixed(0)} % of one core over the ${foreign.length} kept measurements; ${repeated} measurement(s) were repeated because it exceeded ${r.plan.maxForeignCpuPct} % (the least disturbed attempt is kept; see \`foreignCpuPct\` and \`attempts\` in bench.json). Load average: ${r.machine.loadAvgStart.toFixed(2)} at the start, ${r.machine.loadAvgEnd.toFixed(2)} at the end.`)
  // Time the hypervisor gave other machines while this one wanted the CPU: no process sees it, every figure pays for it.
  const steal = r.throughput.map(m => m.machineCpu.reduce((n, c) => n + c.steal, 0) / Math.max(1, m.machineCpu.length))
  if (steal.length > 0) out.push(`- The machine is a VM: the hypervisor took (steal, from \`/proc/stat\`) a median ${median(steal).toFixed(0)} % and at most ${Math.max(...steal).toFixed(0)} % of the CPUs' time over the kept measurements (\`machineCpu\` in bench.json); a window with steal ran slower than the code it measured.`)
  out.push('- Not measured: TLS, browsers, non-loopback networks, JSON encodings, other Node versions.')
  for (const note of r.notes) out.push(`- ${note}`)
  out.push('')
  return out.join('\n')
}

/** Per-repetition ratios as "0.93 [0.90, 0.95, 0.97]" (or as percentages). */
function ratioText (x: Ratio | undefined, asPct = false): string {
  if (x === undefined) return '–'
  const f = (v: number): string => asPct ? `${(v * 100).toFixed(0)} %` : `${v.toFixed(2)}x`
  return `${f(x.median)} [${x.perRep.map(f).join(', ')}]`
}

/** docs/bench.md's section on forwarded calls (empty when none were measured). */
export function forwardSection (r: BenchResults, s: Summary): string[] {
  const keys = ['unary-100-c64', `bidi-100-p${r.plan.streamInflight}`]
  const rows = keys.flatMap(key => FORWARD_SYSTEMS.map(system => s.rows.find(x => x.scenario === key && x.system === system))).filter((x): x is Row => x !== undefined)
  if (rows.length === 0) return []
  const out: string[] = []
  out.push('## Forwarding to a grpc-js upstream', '')
  out.push('Goal: forwarded calls/s at least 80 % of a direct grpc-js client to the same upstream, with the forwarder\'s CPU per call. The upstream is the grpc-js server of the grpc-js rows above (a process of its own); the forwarder (`bench/servers/forward.ts`) is a Fastify app with no handlers of its own forwarding echo.Echo to it, called over its `grpcServer` by a stock grpc-js client (HTTP/2 in, HTTP/2 out) and over its WebSocket route by the lean client. Each row\'s system under test has the servers\' CPU to itself: the grpc-js server in a direct row, the forwarder in a forwarded one, while the upstream is moved (`taskset -a -p`) to the clients\' CPU for that row\'s measurement, as if it ran on a host of its own. On two cores one of the three processes has to share: here the upstream shares with the client, and the last column shows how much of a core each took. The forwarder\'s and the upstream\'s CPU per call are measured apart, whatever the layout. "Direct" is the grpc-js row measured in the same repetitions; "vs direct" is the median of per-repetition ratios.', '')
  out.push('| scenario | way | calls or msgs/s (median; min–max) | vs direct [per rep] | forwarder CPU µs/call | upstream CPU µs/call | client CPU µs/call | forwarder / upstream / client CPU use |', '|---|---|---:|---:|---:|---:|---:|---:|')
  for (const key of keys) {
    const direct = s.rows.find(x => x.scenario === key && x.system === 'grpc')
    const label = key.startsWith('bidi') ? `bidi 100 B, pipelined (${r.plan.streamInflight} in flight)` : 'unary 100 B, 64 in flight'
    if (direct !== undefined) out.push(`| ${label} | direct grpc-js client | ${fmtInt(direct.rate)} (${fmtInt(direct.rateMin)}–${fmtInt(direct.rateMax)}) | 100 % | – | ${fmt(direct.serverUsPerOp)} | ${fmt(direct.clientUsPerOp)} | – / ${fmt(direct.serverCpuPct, 0)} % / ${fmt(direct.clientCpuPct, 0)} % |`)
    for (const system of FORWARD_SYSTEMS) {
      const x = s.rows.find(y => y.scenario === key && y.system === system)
      if (x === undefined) continue
      const vs = s.ratios.find(y => y.scenario === key && y.a === system && y.b === 'grpc' && y.field === 'rate')
      out.push(`| ${label} | ${LABELS[system]} | ${fmtInt(x.rate)} (${fmtInt(x.rateMin)}–${fmtInt(x.rateMax)})${x.errors > 0 ? ` ⚠ ${x.errors} errors` : ''} | ${ratioText(vs, true)} | ${fmt(x.serverUsPerOp)} | ${fmt(x.upstreamUsPerOp)} | ${fmt(x.clientUsPerOp)} | ${fmt(x.serverCpuPct, 0)} % / ${fmt(x.upstreamCpuPct, 0)} % / ${fmt(x.clientCpuPct, 0)} % |`)
    }
  }
  out.push('')
  return out
}

/** docs/bench.md's section on the HTTP routes against connect-fastify (empty when not measured). */
export function httpSection (r: BenchResults, s: Summary): string[] {
  const present = HTTP_PAIRS.filter(p => s.rows.some(x => x.scenario === 'unary-100-c64' && (x.system === p.plugin || x.system === p.cf)))
  if (present.length === 0) return []
  const out: string[] = []
  out.push('## HTTP routes: gRPC-Web and Connect against connect-fastify (HTTP/1.1)', '')
  out.push('Goal: calls/s and server CPU per call at least on par with connect-fastify serving the same service. Unary 100 B at 64 in flight, binary; the client is connect-node\'s `createGrpcWebTransport` or `createConnectTransport` with `httpVersion: \'1.1\'` (Node\'s agent: a keep-alive socket per call in flight). The plugin\'s rows are its HTTP routes in the same server process as the WebSocket rows; connect-fastify runs in a process of its own over HTTP/1.1 (`bench/servers/http-connect.ts`) with the Echo as Connect handlers. Ratios are the medians of per-repetition ratios.', '')
  out.push('One client process, pinned to the clients\' CPU as in the other rows, uses its whole core against either server, so its calls/s is the client\'s. The servers are therefore also driven by two client processes of 32 calls in flight each, not pinned (they share the clients\' CPU and whatever the pinned server leaves of its own): the calls/s a server gives when clients have cores to spare, which the calls/s goal is judged on. Their p50 / p99 is the worse of the two clients\'; client CPU use is the two summed.', '')
  const table = (key: string, title: string): void => {
    out.push(`**${title}**`, '')
    out.push('| protocol | server | calls/s (median; min–max) | p50 / p99 ms | server CPU µs/call | server / client CPU use | plugin / connect-fastify: calls/s [per rep] | server CPU per call [per rep] |', '|---|---|---:|---:|---:|---:|---:|---:|')
    for (const pair of present) {
      const rate = s.ratios.find(x => x.scenario === key && x.a === pair.plugin && x.b === pair.cf && x.field === 'rate')
      const cpu = s.ratios.find(x => x.scenario === key && x.a === pair.plugin && x.b === pair.cf && x.field === 'serverUsPerOp')
      for (const system of [pair.plugin, pair.cf]) {
        const x = s.rows.find(y => y.scenario === key && y.system === system)
        if (x === undefined) continue
        const mine = system === pair.plugin
        out.push(`| ${pair.protocol} | ${mine ? 'fastify-grpc-ws' : 'connect-fastify'} | ${fmtInt(x.rate)} (${fmtInt(x.rateMin)}–${fmtInt(x.rateMax)})${x.errors > 0 ? ` ⚠ ${x.errors} errors` : ''} | ${fmt(x.p50Ms, 2)} / ${fmt(x.p99Ms, 2)} | ${fmt(x.serverUsPerOp)} | ${fmt(x.serverCpuPct, 0)} % / ${fmt(x.clientCpuPct, 0)} % | ${mine ? ratioText(rate) : ''} | ${mine ? ratioText(cpu) : ''} |`)
      }
    }
    out.push('')
  }
  table('unary-100-c64', 'One client process (pinned)')
  if (s.rows.some(x => x.scenario === HTTP_SATURATED_KEY)) table(HTTP_SATURATED_KEY, 'Two client processes (32 in flight each, not pinned)')
  return out
}

// --- SVG ----------------------------------------------------------------------

const COLORS: Record<ClientSystem, string> = {
  'plugin-lean': '#1f77b4',
  'plugin-grpcjs': '#6baed6',
  'plugin-web': '#9467bd',
  'plugin-connect': '#c5b0d5',
  grpc: '#ff7f0e',
  connect: '#2ca02c',
  ws: '#7f7f7f',
  'forward-grpcjs': '#8c564b',
  'forward-lean': '#c49c94',
  'plugin-http-grpcweb': '#17becf',
  'plugin-http-connect': '#9edae5',
  'cf-http-grpcweb': '#bcbd22',
  'cf-http-connect': '#dbdb8d'
}

export function esc (text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/** The opening of a chart: the svg element, a white ground, a title and a grey subtitle. */
export function svgOpen (W: number, H: number, title: string, subtitle: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="20" y="26" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="20" y="44" fill="#555">${esc(subtitle)}</text>`
  ]
}

export interface BarSeries { label: string, color: string }

export interface BarChart {
  box: { x: number, y: number, w: number, h: number }
  title: string
  /** One value per series in each group (null: not measured); a label's ", " parts go on lines of their own. */
  groups: Array<{ label: string, values: Array<number | null> }>
  series: BarSeries[]
  /** The axis goes from 0 to `top`, with a grid line every `step`. */
  top: number
  step: number
  tick: (value: number) => string
  /** The text over a bar. */
  value: (value: number) => string
  /** The tooltip of a bar. */
  hint: (label: string, value: number) => string
  /** A dashed line at this value (the floor everything is compared with). */
  reference?: { value: number, text: string }
}

/** Grouped vertical bars: one group per scenario, one bar per series. */
export function svgBars (c: BarChart): string[] {
  const parts: string[] = []
  const L = c.box
  const y = (v: number): number => L.y + L.h - (v / c.top) * L.h
  parts.push(`<text x="${L.x}" y="${L.y - 14}" font-weight="bold">${esc(c.title)}</text>`)
  for (let t = 0; t <= c.top + 1e-9; t += c.step) {
    parts.push(`<line x1="${L.x}" x2="${L.x + L.w}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e5e5e5"/>`)
    parts.push(`<text x="${L.x - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end" fill="#555">${esc(c.tick(t))}</text>`)
  }
  if (c.reference !== undefined) {
    const ry = y(c.reference.value)
    parts.push(`<line x1="${L.x}" x2="${L.x + L.w}" y1="${ry.toFixed(1)}" y2="${ry.toFixed(1)}" stroke="#7f7f7f" stroke-dasharray="5,3"/>`)
    parts.push(`<text x="${L.x + L.w}" y="${(ry - 4).toFixed(1)}" text-anchor="end" fill="#7f7f7f">${esc(c.reference.text)}</text>`)
  }
  const gw = L.w / c.groups.length
  const bw = (gw - 24) / c.series.length
  c.groups.forEach((g, gi) => {
    const gx = L.x + gi * gw + 12
    c.series.forEach((series, si) => {
      const v = g.values[si]
      const x = gx + si * bw
      if (v === null || v === undefined) return
      parts.push(`<rect x="${x.toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 3).toFixed(1)}" height="${(L.y + L.h - y(v)).toFixed(1)}" fill="${series.color}"><title>${esc(c.hint(series.label, v))}</title></rect>`)
      parts.push(`<text x="${(x + (bw - 3) / 2).toFixed(1)}" y="${(y(v) - 3).toFixed(1)}" text-anchor="middle" font-size="10">${esc(c.value(v))}</text>`)
    })
    const words = g.label.split(', ')
    words.forEach((w, wi) => parts.push(`<text x="${(gx + (gw - 24) / 2).toFixed(1)}" y="${L.y + L.h + 16 + wi * 14}" text-anchor="middle">${esc(w)}</text>`))
  })
  parts.push(`<line x1="${L.x}" x2="${L.x + L.w}" y1="${L.y + L.h}" y2="${L.y + L.h}" stroke="#333"/>`)
  return parts
}

/** Horizontal bars, one row per system, labelled on the left (title 90 px left of the box). */
export function svgRows (c: { box: { x: number, y: number, w: number, h: number }, title: string, rows: Array<{ lines: string[], color: string, value: number | null }>, value: (v: number) => string }): string[] {
  const R = c.box
  const parts: string[] = []
  const max = Math.max(1, ...c.rows.map(r => r.value).filter((v): v is number => v !== null))
  parts.push(`<text x="${R.x - 90}" y="${R.y - 14}" font-weight="bold">${esc(c.title)}</text>`)
  const rowH = R.h / c.rows.length
  c.rows.forEach((row, i) => {
    const yy = R.y + i * rowH + 8
    row.lines.forEach((line, li) => parts.push(`<text x="${R.x - 8}" y="${yy + 14 + li * 13}" text-anchor="end">${esc(line)}</text>`))
    if (row.value === null) return
    const w = (row.value / max) * (R.w - 40)
    parts.push(`<rect x="${R.x}" y="${yy}" width="${w.toFixed(1)}" height="${(rowH - 20).toFixed(1)}" fill="${row.color}"/>`)
    parts.push(`<text x="${(R.x + w + 4).toFixed(1)}" y="${(yy + (rowH - 20) / 2 + 4).toFixed(1)}">${esc(c.value(row.value))}</text>`)
  })
  return parts
}

/** A row of colour keys at `y`, `spacing` apart. */
export function svgLegend (series: BarSeries[], y: number, spacing: number): string[] {
  return series.flatMap((s, i) => {
    const x = 20 + i * spacing
    return [`<rect x="${x}" y="${y}" width="12" height="12" fill="${s.color}"/>`, `<text x="${x + 17}" y="${y + 10}">${esc(s.label)}</text>`]
  })
}

function svg (r: BenchResults, s: Summary): string {
  const W = 960
  const H = 470
  const parts: string[] = []
  parts.push(...svgOpen(W, H, 'fastify-grpc-ws next to grpc-js, Connect-node and a raw WebSocket echo', `${r.machine.cores} × ${r.machine.cpuModel}, Node ${r.machine.node}; ${r.plan.reps} repetition(s), medians; ${r.date.slice(0, 10)}`))

  // Left: throughput as % of the raw ws echo, per repetition medians.
  const groups: Array<{ key: string, label: string }> = [
    { key: 'unary-100-c64', label: 'unary 100 B, 64 in flight' },
    { key: 'unary-65536-c64', label: 'unary 64 KiB, 64 in flight' },
    { key: `bidi-100-p${r.plan.streamInflight}`, label: 'bidi, one stream' },
    { key: 'server-stream-100', label: 'server stream, one stream' }
  ]
  const systems: ClientSystem[] = ['plugin-lean', 'plugin-grpcjs', 'grpc', 'connect']
  const values = groups.map(g => systems.map(sys => s.ratios.find(x => x.scenario === g.key && x.a === sys && x.b === 'ws' && x.field === 'rate')?.median ?? null))
  parts.push(...svgBars({
    box: { x: 60, y: 80, w: 520, h: 300 },
    title: 'Throughput, % of the raw WebSocket echo (same repetition)',
    groups: groups.map((g, gi) => ({ label: g.label, values: values[gi]! })),
    series: systems.map(sys => ({ label: LABELS[sys], color: COLORS[sys] })),
    top: Math.ceil(Math.max(1.0, ...values.flat().filter((v): v is number => v !== null)) * 4) / 4,
    step: 0.25,
    tick: t => `${Math.round(t * 100)} %`,
    value: v => (v * 100).toFixed(0),
    hint: (label, v) => `${label}: ${(v * 100).toFixed(0)} %`,
    reference: { value: 1, text: 'raw ws echo = 100 %' }
  }))

  // Right: server CPU per call, unary 100 B at 64 in flight.
  const cpuSystems: ClientSystem[] = ['ws', 'plugin-lean', 'plugin-grpcjs', 'grpc', 'connect']
  const short: Partial<Record<ClientSystem, string[]>> = {
    ws: ['raw ws echo', '(per message)'],
    'plugin-lean': ['plugin,', 'lean client'],
    'plugin-grpcjs': ['plugin,', 'grpc-js client'],
    'plugin-web': ['plugin,', 'plain client'],
    'plugin-connect': ['plugin,', 'Connect transport'],
    grpc: ['grpc-js', 'HTTP/2'],
    connect: ['Connect-node', 'HTTP/2']
  }
  parts.push(...svgRows({
    box: { x: 700, y: 80, w: 220, h: 300 },
    title: 'Server CPU µs per call (unary 100 B, 64 in flight)',
    rows: cpuSystems.map(sys => ({ lines: short[sys] ?? [LABELS[sys]], color: COLORS[sys], value: s.rows.find(x => x.scenario === 'unary-100-c64' && x.system === sys)?.serverUsPerOp ?? null })),
    value: v => v.toFixed(1)
  }))

  parts.push(...svgLegend(systems.map(sys => ({ label: LABELS[sys], color: COLORS[sys] })), H - 36, 235))
  parts.push(`<text x="20" y="${H - 8}" fill="#555" font-size="11">Lean client: the protocol core without grpc-js (server-side cost). grpc-js client: includes grpc-js client costs on the same 2 cores. Higher is better on the left, lower on the right.</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

export function writeReports (dir: string, results: BenchResults, summary: Summary): void {
  writeFileSync(join(dir, 'bench.json'), JSON.stringify({ ...results, summary }, null, 2) + '\n')
  writeFileSync(join(dir, 'bench.md'), markdown(results, summary))
  writeFileSync(join(dir, 'bench.svg'), svg(results, summary))
}
