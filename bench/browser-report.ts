/**
 * The browser benchmark's results (bench/browser.ts): medians over
 * repetitions, per-repetition ratios, and bench-browser.json, .md and .svg,
 * drawn with the Node bench's chart pieces (bench/report.ts).
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { median, medianOrNull, summarizeRepetitions, type Pattern } from './common.js'
import type { PageSystem } from './browser-page.js'
import { esc, fmt, fmtInt, sizeLabel, svgBars, svgLegend, svgOpen, svgRows, type Plan } from './report.js'

/** The Node bench's plan fields the page's runs share, and the run's time budget. */
export type BrowserPlan = Pick<Plan, 'name' | 'reps' | 'warmupMs' | 'windowMs' | 'prewarmMs' | 'unarySizes' | 'unaryInflight' | 'streamInflight'> & { budgetMs: number }

export interface BrowserMeasurement {
  rep: number
  scenario: string
  pattern: Pattern
  size: number
  inflight: number
  system: PageSystem
  ops: number
  seconds: number
  rate: number
  p50Ms: number | null
  p99Ms: number | null
  errors: number
  firstError: string | null
  serverUsPerOp: number | null
  serverCpuPct: number | null
  /** CPU of all of Chromium's processes (browser, renderer, network service, GPU), % of one core. */
  chromiumCpuPct: number | null
  chromiumUsPerOp: number | null
  /** The page's main thread, where the clients run: busy share of the window (CDP TaskDuration), %. */
  pageBusyPct: number | null
  /** CPU (% of one core) used on the machine by other processes during the window. */
  foreignCpuPct: number
}

export interface BrowserResults {
  date: string
  chromium: string
  machine: { cpuModel: string, cores: number, memoryGiB: number, os: string, node: string, pinned: string, versions: Record<string, string>, loadAvgStart: number, loadAvgEnd: number }
  plan: BrowserPlan
  measurements: BrowserMeasurement[]
  durationS: number
}

interface Row {
  scenario: string
  pattern: Pattern
  size: number
  inflight: number
  system: PageSystem
  reps: number
  rate: number
  rateMin: number
  rateMax: number
  p50Ms: number | null
  p99Ms: number | null
  serverUsPerOp: number | null
  chromiumCpuPct: number | null
  chromiumUsPerOp: number | null
  pageBusyPct: number | null
  errors: number
}

interface Ratio { scenario: string, a: PageSystem, b: PageSystem, median: number, perRep: number[] }

export interface BrowserSummary {
  rows: Row[]
  ratios: Ratio[]
  /** At 64 unary calls (100 B) in flight: this project's client against connect-web, from the same page. */
  goal: { text: string, value: number | null, met: boolean | null }
}

export const BROWSER_SYSTEMS: PageSystem[] = ['web', 'http', 'connect-web', 'ws']

export const BROWSER_LABELS: Record<PageSystem, string> = {
  web: 'fastify-grpc-ws/client, WebSocket',
  http: 'fastify-grpc-ws/client, HTTP fallback (gRPC-Web over fetch)',
  'connect-web': 'connect-web, Connect over fetch (connect-fastify)',
  ws: 'raw WebSocket echo'
}

const DESCRIPTIONS: Record<PageSystem, string> = {
  web: 'this project\'s browser client (`fastify-grpc-ws/client`) to the plugin over one multiplexed WebSocket. Serializer: protobuf-es `toBinary`/`fromBinary` (runtime descriptors).',
  http: 'the same client\'s HTTP fallback (`fastify-grpc-ws/client` at its defaults), its WebSocket refused (a WebSocket class in the page that fails before it opens), so unary and server-streaming calls go over gRPC-Web with `fetch` to the plugin\'s HTTP route, HTTP/1.1. Serializer: protobuf-es. No bidi over HTTP.',
  'connect-web': '`@connectrpc/connect-web` `createConnectTransport` (Connect protocol, binary, `fetch`) to `@connectrpc/connect-fastify` over HTTP/1.1: the browser opens at most 6 connections per origin, so at most 6 calls are on the wire at once. Serializer: protobuf-es (inside connect-web). No bidi (fetch has no full-duplex body).',
  ws: 'the floor: a bare `WebSocket` in the page to an `@fastify/websocket` route echoing each binary message (no protobuf, no framing, no gRPC semantics); server streaming is a route pushing copies of one message; "bidi" is the echo socket with the same number in flight.'
}

