/**
 * `npm run bench:attacks [-- <id>…] [--ms N] [--attacker-nice N] [--cpu-prof DIR]`: every attack class of
 * test/helpers/attacks.ts against the plugin in a server process of its own,
 * with a canary (a stock grpc-js client, over the WebSocket and over HTTP/2 to
 * the same process) calling beside it. Prints a Markdown table: the canary's
 * p50/p99 before and during each attack, what the server held after two full
 * collections under the attack, the attack's load, and how the attack ended.
 *
 * Three processes: the server, this one (the canary), and the attacker (this
 * file again with `--attacker <id>`), so that neither client's CPU is charged
 * to the other. A client process that used ≥ 90 % of a core is marked: its
 * own figures are then limited by that core, not by the server.
 *
 * The attacker runs at OS priority nice 19 (`--attacker-nice N` to change,
 * 0 for the same priority as the others): a real attacker's CPU is its own
 * machine's, but here three processes share two cores, and an attacker at
 * equal priority takes CPU from the server and the canary alike, which is a
 * cost of the bench, not of the server. At nice 19 it runs on what the
 * server and the canary leave; the server's own CPU is measured as before.
 *
 * `--cpu-prof DIR`: the server process runs under `node --cpu-prof` and
 * writes its profile into DIR when it exits (one file per server process;
 * run one class to see where that class's time goes).
 */
import { fork, type ChildProcess } from 'node:child_process'
import { setPriority } from 'node:os'
import { fileURLToPath } from 'node:url'
import {
  ATTACK_SERVER_OPTIONS, Canary, attackClasses, boundFor, failures, percentile, type AttackStats, type CanaryResult
} from '../test/helpers/attacks.js'
import { ServerProcess, held, type MemorySample } from '../test/helpers/server-process.js'

const SELF = fileURLToPath(import.meta.url)
const args = process.argv.slice(2)
const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

function option (name: string): string | undefined {
  const at = args.indexOf(name)
  return at === -1 ? undefined : args[at + 1]
}

// --- the orchestrator ---------------------------------------------------------------

interface Row {
  id: string
  finding: string
  name: string
  before: { ws: [number, number], h2: [number, number] }
  during: { ws: [number, number], h2: [number, number], calls: number, failed: number, failures: string[] }
  heldMb: number | null
  boundMb: number | null
  serverCpu: number
  handlerStarts: number
  stats: AttackStats | null
  canaryCpu: number
  serverDied: boolean
}

const mb = (bytes: number): number => bytes / (1024 * 1024)
const pcts = (r: CanaryResult, t: 'websocket' | 'http2'): [number, number] => [percentile(r[t], 50), percentile(r[t], 99)]
const cpuMs = (s: MemorySample): number => (s.cpuUser + s.cpuSystem) / 1000

/** Calls on through the whole run; paused while the server is seen to be quiet. */
const PERSISTENT = { maxMs: 3_600_000, maxCalls: Number.MAX_SAFE_INTEGER }

/** The attacker's OS priority (nice value; see the file's comment). */
const ATTACKER_NICE = Number(option('--attacker-nice') ?? 19)