const SERIALIZER: Record<PageSystem, string> = { web: 'protobuf-es', http: 'protobuf-es', 'connect-web': 'protobuf-es', ws: 'none (raw bytes)' }

const COLORS: Record<PageSystem, string> = { web: '#1f77b4', http: '#9467bd', 'connect-web': '#2ca02c', ws: '#7f7f7f' }

/** The page's thread counts as saturated from this busy share on. */
const SATURATED_PCT = 90

export function summarizeBrowser (r: BrowserResults): BrowserSummary {
  const groups = new Map<string, BrowserMeasurement[]>()
  for (const m of r.measurements) {
    const key = `${m.scenario}|${m.system}`
    groups.set(key, [...(groups.get(key) ?? []), m])
  }
  const rows: Row[] = [...groups.values()].map(list => ({
    ...summarizeRepetitions(list),
    chromiumCpuPct: medianOrNull(list.map(m => m.chromiumCpuPct)),
    chromiumUsPerOp: medianOrNull(list.map(m => m.chromiumUsPerOp)),
    pageBusyPct: medianOrNull(list.map(m => m.pageBusyPct))
  }))
  const ratios: Ratio[] = []
  const pairs: Array<[PageSystem, PageSystem]> = [['web', 'connect-web'], ['http', 'connect-web'], ['web', 'ws'], ['http', 'ws'], ['connect-web', 'ws']]
  for (const scenario of new Set(r.measurements.map(m => m.scenario))) {
    for (const [a, b] of pairs) {
      const perRep: number[] = []
      for (let rep = 0; rep < r.plan.reps; rep++) {
        const ma = r.measurements.find(m => m.rep === rep && m.scenario === scenario && m.system === a)
        const mb = r.measurements.find(m => m.rep === rep && m.scenario === scenario && m.system === b)
        if (ma !== undefined && mb !== undefined && mb.rate > 0 && ma.errors === 0 && mb.errors === 0) perRep.push(ma.rate / mb.rate)
      }
      if (perRep.length > 0) ratios.push({ scenario, a, b, median: median(perRep), perRep })
    }
  }
  const g = ratios.find(x => x.scenario === 'unary-100-c64' && x.a === 'web' && x.b === 'connect-web')
  const row = (system: PageSystem): Row | undefined => rows.find(x => x.scenario === 'unary-100-c64' && x.system === system)
  return {
    rows,
    ratios,
    goal: {
      text: g === undefined
        ? 'not measured'
        : `${fmtInt(row('web')?.rate)} vs ${fmtInt(row('connect-web')?.rate)} calls/s: ${g.median.toFixed(2)}x (per repetition: ${g.perRep.map(x => `${x.toFixed(2)}x`).join(', ')})`,
      value: g?.median ?? null,
      met: g === undefined ? null : g.median >= 5
    }
  }
}

const saturated = (x: Row | undefined): string => x?.pageBusyPct == null ? '–' : x.pageBusyPct >= SATURATED_PCT ? `**yes** (${x.pageBusyPct.toFixed(0)} %)` : `no (${x.pageBusyPct.toFixed(0)} %)`

/** The short table (README): unary 100 B at each in-flight count, 64 KiB, the streams. */
export function browserTable (r: BrowserResults, s: BrowserSummary): string {
  const row = (scenario: string, system: PageSystem): Row | undefined => s.rows.find(x => x.scenario === scenario && x.system === system)
  const inflight = r.plan.unaryInflight
  const lines = [
    `| from the page | ${inflight.map(c => `unary 100 B, ${c} in flight: calls/s`).join(' | ')} | p50 / p99 ms at 64 | unary 64 KiB, 64 in flight: calls/s | server stream: msgs/s | bidi, pipelined: msgs/s |`,
    `|---|${inflight.map(() => '---:').join('|')}|---:|---:|---:|---:|`
  ]
  for (const system of BROWSER_SYSTEMS) {
    const u = row('unary-100-c64', system)
    lines.push(`| ${BROWSER_LABELS[system]} | ${inflight.map(c => fmtInt(row(`unary-100-c${c}`, system)?.rate)).join(' | ')} | ${fmt(u?.p50Ms, 2)} / ${fmt(u?.p99Ms, 2)} | ${fmtInt(row('unary-65536-c64', system)?.rate)} | ${fmtInt(row('server-stream-100', system)?.rate)} | ${fmtInt(row(`bidi-100-p${r.plan.streamInflight}`, system)?.rate)} |`)
  }
  return lines.join('\n')
}

function markdown (r: BrowserResults, s: BrowserSummary): string {
  const out: string[] = []
  const row = (scenario: string, system: PageSystem): Row | undefined => s.rows.find(x => x.scenario === scenario && x.system === system)
  const m = r.machine
  out.push('# Browser benchmark: the clients in Chromium', '')
  out.push(`Generated by \`npm run bench:browser${r.plan.name === 'quick' ? ' -- --quick' : ''}\` on ${r.date} in ${r.durationS.toFixed(0)} s.`, '')
  out.push(`Browser: **${r.chromium}** (Debian's \`/usr/bin/chromium\`, headless, through playwright-core).`, '')
  out.push(`Machine: ${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node} (servers); pinning: ${m.pinned}. Load average ${m.loadAvgStart.toFixed(2)} at the start, ${m.loadAvgEnd.toFixed(2)} at the end.`, '')
  out.push(`Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`, '')
  out.push(`Plan "${r.plan.name}": ${r.plan.reps} repetition(s); each measurement ${r.plan.warmupMs} ms warm-up then a ${r.plan.windowMs} ms window. Every figure is the median over repetitions; every ratio is the median of per-repetition ratios.`, '')
  if (r.plan.reps < 3) out.push('**This is a smoke run (fewer than 3 repetitions): do not quote its numbers.**', '')
  const foreign = median(r.measurements.map(x => x.foreignCpuPct))
  if (foreign > 50) out.push(`**Other processes kept the machine busy during this run (a median ${foreign.toFixed(0)} % of one core in the measuring windows, load average ${m.loadAvgStart.toFixed(1)} at the start): Chromium and the servers got a fraction of their cores, so the absolute figures are far below what this machine gives when quiet, and the ratios are only indicative.**`, '')
  out.push('## Summary', '', browserTable(r, s), '')
  out.push(`Goal: at 64 unary calls (100 B) in flight, this project's client at least 5× connect-web's calls/s from the same page: ${s.goal.text}, ${s.goal.met === true ? '**met**' : s.goal.met === false ? '**not met**' : 'n/a'}.`, '')
  out.push('## Systems', '')
  for (const system of BROWSER_SYSTEMS) out.push(`- **${BROWSER_LABELS[system]}**: ${DESCRIPTIONS[system]}`)
  out.push('', 'Payloads as in the Node bench (`bench/echo.proto`, `{string message = 1; bytes payload = 2}`): "100 B" is 100 deterministic bytes in `payload` (102 B of protobuf), "64 KiB" 65,536; the raw echo sends bare binary messages of the same sizes.', '')

  out.push('## Unary calls: calls/s (median; min–max over repetitions)', '')
  const unary = s.rows.filter(x => x.pattern === 'unary')
  const cols = [...new Set(unary.map(x => x.scenario))]
  const colOf = (key: string): Row => unary.find(x => x.scenario === key)!
  out.push(`| system | ${cols.map(c => `${sizeLabel(colOf(c).size)}, ${colOf(c).inflight} in flight`).join(' | ')} |`, `|---|${cols.map(() => '---:').join('|')}|`)
  for (const system of BROWSER_SYSTEMS) {
    out.push(`| ${BROWSER_LABELS[system]} | ${cols.map(c => {
      const x = row(c, system)
      return x === undefined ? '–' : `${fmtInt(x.rate)} (${fmtInt(x.rateMin)}–${fmtInt(x.rateMax)})${x.errors > 0 ? ` ⚠ ${x.errors} errors` : ''}`
    }).join(' | ')} |`)
  }
  out.push('')

  out.push('## Latency and CPU', '')
  out.push(`Latency: from issuing a call in the page to its completion there. Server CPU: \`process.cpuUsage()\` of the server process over the window, per call. Chromium CPU: all of Chromium's processes (browser, renderer, network service, GPU) from /proc, over the window, in % of one core and per call. Page thread: the share of the window the page's main thread (where the clients run) was busy (CDP \`Performance.getMetrics\` TaskDuration); from ${SATURATED_PCT} % on it counts as saturated, and the client, not the server, set the rate. TaskDuration is wall time: on a machine where other processes compete for the cores it includes time the thread waited for one, so it overstates the page's own work there. ${r.machine.pinned === 'no' ? '' : 'All of Chromium runs on one core here: a Chromium CPU near 100 % is that core saturated.'}`, '')
  out.push('| scenario | system | serializer | p50 ms | p99 ms | server CPU µs/op | Chromium CPU µs/op | Chromium CPU | page thread saturated |', '|---|---|---|---:|---:|---:|---:|---:|---|')
  const keys = [...new Set(s.rows.map(x => x.scenario))]
  for (const key of keys) {
    for (const system of BROWSER_SYSTEMS) {
      const x = row(key, system)
      if (x === undefined) continue
      const what = x.pattern === 'unary' ? `unary ${sizeLabel(x.size)}, ${x.inflight} in flight` : x.pattern === 'server-stream' ? 'server stream, 100 B' : `bidi, 100 B, ${x.inflight} in flight`
      out.push(`| ${what} | ${BROWSER_LABELS[system]} | ${SERIALIZER[system]} | ${fmt(x.p50Ms, 2)} | ${fmt(x.p99Ms, 2)} | ${fmt(x.serverUsPerOp)} | ${fmt(x.chromiumUsPerOp)} | ${fmt(x.chromiumCpuPct, 0)} % | ${saturated(x)} |`)
    }
  }
  out.push('')

  out.push('## Streams: messages/s on one stream (100 B messages)', '')
  out.push(`Server streaming: one call; the server writes as fast as flow control lets it and the page counts messages in the window, then cancels. Bidi: one call; the page keeps up to ${r.plan.streamInflight} messages in flight, each echoed. Neither HTTP client can send a second request message on a call, so they have no bidi row.`, '')
  out.push('| system | server stream msgs/s | bidi msgs/s |', '|---|---:|---:|')
  for (const system of BROWSER_SYSTEMS) out.push(`| ${BROWSER_LABELS[system]} | ${fmtInt(row('server-stream-100', system)?.rate)} | ${fmtInt(row(`bidi-100-p${r.plan.streamInflight}`, system)?.rate)} |`)
  out.push('')

  out.push('## Ratios of throughput (median of per-repetition ratios; per-repetition values in brackets)', '')
  out.push('| scenario | A | B | A/B |', '|---|---|---|---:|')
  for (const x of s.ratios) out.push(`| ${x.scenario} | ${BROWSER_LABELS[x.a]} | ${BROWSER_LABELS[x.b]} | ${x.median.toFixed(2)} [${x.perRep.map(v => v.toFixed(2)).join(', ')}] |`)
  out.push('')

  out.push('## Method and caveats', '')
  out.push('- One Chromium, one page, served by the benchmark\'s own Fastify app (in the orchestrator, `bench/browser.ts`) on 127.0.0.1; the page script (`bench/browser-page.ts`) is bundled by esbuild and runs the load loops of the Node bench (`bench/load.ts`): a fixed number of calls in flight, each completion issuing the next, bounded in time and count.')
  out.push('- Each server is its own Node process on 127.0.0.1 (`bench/servers/http-plugin.ts`: the plugin, its WebSocket and gRPC-Web routes; `http-connect.ts`: connect-fastify; `ws.ts`: the raw echo), started fresh for each repetition, HTTP/1.1, with CORS for the page\'s origin (preflights cached by the browser, so they fall in the warm-up). Each measurement opens its client anew (a new WebSocket; fetch reuses the browser\'s keep-alive connections).')
  out.push('- Systems alternate within each scenario, and the order rotates between scenarios and repetitions. The server CPU and the Chromium CPU are read when the page marks the window\'s start and end (the marks reach the orchestrator through `page.exposeFunction`, a millisecond or so late).')
  out.push(`- ${m.cores} cores only: Chromium and the server share the machine. Throughput is that of the pair; a page whose thread is saturated caps it. This machine is shared with other work: each window records the CPU other processes used (from /proc/stat, minus the server and Chromium), median ${median(r.measurements.map(x => x.foreignCpuPct)).toFixed(0)} %, max ${Math.max(0, ...r.measurements.map(x => x.foreignCpuPct)).toFixed(0)} % of one core (\`foreignCpuPct\` in bench-browser.json). Compare systems by the ratios, taken within a repetition.`)
  out.push('- connect-fastify prints `handler for rpc ServerStream … failed … write EPIPE` to stderr each time the page cancels connect-web\'s server stream at the end of a window: the handler\'s next write finds the connection gone. Expected, not a failed call.')
  out.push('- Not measured: TLS, HTTP/2 to the browser (it needs TLS), other browsers, non-loopback networks.')
  out.push('')
  return out.join('\n')
}