function spawnAttacker (id: string, server: ServerProcess, ms: number): { child: ChildProcess, next: (type: string) => Promise<any> } {
  const child = fork(SELF, ['--attacker', id, '--origin', server.origin, '--ws', server.wsUrl, '--ms', String(ms)], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  // Before it loads anything: it is 'ready' only after its modules are loaded.
  setPriority(child.pid!, ATTACKER_NICE)
  const queue: any[] = []
  const waiters: Array<(m: any) => void> = []
  child.on('message', m => { const w = waiters.shift(); w === undefined ? queue.push(m) : w(m) })
  const next = async (type: string): Promise<any> => {
    const m = queue.shift() ?? await Promise.race([
      new Promise(resolve => waiters.push(resolve)),
      sleep(60_000).then(() => { throw new Error(`attacker ${id}: no '${type}' within 60 s`) })
    ])
    if ((m as { type: string }).type !== type) throw new Error(`attacker ${id}: expected '${type}', got '${(m as { type: string }).type}'`)
    return m
  }
  return { child, next }
}

async function orchestrate (): Promise<void> {
  const ms = Number(option('--ms') ?? 3000)
  const ids = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'))
  const classes = ids.length === 0 ? attackClasses : attackClasses.filter(c => ids.includes(c.id))
  const profileDir = option('--cpu-prof')
  const nodeFlags = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
  const startServer = async (): Promise<ServerProcess> => await ServerProcess.start(ATTACK_SERVER_OPTIONS, 30000, nodeFlags)
  let server = await startServer()
  // One canary for the run: its connections and the code its calls run are
  // warm and in every baseline, so that what an attack is charged is the
  // attack's (fresh connections and first calls cost the server ~1.5 MB).
  let canary = new Canary(server, PERSISTENT)
  await sleep(2000)
  await canary.pause()
  let firstBaseline = await server.baseline()
  const rows: Row[] = []
  for (const cls of classes) {
    process.stderr.write(`${cls.id}…\n`)
    // The previous attack's work and memory must be gone before the baseline.
    await canary.pause()
    if (!(await server.quiet({ reference: firstBaseline }))) process.stderr.write('  the server did not become quiet within 15 s\n')
    canary.resume()
    // Paused, idle code ages out under the samples' forced collections: a second of calls compiles it again.
    await sleep(1000)
    const base = await server.baseline()
    canary.take()
    await sleep(1000)
    const before = canary.take()
    const { child, next } = spawnAttacker(cls.id, server, ms)
    await next('ready')
    const atGo = await server.measure(20000, false)
    const cpuBefore = cpuMs(atGo)
    const started = performance.now()
    const goAt = process.hrtime.bigint() / 1000n
    child.send({ type: 'go' })
    // A class about connection slots needs a canary that connects while the attacker holds them.
    let late: Canary | undefined
    await next('loaded')
    if (cls.canaryAfterLoad === true) late = new Canary(server)
    const stats = (await next('finished')).stats as AttackStats
    // The attack's time on the monotonic clock the profile's timestamps use (µs).
    if (profileDir !== undefined) process.stderr.write(`  attack from ${goAt} to ${process.hrtime.bigint() / 1000n} µs (monotonic)\n`)
    let sample: MemorySample | null = null
    try { sample = await server.measure() } catch {}
    // CPU from the start of the attack to the sample (the server may still be working through what it was sent).
    const attackMs = performance.now() - started
    if (late === undefined) await canary.calling(3)
    const during = late !== undefined ? await late.stop() : canary.take()
    child.send({ type: 'release' })
    await next('released').catch(() => {})
    const serverDied = server.exitCode !== null
    rows.push({
      id: cls.id,
      finding: cls.finding,
      name: stats.name,
      before: { ws: pcts(before, 'websocket'), h2: pcts(before, 'http2') },
      during: {
        ws: pcts(during, 'websocket'),
        h2: pcts(during, 'http2'),
        calls: during.websocket.length + during.http2.length,
        failed: [...during.websocket, ...during.http2].filter(c => c.code !== 0).length,
        failures: failures(during, 2)
      },
      heldMb: sample === null ? null : mb(held(sample) - held(base)),
      boundMb: boundFor(cls.id) === null ? null : mb(boundFor(cls.id)!),
      serverCpu: sample === null ? NaN : (cpuMs(sample) - cpuBefore) / attackMs,
      handlerStarts: sample === null ? NaN : sample.handlerStarts - atGo.handlerStarts,
      stats,
      canaryCpu: (during.cpuUserMs + during.cpuSystemMs) / during.wallMs,
      serverDied
    })
    if (serverDied) {
      process.stderr.write('  the server process died; starting a new one\n')
      await canary.stop()
      server = await startServer()
      canary = new Canary(server, PERSISTENT)
      await sleep(2000)
      await canary.pause()
      firstBaseline = await server.baseline()
    } else {
      await sleep(200)
    }
  }
  await canary.stop()
  await server.close()
  process.stdout.write(table(rows, ms) + '\n')
}

const f1 = (n: number): string => Number.isNaN(n) ? '–' : n < 10 ? n.toFixed(1) : n.toFixed(0)
const lat = ([p50, p99]: [number, number]): string => `${f1(p50)} / ${f1(p99)}`

function ending (s: AttackStats): string {
  const parts: string[] = []
  const codes = [...new Set(s.closeCodes)]
  parts.push(codes.length === 0 ? 'never closed' : `closed ${codes.join(', ')}${s.closeCodes.length > 1 ? ` (${s.closeCodes.length} sockets)` : ''}`)
  if (s.goaways > 0) parts.push(`${s.goaways} GOAWAY`)
  if (s.refused.length > 0) parts.push(`HTTP ${[...new Set(s.refused)].join('/')} ×${s.refused.length}`)
  const trailers = Object.entries(s.trailers).map(([code, n]) => `${n}× status ${code}`)
  if (trailers.length > 0) parts.push(`trailers ${trailers.join(', ')}`)
  return [...parts, ...s.notes].join('; ')
}

function table (rows: Row[], ms: number): string {
  const out: string[] = []
  out.push(`Server options: \`${JSON.stringify(ATTACK_SERVER_OPTIONS)}\`; each attack up to ${ms} ms; attacker process at nice ${ATTACKER_NICE}. Latencies in ms (p50 / p99 of the canary's unary calls, one at a time per transport); held = server heap used + external after two full collections, under the attack, minus the baseline before it.`, '')
  out.push('| # | Attack | Load sent | Server held, MB (bound) | Server CPU (of one core) | Canary WS before → during | Canary HTTP/2 before → during | Canary calls failed | How it ended |')
  out.push('|---|---|---|---|---|---|---|---|---|')
  for (const r of rows) {
    const s = r.stats!
    const attackerCpu = (s.cpuUserMs + s.cpuSystemMs) / Math.max(1, s.ms)
    const load = `${s.frames.toLocaleString('en')} frames, ${f1(s.bytes / 1e6)} MB in ${(s.ms / 1000).toFixed(1)} s, ${s.connections} socket${s.connections === 1 ? '' : 's'}; attacker CPU ${Math.round(attackerCpu * 100)} %${attackerCpu >= 0.9 ? ' (saturated its core)' : ''}`
    const heldText = r.heldMb === null ? '–' : `${f1(r.heldMb)}${r.boundMb === null ? '' : ` (${f1(r.boundMb)})`}`
    const failed = `${r.during.failed} of ${r.during.calls}${r.during.failures.length > 0 ? `: ${r.during.failures.join('; ')}` : ''}${r.canaryCpu >= 0.9 ? ' (canary process saturated its core)' : ''}`
    out.push(`| ${r.finding} | ${r.name} | ${load} | ${heldText}${r.serverDied ? ' — server process died' : ''} | ${Number.isNaN(r.serverCpu) ? '–' : `${Math.round(r.serverCpu * 100)} %`}${r.handlerStarts > 0 ? `, ${r.handlerStarts.toLocaleString('en')} handlers started` : ''} | ${lat(r.before.ws)} → ${lat(r.during.ws)} | ${lat(r.before.h2)} → ${lat(r.during.h2)} | ${failed} | ${ending(s)} |`)
  }
  return out.join('\n')
}

// --- the attacker process -----------------------------------------------------------

async function attacker (): Promise<void> {
  const cls = attackClasses.find(c => c.id === option('--attacker'))!
  const send = (message: unknown): void => { process.send?.(message) }
  process.on('disconnect', () => { process.exit(0) })
  process.once('message', () => {
    const run = cls.run({ origin: option('--origin')!, wsUrl: option('--ws')! }, { ms: Number(option('--ms')) })
    void run.loaded.then(() => { send({ type: 'loaded' }) })
    void run.finished.then(stats => {
      send({ type: 'finished', stats })
      process.once('message', () => {
        void run.release().then(() => { send({ type: 'released' }); setTimeout(() => { process.exit(0) }, 50) })
      })
    })
  })
  send({ type: 'ready' })
}

if (option('--attacker') !== undefined) await attacker()
else await orchestrate()