function svg (r: BrowserResults, s: BrowserSummary): string {
  const W = 960
  const H = 470
  const parts = svgOpen(W, H, 'fastify-grpc-ws\'s browser client next to connect-web and a raw WebSocket, from one Chromium page', `${r.chromium}; ${r.machine.cores} × ${r.machine.cpuModel}; ${r.plan.reps} repetition(s), medians; ${r.date.slice(0, 10)}`)
  const series: PageSystem[] = ['web', 'http', 'connect-web']
  const groups = [
    ...r.plan.unaryInflight.map(c => ({ key: `unary-100-c${c}`, label: `unary 100 B, ${c} in flight` })),
    { key: 'unary-65536-c64', label: 'unary 64 KiB, 64 in flight' },
    { key: 'server-stream-100', label: 'server stream' },
    { key: `bidi-100-p${r.plan.streamInflight}`, label: 'bidi, pipelined' }
  ]
  const values = groups.map(g => series.map(sys => s.ratios.find(x => x.scenario === g.key && x.a === sys && x.b === 'ws')?.median ?? null))
  // Some clients outrun the floor many times over (streams): at most about 8 grid lines whatever the top.
  const maxV = Math.max(1.0, ...values.flat().filter((v): v is number => v !== null))
  const step = [0.25, 0.5, 1, 2, 5, 10, 20, 50].find(x => maxV / x <= 8) ?? 100
  parts.push(...svgBars({
    box: { x: 60, y: 80, w: 560, h: 300 },
    title: 'Throughput, % of the raw WebSocket echo (same repetition)',
    groups: groups.map((g, gi) => ({ label: g.label, values: values[gi]! })),
    series: series.map(sys => ({ label: BROWSER_LABELS[sys], color: COLORS[sys] })),
    top: Math.ceil(maxV / step) * step,
    step,
    tick: t => `${Math.round(t * 100)} %`,
    value: v => (v * 100).toFixed(0),
    hint: (label, v) => `${label}: ${(v * 100).toFixed(0)} %`,
    reference: { value: 1, text: 'raw WebSocket echo = 100 %' }
  }))
  const short: Record<PageSystem, string[]> = { web: ['fastify-grpc-ws', 'WebSocket'], http: ['fastify-grpc-ws', 'gRPC-Web, fetch'], 'connect-web': ['connect-web', 'fetch'], ws: ['raw WebSocket', '(per message)'] }
  parts.push(...svgRows({
    box: { x: 740, y: 80, w: 200, h: 300 },
    title: 'calls/s, unary 100 B, 64 in flight',
    rows: (['ws', 'web', 'http', 'connect-web'] as PageSystem[]).map(sys => ({ lines: short[sys], color: COLORS[sys], value: s.rows.find(x => x.scenario === 'unary-100-c64' && x.system === sys)?.rate ?? null })),
    value: v => fmtInt(v)
  }))
  parts.push(...svgLegend(series.map(sys => ({ label: BROWSER_LABELS[sys], color: COLORS[sys] })), H - 36, 300))
  parts.push(`<text x="20" y="${H - 8}" fill="#555" font-size="11">${esc('Over HTTP/1.1 a page has at most 6 connections per origin: the fetch clients carry at most 6 calls at once. Higher is better.')}</text>`)
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}

export function writeBrowserReports (dir: string, r: BrowserResults, s: BrowserSummary): void {
  writeFileSync(join(dir, 'bench-browser.json'), JSON.stringify({ ...r, summary: s }, null, 2) + '\n')
  writeFileSync(join(dir, 'bench-browser.md'), markdown(r, s))
  writeFileSync(join(dir, 'bench-browser.svg'), svg(r, s))
}
