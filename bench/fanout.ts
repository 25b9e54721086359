/**
 * Fan-out benchmark: one ~100-byte message published to N subscribers, as
 * a section of `npm run bench` (and of `bench:quick`, as a smoke), and
 * standalone as `npm run bench:fanout`.
 *
 * Systems (processes in bench/fanout-procs.ts), over the same sockets ×
 * streams and bytes:
 * - `topics`: the plugin, each subscriber a server-streaming call
 *   subscribed with app.grpc.topics (serialized once per publish);
 * - `per-call`: the plugin, the handler writing the message object to each
 *   call (serialized once per subscriber);
 * - `ws`: a raw `ws` broadcast loop (single instance only: a bare `ws`
 *   server has no way to reach another instance's sockets);
 * - `tcp`: one write of the same bytes to each bare TCP socket, no WebSocket
 *   and no framing: what the machine allows any server, the floor under
 *   every latency (a p99 target below its p99 cannot be met here);
 * - `socketio`: Socket.IO 4, WebSocket transport, `io.to(room).emit`;
 * - `topics-redis`, `socketio-redis`: two server processes on one
 *   redis-server (Debian's, started here on a random loopback port, nothing
 *   persisted), subscribers split over both, the publisher on the first:
 *   redisBus and @socket.io/redis-adapter.
 *
 * Each cell (a size and a system) connects its subscribers from several
 * client processes, publishes a few messages it does not count (the JIT's
 * warm-up), then steps the publish interval down (a bounded list,
 * within a time budget, at least 5 publishes a step) until a message is
 * lost, doubled or not delivered within 3 s. The cell's "highest rate" is
 * the highest-rate step whose p99 from publish to receipt is under the
 * target, whatever the slower steps gave (their few publishes make a noisy
 * p99); "delivered in full" is the fastest step that lost nothing. A step's
 * deliveries/s run from its first publish to its last receipt (the
 * publisher's and the clients' clocks are one on this machine), so a server
 * that queues internally is not credited with the time it takes to drain;
 * its publishes/s are what the publisher achieved. Every subscriber checks
 * the sequence numbers: lost and duplicated counts are per step and over
 * the whole cell.
 *
 * The slow-subscriber cell: topics, one size, a fixed rate, 4 pairs of
 * rounds without and with one subscriber that never reads, in ABBA order
 * (without, with, with, without, …). The verdict compares the others' p99
 * over all "with" rounds pooled against all "without" rounds pooled; the
 * per-pair ratios are reported beside it.
 *
 * FANOUT_PROF=DIR: the server processes (FANOUT_PROF_ROLE=client: the
 * client processes) run with --cpu-prof into DIR.
 *
 * Standalone options: --sizes 1000x10,10000x1 --systems topics,ws,tcp,socketio,topics-redis,socketio-redis
 * --clients 4 --intervals 1000,500,200,100,50,20 --window 2000 --no-slow --quick --out DIR
 */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { RedisServer } from '../test/redis/redis-server.js'
import type { CheckResult, ClientCommand, Histogram, ServerCommand, WindowResult } from './fanout-procs.js'
import { BUILD_DIR, buildBundles } from './procs.js'

export const FANOUT_SYSTEMS = ['topics', 'per-call', 'ws', 'tcp', 'socketio', 'topics-redis', 'socketio-redis'] as const
export type FanoutSystem = (typeof FANOUT_SYSTEMS)[number]
const PLUGIN_SYSTEMS: readonly FanoutSystem[] = ['topics', 'per-call', 'topics-redis']

export interface FanoutPlan {
  name: string
  sizes: Array<{ sockets: number, streams: number }>
  systems: FanoutSystem[]
  /** Client processes per cell (the sockets split over them). */
  clients: number
  /** Publish intervals tried, slowest first; the search stops at the first that fails. */
  intervalsMs: number[]
  /** false: only the first interval (a smoke). */
  search: boolean
  /**
   * Before a cell's first step: publishes at an interval every system
   * sustains, waited out and not counted, so the steps measure code the JIT
   * has compiled (a cell's first rounds took twice as long as its later ones).
   */
  warmup: { intervalMs: number, publishes: number }
  /** The slow-subscriber cell's warm-up at its own rate, after the cell's warm-up and before its first round. */
  warmupMs: number
  windowMs: number
  p99TargetMs: number
  /** The slow-subscriber cell, or null; `rounds` pairs of rounds (one without, one with a never-reader). */
  slow: { rounds: number, windowMs: number } | null
  /** The whole section stops starting new steps past this. */
  budgetMs: number
}

export const FANOUT_FULL: FanoutPlan = {
  name: 'default',
  sizes: [{ sockets: 1000, streams: 10 }, { sockets: 10_000, streams: 1 }],
  systems: ['topics', 'ws', 'tcp', 'socketio', 'topics-redis', 'socketio-redis'],
  clients: 4,
  intervalsMs: [1000, 500, 200, 100, 50, 20],
  search: true,
  warmup: { intervalMs: 200, publishes: 15 },
  warmupMs: 500,
  windowMs: 2000,
  p99TargetMs: 50,
  slow: { rounds: 4, windowMs: 2000 },
  budgetMs: 540_000
}

export const FANOUT_QUICK: FanoutPlan = {
  name: 'quick',
  sizes: [{ sockets: 100, streams: 2 }],
  systems: ['topics', 'topics-redis'],
  clients: 2,
  intervalsMs: [50],
  search: false,
  warmup: { intervalMs: 50, publishes: 2 },
  warmupMs: 100,
  windowMs: 500,
  p99TargetMs: 50,
  slow: null,
  budgetMs: 20_000
}

export interface FanoutStep {
  intervalMs: number
  /** Achieved: below 1000 / intervalMs when the publisher could not keep its pace. */
  publishesPerS: number
  published: number
  expected: number
  received: number
  /** From the first publish to the last receipt of the step's messages, plus one interval (step() says why). */
  spanMs: number
  /** received over spanMs. */
  deliveriesPerS: number
  lost: number
  duplicated: number
  p50Ms: number
  p99Ms: number
  maxMs: number
  /** CPU of every server process (Node instances and redis-server), µs per delivery. */
  serverUsPerDelivery: number
  /** redis-server's part of it. */
  redisUsPerDelivery: number | null
  /** Each server process, % of one core over the step's wall time (CPU sampled before the first publish and after the last receipt). */
  serverCpuPct: number[]
  redisCpuPct: number | null
  /** Each client process, % of one core over the step. */
  clientCpuPct: number[]
  /** A client process used ≥ 90 % of a core: the latency is partly the client's. */
  clientSaturated: boolean
  /** Every message of the step arrived (within 3 s of the last publish), none lost or doubled. */
  sustained: boolean
  /** Sustained, and p99 under the target. */
  pass: boolean
  why: string
}

export interface FanoutCell {
  system: FanoutSystem
  instances: number
  sockets: number
  streams: number
  subscribers: number
  clients: number
  connectMs: number
  steps: FanoutStep[]
  /** The highest-rate step that held (p99 under target, nothing lost), whatever the slower steps gave, or null. */
  best: FanoutStep | null
  /** The fastest step delivered in full (whatever its p99), or null. */
  fastest: FanoutStep | null
  /** Over the whole cell, warm-up included, once the last message was due. */
  lost: number
  duplicated: number
  serverRssMiB: number[]
  error: string | null
}

export interface SlowRound { withNeverReader: boolean, p50Ms: number, p99Ms: number, received: number, expected: number, lost: number, clientSaturated: boolean }

export interface FanoutSlow {
  sockets: number
  streams: number
  publishesPerS: number
  rounds: SlowRound[]
  /** p99 with / p99 without, per adjacent pair of rounds (for transparency: the verdict is on the pooled figures). */
  ratios: number[]
  /** p99 of the latencies of every round with the never-reader merged, and of every round without. */
  pooledWithP99Ms: number
  pooledWithoutP99Ms: number
  /** pooledWithP99Ms / pooledWithoutP99Ms: the verdict's figure. */
  pooledRatio: number
  /** Topic counts at the end: what the never-reader's bound dropped. */
  dropped: number
  ended: number
  lost: number
  duplicated: number
}

export interface FanoutResults {
  date: string
  plan: FanoutPlan
  cores: number
  loadAvgStart: number
  loadAvgEnd: number
  versions: Record<string, string>
  redis: string | null
  cells: FanoutCell[]
  slow: FanoutSlow | null
  notes: string[]
  durationS: number
}

// --- processes --------------------------------------------------------------------

// The esbuild bundle (buildBundles in procs.ts): plain node starts in a fraction of tsx's time.
const PROCS = join(BUILD_DIR, 'fanout-procs.mjs')
const PROTO = fileURLToPath(new URL('../test/fixtures/test.proto', import.meta.url))
const live = new Set<ChildProcess>()

function child (args: string[]): ChildProcess {
  const c = fork(PROCS, args, { execArgv: process.env.FANOUT_PROF !== undefined && args.includes(process.env.FANOUT_PROF_ROLE ?? 'server') ? ['--cpu-prof', '--cpu-prof-dir', process.env.FANOUT_PROF] : [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, FANOUT_PROTO: PROTO } })
  live.add(c)
  c.once('exit', () => { live.delete(c) })
  c.on('error', () => {}) // a send to a process that died: its awaited reply fails instead (reply())
  return c
}

/** Kills every process this section started (on a fatal error or a hard stop). */
export function killFanout (): void {
  for (const c of live) c.kill('SIGKILL')
  live.clear()
}

async function reply<T> (c: ChildProcess, type: string, timeoutMs = 60_000): Promise<T> {
  let onMessage!: (m: { type: string }) => void
  let onExit!: () => void
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await new Promise<T>((resolve, reject) => {
      onMessage = m => { if (m.type === type) resolve(m as T) }
      onExit = () => { reject(new Error(`a fan-out process exited while waiting for ${type}`)) }
      timer = setTimeout(() => { reject(new Error(`no ${type} from a fan-out process in ${timeoutMs} ms`)) }, timeoutMs)
      c.on('message', onMessage)
      c.once('exit', onExit)
    })
  } finally {
    clearTimeout(timer)
    c.off('message', onMessage)
    c.off('exit', onExit)
  }
}

async function ask<T> (c: ChildProcess, command: ServerCommand | ClientCommand, type: string, timeoutMs?: number): Promise<T> {
  if (!c.connected) throw new Error(`a fan-out process is gone (asked for ${type})`)
  const answer = reply<T>(c, type, timeoutMs)
  c.send(command)
  return await answer
}

async function stopAll (procs: ChildProcess[]): Promise<void> {
  await Promise.all(procs.map(async c => {
    if (c.exitCode !== null || c.signalCode !== null) return
    const exited = once(c, 'exit')
    if (c.connected) c.send({ cmd: 'exit' })
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }))
}

const CLK_TCK = 100
/** A process's CPU (user + system), µs, from /proc (redis-server is not ours to ask). */
function procCpuUs (pid: number | undefined): number {
  if (pid === undefined) return NaN
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1e6 / CLK_TCK
  } catch {
    return NaN
  }
}

// --- statistics -----------------------------------------------------------------------

function merge (hists: Histogram[]): Map<number, number> {
  const m = new Map<number, number>()
  for (const h of hists) for (const [b, c] of h) m.set(b, (m.get(b) ?? 0) + c)
  return m
}

function quantile (m: Map<number, number>, q: number): number {
  const total = [...m.values()].reduce((a, b) => a + b, 0)
  if (total === 0) return NaN
  const rank = Math.max(1, Math.ceil(q * total))
  let seen = 0
  for (const b of [...m.keys()].sort((a, b) => a - b)) {
    seen += m.get(b)!
    if (seen >= rank) return (b + 1) / 10 // the bucket's upper edge, ms
  }
  return NaN
}

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

// --- one cell --------------------------------------------------------------------------

interface Session {
  servers: ChildProcess[]
  serverPids: number[]
  ports: number[]
  clients: ChildProcess[]
  subscribers: number
  connectMs: number
  /** The publisher's last sequence number (-1 before the first). */
  lastSeq: number
}

async function startSession (system: FanoutSystem, sockets: number, streams: number, clients: number, redis: RedisServer | null): Promise<Session> {
  const remote = system.endsWith('-redis')
  const base = system.replace('-redis', '')
  const instances = remote ? 2 : 1
  const servers = Array.from({ length: instances }, () => child(['--role', 'server', '--system', base, '--streams', String(streams), ...(remote ? ['--redis', redis!.url] : [])]))
  const session: Session = { servers, serverPids: [], ports: [], clients: [], subscribers: sockets * streams, connectMs: 0, lastSeq: -1 }
  try {
    // Clients start beside the servers (they learn the ports when they open their sockets).
    const per = Math.ceil(sockets / clients)
    for (let k = 0; k < clients; k++) {
      const count = Math.min(per, sockets - k * per)
      if (count <= 0) break
      session.clients.push(child(['--role', 'client', '--system', base, '--first', String(k * per), '--sockets', String(count), '--streams', String(streams)]))
    }
    const ready = await Promise.all(servers.map(async s => await reply<{ port: number, pid: number }>(s, 'ready')))
    session.serverPids = ready.map(r => r.pid)
    session.ports = ready.map(r => r.port)
    await Promise.all(session.clients.map(async c => await reply(c, 'ready')))
    const t0 = performance.now()
    const opened = await Promise.all(session.clients.map(async c => await ask<{ error?: string }>(c, { cmd: 'open', ports: session.ports }, 'opened', 180_000)))
    const failed = opened.find(o => o.error !== undefined)
    if (failed !== undefined) throw new Error(`subscribers did not connect: ${failed.error!}`)
    session.connectMs = performance.now() - t0
    if (system === 'socketio-redis') {
      // Every instance's namespaces (and the main one) subscribed in Redis, or the first messages miss some.
      const patterns = instances * (streams + 1)
      const { count } = await ask<{ count: number }>(servers[0]!, { cmd: 'subscribers', atLeast: patterns, timeoutMs: 10_000 }, 'subscribers', 15_000)
      if (!(count >= patterns)) throw new Error(`the Socket.IO adapters subscribed ${count} patterns in Redis, not ${patterns}`)
    }
    return session
  } catch (err) {
    await stopAll([...session.clients, ...servers])
    throw err
  }
}

async function cpuOf (session: Session, redisPid: number | undefined): Promise<{ servers: number[], redis: number }> {
  const servers = await Promise.all(session.servers.map(async s => (await ask<{ cpuUs: number }>(s, { cmd: 'cpu' }, 'cpu')).cpuUs))
  return { servers, redis: procCpuUs(redisPid) }
}

/** Publishes per step: the window's worth, and at least 5 (with 2, a slow step's p99 is one message's latency). */
const publishes = (windowMs: number, intervalMs: number): number => Math.max(5, Math.round(windowMs / intervalMs))

/** Publishes `count` messages every `intervalMs` and measures their delivery; `hist` is the step's latencies merged. */
async function step (session: Session, clients: ChildProcess[], intervalMs: number, count: number, redisPid: number | undefined, p99TargetMs: number): Promise<{ step: FanoutStep, hist: Map<number, number> }> {
  const publisher = session.servers[0]!
  // The step's sequence numbers: the publisher counts on from where the last step ended.
  const fromSeq = session.lastSeq + 1
  const toSeq = fromSeq + count - 1
  await Promise.all(clients.map(async c => await ask(c, { cmd: 'window', fromSeq, toSeq }, 'window')))
  const cpu0 = await cpuOf(session, redisPid)
  const t0 = performance.now()
  const published = await ask<{ fromSeq: number, toSeq: number, ms: number, firstAt: number }>(publisher, { cmd: 'publish', count, intervalMs }, 'published', count * intervalMs + 30_000)
  if (published.fromSeq !== fromSeq) throw new Error(`publisher at ${published.fromSeq}, expected ${fromSeq}`)
  session.lastSeq = published.toSeq
  // The last deliveries arrive: wait until every subscriber has the step's messages, at most 3 s.
  const until = performance.now() + 3000
  for (;;) {
    const progress = await Promise.all(clients.map(async c => await ask<{ received: number, expected: number }>(c, { cmd: 'progress' }, 'progress')))
    if (progress.every(p => p.received >= p.expected) || performance.now() > until) break
    await sleep(50)
  }
  const cpu1 = await cpuOf(session, redisPid)
  const wallMs = performance.now() - t0
  const results = await Promise.all(clients.map(async c => (await ask<{ result: WindowResult }>(c, { cmd: 'result' }, 'result')).result))
  const hist = merge(results.map(r => r.hist))
  const received = results.reduce((n, r) => n + r.received, 0)
  const expected = results.reduce((n, r) => n + r.expected, 0)
  const lost = results.reduce((n, r) => n + r.lost, 0) + Math.max(0, expected - received - results.reduce((n, r) => n + r.lost, 0))
  const duplicated = results.reduce((n, r) => n + r.duplicated, 0)
  const serverUs = cpu1.servers.map((c, i) => c - cpu0.servers[i]!)
  const redisUs = Number.isFinite(cpu1.redis - cpu0.redis) ? cpu1.redis - cpu0.redis : null
  const totalUs = serverUs.reduce((a, b) => a + b, 0) + (redisUs ?? 0)
  const clientCpuPct = results.map(r => Math.round(r.cpuMs / r.wallMs * 100))
  const p50 = quantile(hist, 0.5)
  const p99 = quantile(hist, 0.99)
  const sustained = lost === 0 && duplicated === 0 && received === expected
  const pass = sustained && p99 < p99TargetMs
  // Both spans add one interval: n publishes at a pace cover n intervals, so a publisher on pace gets 1000 / intervalMs,
  // and deliveries/s stay ≤ subscribers × publishes/s (without it, 5 publishes at 1/s over 4 s would be 1.25/s).
  // publishes/s: the rate the publisher achieved (one slower than its interval publishes less often).
  const publishS = (Math.max(published.ms, intervalMs * (count - 1)) + intervalMs) / 1000
  // deliveries/s: from the first publish to the last receipt, so a server's internal queue is not credited.
  const lastAt = Math.max(...results.map(r => r.lastAt))
  const spanMs = received === 0 ? NaN : lastAt - published.firstAt + intervalMs
  const s: FanoutStep = {
    intervalMs,
    publishesPerS: +(count / publishS).toFixed(2),
    published: count,
    expected,
    received,
    spanMs: Math.round(spanMs),
    deliveriesPerS: received === 0 ? 0 : Math.round(received / (spanMs / 1000)),
    lost,
    duplicated,
    p50Ms: p50,
    p99Ms: p99,
    maxMs: quantile(hist, 1),
    serverUsPerDelivery: +(totalUs / Math.max(1, received)).toFixed(2),
    redisUsPerDelivery: redisUs === null ? null : +(redisUs / Math.max(1, received)).toFixed(2),
    serverCpuPct: serverUs.map(us => Math.round(us / 10 / wallMs)),
    redisCpuPct: redisUs === null ? null : Math.round(redisUs / 10 / wallMs),
    clientCpuPct,
    clientSaturated: clientCpuPct.some(p => p >= 90),
    sustained,
    pass,
    why: pass ? '' : lost > 0 || duplicated > 0 ? `${lost} lost, ${duplicated} duplicated` : !sustained ? `${expected - received} not delivered 3 s after the last publish` : `p99 ${p99.toFixed(1)} ms ≥ ${p99TargetMs} ms`
  }
  return { step: s, hist }
}

/** The cell's warm-up: a step whose figures are dropped (it waits until every subscriber has its messages, as a step does). */
async function warmCell (session: Session, plan: FanoutPlan): Promise<void> {
  await step(session, session.clients, plan.warmup.intervalMs, plan.warmup.publishes, undefined, plan.p99TargetMs)
}

async function warmUp (session: Session, intervalMs: number, ms: number): Promise<void> {
  const count = Math.max(1, Math.round(ms / intervalMs))
  const r = await ask<{ toSeq: number }>(session.servers[0]!, { cmd: 'publish', count, intervalMs }, 'published', ms + 30_000)
  session.lastSeq = r.toSeq
  await sleep(200)
}

async function finalCheck (session: Session, clients = session.clients): Promise<{ lost: number, duplicated: number }> {
  const lastSeq = session.lastSeq
  // Let the last messages land (a backlog after a failed step takes a moment).
  const until = performance.now() + 5000
  let checks: CheckResult[] = []
  for (;;) {
    checks = await Promise.all(clients.map(async c => (await ask<{ check: CheckResult }>(c, { cmd: 'check', lastSeq }, 'check')).check))
    if (checks.every(c => c.lost === 0) || performance.now() > until) break
    await sleep(100)
  }
  return { lost: checks.reduce((n, c) => n + c.lost, 0), duplicated: checks.reduce((n, c) => n + c.duplicated, 0) }
}

async function runCell (system: FanoutSystem, size: { sockets: number, streams: number }, plan: FanoutPlan, redis: RedisServer | null, deadline: number, log: (line: string) => void): Promise<FanoutCell> {
  const cell: FanoutCell = {
    system, instances: system.endsWith('-redis') ? 2 : 1, sockets: size.sockets, streams: size.streams, subscribers: size.sockets * size.streams,
    clients: Math.min(plan.clients, size.sockets), connectMs: 0, steps: [], best: null, fastest: null, lost: 0, duplicated: 0, serverRssMiB: [], error: null
  }
  let session: Session | null = null
  try {
    session = await startSession(system, size.sockets, size.streams, plan.clients, redis)
    cell.connectMs = Math.round(session.connectMs)
    log(`fan-out ${system} ${size.sockets}×${size.streams}: ${cell.subscribers.toLocaleString('en-US')} subscribers connected in ${(cell.connectMs / 1000).toFixed(1)} s over ${session.clients.length} client processes`)
    await warmCell(session, plan)
    const intervals = plan.search ? plan.intervalsMs : plan.intervalsMs.slice(0, 1)
    for (const intervalMs of intervals) {
      if (performance.now() > deadline) { log('  fan-out time budget reached: no further step'); break }
      const { step: s } = await step(session, session.clients, intervalMs, publishes(plan.windowMs, intervalMs), cell.instances > 1 ? redis?.pid : undefined, plan.p99TargetMs)
      cell.steps.push(s)
      log(`  every ${intervalMs} ms: ${s.publishesPerS} publishes/s, ${s.deliveriesPerS.toLocaleString('en-US')} deliveries/s over ${(s.spanMs / 1000).toFixed(2)} s, p50 ${s.p50Ms.toFixed(1)} p99 ${s.p99Ms.toFixed(1)} ms, server ${s.serverUsPerDelivery} µs/delivery (${s.serverCpuPct.join('+')} %${s.redisCpuPct === null ? '' : ` + redis ${s.redisCpuPct} %`}), clients ${s.clientCpuPct.join('/')} %${s.clientSaturated ? ' (a client saturated its core)' : ''}${s.pass ? '' : s.sustained ? ` (${s.why})` : `: stop (${s.why})`}`)
      // Past the p99 target the search goes on while every message still arrives: the highest rate delivered in full.
      if (!s.sustained) break
      cell.fastest = s
      // The highest rate under the target even if a slower step missed it: a slow step's few publishes make a noisy p99.
      if (s.pass && (cell.best === null || s.publishesPerS >= cell.best.publishesPerS)) cell.best = s
    }
    const check = await finalCheck(session)
    cell.lost = check.lost
    cell.duplicated = check.duplicated
    cell.serverRssMiB = await Promise.all(session.servers.map(async s => Math.round((await ask<{ rss: number }>(s, { cmd: 'stats' }, 'stats')).rss / 2 ** 20)))
    log(`  cell total: ${cell.lost} lost, ${cell.duplicated} duplicated; server RSS ${cell.serverRssMiB.join(' + ')} MiB`)
  } catch (err) {
    cell.error = err instanceof Error ? err.message : String(err)
    log(`  fan-out ${system} ${size.sockets}×${size.streams} FAILED: ${cell.error}`)
  } finally {
    if (session !== null) await stopAll([...session.clients, ...session.servers])
  }
  return cell
}

// --- the slow-subscriber cell ------------------------------------------------------------

/**
 * The never-reader asks for 'drop-oldest' with a 20-message queue and opens
 * a 1 KiB receive window, then stops reading its socket (TCP included): so
 * it sits at its bound within a round and stays subscribed, the worst case.
 * Under the default 'end' it would be ended once full, and cost nothing more.
 */
async function runSlow (size: { sockets: number, streams: number }, intervalMs: number, plan: FanoutPlan, log: (line: string) => void): Promise<FanoutSlow> {
  const slowPlan = plan.slow!
  const session = await startSession('topics', size.sockets, size.streams, plan.clients, null)
  const nr = child(['--role', 'client', '--system', 'topics', '--sockets', '1', '--streams', '1', '--never', '1'])
  const measured = session.clients
  try {
    await reply(nr, 'ready')
    const rounds: SlowRound[] = []
    // Each kind's latencies, pooled over its rounds: one round's p99 is a few tail messages, too noisy to judge on.
    const pooled = { with: [] as Histogram[], without: [] as Histogram[] }
    const count = publishes(slowPlan.windowMs, intervalMs)
    // Warm, or the first round (one without the never-reader) would run colder than the rest.
    await warmCell(session, plan)
    await warmUp(session, intervalMs, plan.warmupMs)
    for (let r = 0; r < slowPlan.rounds * 2; r++) {
      // ABBA (without, with, with, without, …): each kind goes first as often, and a drift over the cell hits both alike.
      const withNeverReader = [false, true, true, false][r % 4]!
      if (withNeverReader) {
        const o = await ask<{ error?: string }>(nr, { cmd: 'open', ports: session.ports.slice(0, 1) }, 'opened', 30_000)
        if (o.error !== undefined) throw new Error(`the never-reader did not subscribe: ${o.error}`)
      }
      await warmUp(session, intervalMs, 1000) // the never-reader reaches its bound
      const { step: s, hist } = await step(session, measured, intervalMs, count, undefined, Infinity)
      pooled[withNeverReader ? 'with' : 'without'].push([...hist])
      rounds.push({ withNeverReader, p50Ms: s.p50Ms, p99Ms: s.p99Ms, received: s.received, expected: s.expected, lost: s.lost, clientSaturated: s.clientSaturated })
      log(`  slow subscriber round ${r + 1}: ${withNeverReader ? 'with   ' : 'without'} a never-reader: p50 ${s.p50Ms.toFixed(1)} p99 ${s.p99Ms.toFixed(1)} ms, ${s.lost} lost, clients ${s.clientCpuPct.join('/')} %`)
      if (withNeverReader) await ask(nr, { cmd: 'close' }, 'closed')
      await sleep(200)
    }
    const ratios: number[] = []
    for (let i = 0; i + 1 < rounds.length; i += 2) {
      const a = rounds[i]!
      const b = rounds[i + 1]!
      const w = a.withNeverReader ? a : b
      const wo = a.withNeverReader ? b : a
      ratios.push(+(w.p99Ms / wo.p99Ms).toFixed(3))
    }
    const withP99 = quantile(merge(pooled.with), 0.99)
    const withoutP99 = quantile(merge(pooled.without), 0.99)
    const stats = (await ask<{ stats: { dropped: number, ended: number } | null }>(session.servers[0]!, { cmd: 'stats' }, 'stats')).stats
    const check = await finalCheck(session, measured)
    return {
      sockets: size.sockets, streams: size.streams, publishesPerS: +(1000 / intervalMs).toFixed(2), rounds, ratios,
      pooledWithP99Ms: withP99, pooledWithoutP99Ms: withoutP99, pooledRatio: +(withP99 / withoutP99).toFixed(3),
      dropped: stats?.dropped ?? NaN, ended: stats?.ended ?? NaN, lost: check.lost, duplicated: check.duplicated
    }
  } finally {
    await stopAll([...session.clients, nr, ...session.servers])
  }
}

// --- the section ------------------------------------------------------------------------------

function versions (): Record<string, string> {
  const root = resolve(fileURLToPath(new URL('..', import.meta.url)))
  const v = (name: string): string => { try { return (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version } catch { return 'not installed' } }
  return Object.fromEntries(['ws', 'socket.io', 'socket.io-client', '@socket.io/redis-adapter', 'redis'].map(n => [n, v(n)]))
}

function rotate<T> (list: readonly T[], by: number): T[] {
  const n = by % list.length
  return [...list.slice(n), ...list.slice(0, n)]
}

/** Below the knee: the step before topics' highest rate under the target (or, with none, delivered in full) at this size. */
function slowInterval (cell: FanoutCell | undefined, plan: FanoutPlan): number {
  const top = cell?.best ?? cell?.fastest ?? null
  if (cell === undefined || top === null) return plan.intervalsMs[0]!
  const i = cell.steps.indexOf(top)
  return (i > 0 ? cell.steps[i - 1]! : top).intervalMs
}

export async function runFanout (plan: FanoutPlan, log: (line: string) => void): Promise<FanoutResults> {
  const started = performance.now()
  const deadline = started + plan.budgetMs
  const results: FanoutResults = { date: new Date().toISOString(), plan, cores: os.availableParallelism(), loadAvgStart: os.loadavg()[0]!, loadAvgEnd: NaN, versions: versions(), redis: null, cells: [], slow: null, notes: [], durationS: 0 }
  let systems = plan.systems
  let redis: RedisServer | null = null
  if (systems.some(s => s.endsWith('-redis'))) {
    redis = new RedisServer({ tcp: true })
    try {
      await redis.start()
      const v = /v=(\S+)/.exec((await import('node:child_process')).execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))
      results.redis = `redis-server ${v?.[1] ?? '?'}, 127.0.0.1:${redis.port}, \`--save '' --appendonly no\``
    } catch (err) {
      results.notes.push(`the two-instance cells did not run: ${err instanceof Error ? err.message : String(err)}`)
      log(`fan-out: ${results.notes.at(-1)!}`)
      systems = systems.filter(s => !s.endsWith('-redis'))
      redis = null
    }
  }
  try {
    let turn = 0
    for (const size of plan.sizes) {
      // Systems alternate: the order turns from one size to the next.
      for (const system of rotate(systems, turn++)) {
        if (performance.now() > deadline) { results.notes.push(`fan-out ${system} ${size.sockets}×${size.streams} skipped: time budget reached`); continue }
        results.cells.push(await runCell(system, size, plan, redis, deadline, log))
      }
    }
    if (plan.slow !== null && performance.now() < deadline) {
      const size = plan.sizes[0]!
      const topicsCell = results.cells.find(c => c.system === 'topics' && c.sockets === size.sockets && c.streams === size.streams)
      const intervalMs = slowInterval(topicsCell, plan)
      log(`fan-out slow subscriber: topics ${size.sockets}×${size.streams}, one publish every ${intervalMs} ms, ${plan.slow.rounds} pairs of rounds`)
      try {
        results.slow = await runSlow(size, intervalMs, plan, log)
      } catch (err) {
        results.notes.push(`the slow-subscriber cell failed: ${err instanceof Error ? err.message : String(err)}`)
        log(`fan-out: ${results.notes.at(-1)!}`)
      }
    }
  } finally {
    await redis?.close()
  }
  results.loadAvgEnd = os.loadavg()[0]!
  results.durationS = (performance.now() - started) / 1000
  return results
}

/** The plugin lost or doubled a delivery, or a plugin cell failed: what `npm run bench` fails on. */
export function fanoutFailures (r: FanoutResults): string[] {
  const out: string[] = []
  for (const c of r.cells) {
    if (!PLUGIN_SYSTEMS.includes(c.system)) continue
    if (c.error !== null) out.push(`fan-out ${c.system} ${c.sockets}×${c.streams}: ${c.error}`)
    else if (c.lost > 0 || c.duplicated > 0) out.push(`fan-out ${c.system} ${c.sockets}×${c.streams}: ${c.lost} deliveries lost, ${c.duplicated} duplicated`)
  }
  if (r.slow !== null && (r.slow.lost > 0 || r.slow.duplicated > 0)) out.push(`fan-out slow-subscriber cell: ${r.slow.lost} deliveries to the reading subscribers lost, ${r.slow.duplicated} duplicated`)
  return out
}

// --- report ---------------------------------------------------------------------------------

const LABEL: Record<FanoutSystem, string> = {
  topics: 'fastify-grpc-ws topics',
  'per-call': 'fastify-grpc-ws, a write per call',
  ws: 'raw `ws` broadcast loop',
  tcp: 'bare TCP write loop (the floor)',
  socketio: 'Socket.IO, `io.to(room).emit`',
  'topics-redis': 'fastify-grpc-ws topics, Redis bus',
  'socketio-redis': 'Socket.IO, @socket.io/redis-adapter'
}

const f1 = (x: number | null | undefined): string => x == null || !Number.isFinite(x) ? '–' : x.toFixed(1)
const int = (x: number | null | undefined): string => x == null || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US')

/** Both cells' figures at the fastest step both delivered in full (or, if one did none, their first step). */
function common (a: FanoutCell, b: FanoutCell): [FanoutStep, FanoutStep] | null {
  const held = a.steps.filter(s => s.sustained).map(s => s.intervalMs).filter(i => b.steps.some(s => s.sustained && s.intervalMs === i))
  const interval = held.length > 0 ? Math.min(...held) : a.steps[0]?.intervalMs
  const sa = a.steps.find(s => s.intervalMs === interval)
  const sb = b.steps.find(s => s.intervalMs === interval)
  return sa === undefined || sb === undefined ? null : [sa, sb]
}

export interface FanoutTarget { name: string, measured: string, pass: boolean | null }

/** "x vs y: r×" for two steps' deliveries/s ("none" for a missing step), flagged when both are at the search's fastest step. */
function versus (x: FanoutStep | null, y: FanoutStep | null, top: number): string {
  const ratio = x === null || y === null ? NaN : x.deliveriesPerS / y.deliveriesPerS
  const capped = x?.intervalMs === top && y?.intervalMs === top ? ', both at the fastest step tried: capped by the search' : ''
  return `${x === null ? 'none' : int(x.deliveriesPerS)} vs ${y === null ? 'none' : int(y.deliveriesPerS)}${Number.isFinite(ratio) ? `: ${ratio.toFixed(2)}×` : ''}${capped}`
}

/**
 * The plugin's deliveries/s at its p99 knee (best) against Socket.IO's: met when the plugin has a knee and Socket.IO none,
 * or both have one and the ratio is ≥ 2; not met when Socket.IO's knee is over half the plugin's, or only Socket.IO has
 * one; n/a when neither has. The highest rates each delivered in full (whatever the p99) are given beside it.
 */
function versusSocketIo (x: FanoutCell, y: FanoutCell, p99TargetMs: number, top: number): { measured: string, pass: boolean | null } {
  const pass = x.best === null ? (y.best === null ? null : false) : y.best === null ? true : x.best.deliveriesPerS >= 2 * y.best.deliveriesPerS
  const knee = x.best === null && y.best === null ? `neither had a step with p99 < ${p99TargetMs} ms` : `at the highest rate with p99 < ${p99TargetMs} ms: ${versus(x.best, y.best, top)}`
  return { measured: `${knee}; delivered in full: ${versus(x.fastest, y.fastest, top)}`, pass }
}

/** What the bare TCP floor gave at its slowest step: below the target or not. */
function floorNote (floor: FanoutCell, p99TargetMs: number): string {
  const first = floor.steps[0]
  if (first === undefined) return ''
  return floor.best === null
    ? `; the bare TCP floor had none either (p99 ${f1(first.p99Ms)} ms at ${first.publishesPerS} publishes/s): no server can meet p99 < ${p99TargetMs} ms at this size on this machine`
    : `; the bare TCP floor had one (${int(floor.best.deliveriesPerS)} deliveries/s at p99 ${f1(floor.best.p99Ms)} ms)`
}

export function fanoutTargets (r: FanoutResults): FanoutTarget[] {
  const out: FanoutTarget[] = []
  const cell = (system: FanoutSystem, size: { sockets: number, streams: number }): FanoutCell | undefined =>
    r.cells.find(c => c.system === system && c.sockets === size.sockets && c.streams === size.streams && c.error === null)
  const top = Math.min(...r.plan.intervalsMs)
  for (const size of r.plan.sizes) {
    const at = `${size.sockets.toLocaleString('en-US')} sockets × ${size.streams}`
    const t = cell('topics', size)
    const w = cell('ws', size)
    if (t !== undefined && w !== undefined) {
      const c = common(t, w)
      const ratio = c === null ? NaN : c[0].serverUsPerDelivery / c[1].serverUsPerDelivery
      out.push({ name: `${at}: server CPU per delivery ≤ 1.2× the raw ws broadcast`, measured: c === null ? 'not measured' : `${c[0].serverUsPerDelivery} vs ${c[1].serverUsPerDelivery} µs at ${c[0].publishesPerS} publishes/s: ${ratio.toFixed(2)}×`, pass: Number.isFinite(ratio) ? ratio <= 1.2 : null })
    }
    const floor = cell('tcp', size)
    for (const [a, b] of [['topics', 'socketio'], ['topics-redis', 'socketio-redis']] as const) {
      const x = cell(a, size)
      const y = cell(b, size)
      if (x === undefined || y === undefined) continue
      const v = versusSocketIo(x, y, r.plan.p99TargetMs, top)
      // Without a knee on either side, the floor tells whether this machine allows one at all.
      if (v.pass === null && floor !== undefined) v.measured += floorNote(floor, r.plan.p99TargetMs)
      out.push({ name: `${at}${a.endsWith('-redis') ? ', two instances' : ''}: deliveries/s ≥ 2× Socket.IO's`, ...v })
    }
  }
  const plugin = r.cells.filter(c => PLUGIN_SYSTEMS.includes(c.system))
  const lost = plugin.reduce((n, c) => n + c.lost, 0)
  const dup = plugin.reduce((n, c) => n + c.duplicated, 0)
  out.push({ name: '0 deliveries lost (sequence numbers checked), plugin cells', measured: `${lost} lost, ${dup} duplicated over ${plugin.length} cells${plugin.some(c => c.error !== null) ? '; a cell failed' : ''}`, pass: plugin.length === 0 ? null : lost === 0 && dup === 0 && plugin.every(c => c.error === null) })
  if (r.slow !== null) {
    const s = r.slow
    out.push({ name: 'a subscriber that never reads changes the others\' p99 by < 20 %', measured: `p99 with / without, ${s.rounds.length / 2} rounds of each pooled: ${f1(s.pooledWithP99Ms)} / ${f1(s.pooledWithoutP99Ms)} ms = ${s.pooledRatio.toFixed(2)}× (per pair: ${s.ratios.map(x => x.toFixed(2)).join(', ')})`, pass: Number.isFinite(s.pooledRatio) ? Math.abs(s.pooledRatio - 1) < 0.2 : null })
  }
  return out
}

/** The section's markdown; `targets: false` where the targets are in a table of their own (docs/bench.md). */
export function fanoutMarkdown (r: FanoutResults, options: { targets?: boolean } = {}): string {
  const out: string[] = []
  const p = r.plan
  out.push('## Fan-out: one message to many subscribers', '')
  out.push(`One ${96}-byte payload (a sequence number and the publish time; about 100 bytes on the wire) published every N ms to every subscriber. Sizes: ${p.sizes.map(s => `${s.sockets.toLocaleString('en-US')} sockets × ${s.streams} stream${s.streams > 1 ? 's' : ''}`).join(' and ')}; the subscribers are spread over ${p.clients} client processes. Each cell steps the publish interval down (${p.intervalsMs.join(', ')} ms${p.search ? '' : ': the first only, a smoke'}, after ${p.warmup.publishes} publishes every ${p.warmup.intervalMs} ms that are waited out and not counted, so that the steps run compiled code; then about ${p.windowMs} ms and at least 5 publishes per step) and stops at the first step that loses or doubles a message or has not delivered all within 3 s of its last publish; "p99 < ${p.p99TargetMs} ms: highest" is the highest-rate step whose p99 from publish to receipt is under ${p.p99TargetMs} ms, whatever the slower steps gave (their few publishes make their p99 noisy). Publishes/s is the rate the publisher achieved (publishes over its loop's duration plus one interval). Deliveries/s count from the step's first publish to the last receipt of its messages (the processes' clocks are one on this machine), plus one interval as for publishes, so they are at most subscribers × publishes/s, and a server that queues messages internally is not credited with the time it takes to drain them. Server CPU is every server process's (\`process.cpuUsage()\`; redis-server's from /proc) from just before the first publish until every subscriber had the step's messages (polled every 50 ms): divided by the deliveries for µs/delivery, by that wall time for %. Systems alternate: the order turns from one size to the next. One run of each cell, not repeated: read the ratios, not the absolute figures.`, '')
  out.push('- Streams per socket: the plugin opens that many server-streaming calls on the socket; Socket.IO that many namespaces on one connection (one `emit` per namespace per publish); the raw `ws` loop sends that many frames per socket, told apart by a byte; the bare TCP loop writes that many records to each socket at once.')
  out.push('- The bare TCP write loop is the floor: one `socket.write` of the same bytes to each socket, no WebSocket and no framing, read by the same client processes. Where even its p99 is over the target, no server can meet the target at that size on this machine.')
  out.push(`- Two instances: two server processes on one redis-server (${r.redis ?? 'not run'}), sockets split evenly over both, the publisher on the first. The raw \`ws\` and bare TCP loops are single-instance only (they cannot reach another instance's sockets).`)
  out.push(`- Client CPU is each client process's share of one core over the step; ≥ 90 % (marked ⚠) means that client, not the server, may set the latency. The machine has ${r.cores} cores for every server, client and redis-server.`)
  out.push(`- Load average ${r.loadAvgStart.toFixed(2)} at the start, ${r.loadAvgEnd.toFixed(2)} at the end of the section (other work shares the machine); ${r.durationS.toFixed(0)} s. Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(', ')}.`)
  out.push('')
  const targets = options.targets === false ? [] : fanoutTargets(r)
  if (targets.length > 0) {
    out.push('| target | measured | verdict |', '|---|---|---|')
    for (const t of targets) out.push(`| ${t.name} | ${t.measured} | ${t.pass === true ? 'met' : t.pass === false ? '**not met**' : 'n/a'} |`)
    out.push('')
  }
  for (const size of p.sizes) {
    const cells = r.cells.filter(c => c.sockets === size.sockets && c.streams === size.streams)
    if (cells.length === 0) continue
    out.push(`**${(size.sockets * size.streams).toLocaleString('en-US')} subscribers: ${size.sockets.toLocaleString('en-US')} sockets × ${size.streams}**`, '')
    out.push(`Figures at the highest rate delivered in full (every message within 3 s of the last publish), whatever its p99.`, '')
    out.push(`| system | instances | p99 < ${p.p99TargetMs} ms: highest publishes/s (deliveries/s) | delivered in full: highest publishes/s | deliveries/s | p50 / p99 ms | server CPU µs/delivery | of which redis-server | server CPU % | client CPU % (max) | lost / duplicated (cell) | connect s |`, '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    for (const c of cells) {
      if (c.error !== null) { out.push(`| ${LABEL[c.system]} | ${c.instances} | failed: ${c.error} | | | | | | | | | |`); continue }
      const b = c.best
      const shown = c.fastest ?? c.steps[0]
      const clientMax = shown === undefined ? NaN : Math.max(...shown.clientCpuPct)
      out.push(`| ${LABEL[c.system]} | ${c.instances} | ${b === null ? `none (first step: ${c.steps[0]?.why ?? '–'})` : `${b.publishesPerS} (${int(b.deliveriesPerS)})`} | ${c.fastest === null ? 'none' : c.fastest.publishesPerS} | ${int(shown?.deliveriesPerS)} | ${f1(shown?.p50Ms)} / ${f1(shown?.p99Ms)} | ${f1(shown?.serverUsPerDelivery)} | ${shown?.redisUsPerDelivery == null ? '–' : f1(shown.redisUsPerDelivery)} | ${shown?.serverCpuPct.join(' + ') ?? '–'}${shown?.redisCpuPct == null ? '' : ` + ${shown.redisCpuPct}`} | ${int(clientMax)}${shown?.clientSaturated === true ? ' ⚠' : ''} | ${c.lost} / ${c.duplicated} | ${(c.connectMs / 1000).toFixed(1)} |`)
    }
    out.push('')
  }
  out.push('Every step (the search stops after the first not delivered in full; span: first publish to last receipt):', '')
  out.push('| size | system | every ms | publishes/s | span s | deliveries/s | p50 / p99 / max ms | server µs/delivery | server % | client % | held |', '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|')
  for (const c of r.cells) {
    for (const s of c.steps) {
      out.push(`| ${c.sockets}×${c.streams} | ${LABEL[c.system]} | ${s.intervalMs} | ${s.publishesPerS} | ${(s.spanMs / 1000).toFixed(2)} | ${int(s.deliveriesPerS)} | ${f1(s.p50Ms)} / ${f1(s.p99Ms)} / ${f1(s.maxMs)} | ${f1(s.serverUsPerDelivery)} | ${s.serverCpuPct.join(' + ')}${s.redisCpuPct === null ? '' : ` + ${s.redisCpuPct}`} | ${s.clientCpuPct.join('/')}${s.clientSaturated ? ' ⚠' : ''} | ${s.pass ? 'yes' : `no: ${s.why}`}${s.sustained && !s.pass ? ' (delivered in full)' : ''} |`)
    }
  }
  out.push('')
  if (r.slow !== null) {
    const s = r.slow
    out.push(`**A subscriber that never reads** (topics, ${s.sockets.toLocaleString('en-US')} sockets × ${s.streams}, one publish every ${(1000 / s.publishesPerS).toFixed(0)} ms): ${s.rounds.length / 2} pairs of rounds without and with one more subscriber that never reads, in ABBA order (without, with, with, without, …), p99 of the others; the verdict is on the latencies of all rounds of each kind pooled, the per-pair ratios are shown for how much they spread. The never-reader asks for \`'drop-oldest'\` with a 20-message queue and a 1 KiB receive window, then stops reading its socket (TCP included), so it sits at its bound within each round and stays subscribed, the worst case (under the default \`'end'\` it would be ended once full). At the end the topic had dropped ${int(s.dropped)} messages (the never-reader's overflow) and ended ${int(s.ended)} subscribers; the others lost ${s.lost} and got ${s.duplicated} twice.`, '')
    out.push('| round | never-reader | p50 ms | p99 ms | received / expected | client saturated |', '|---:|---|---:|---:|---:|---|')
    s.rounds.forEach((x, i) => out.push(`| ${i + 1} | ${x.withNeverReader ? 'yes' : 'no'} | ${f1(x.p50Ms)} | ${f1(x.p99Ms)} | ${int(x.received)} / ${int(x.expected)} | ${x.clientSaturated ? 'yes ⚠' : 'no'} |`))
    out.push('', `p99 with / without, pooled: ${f1(s.pooledWithP99Ms)} / ${f1(s.pooledWithoutP99Ms)} ms = ${s.pooledRatio.toFixed(2)}×; per pair of rounds: ${s.ratios.map(x => x.toFixed(2)).join(', ')}.`, '')
  }
  for (const n of r.notes) out.push(`- ${n}`)
  if (r.notes.length > 0) out.push('')
  return out.join('\n')
}

// --- standalone: npm run bench:fanout ------------------------------------------------------------

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2)
  const option = (name: string): string | undefined => { const i = argv.indexOf(`--${name}`); return i === -1 ? undefined : argv[i + 1] }
  const base = argv.includes('--quick') ? FANOUT_QUICK : FANOUT_FULL
  const plan: FanoutPlan = {
    ...base,
    ...(option('sizes') === undefined ? {} : { sizes: option('sizes')!.split(',').map(x => { const [a, b] = x.split('x').map(Number); return { sockets: a!, streams: b ?? 1 } }) }),
    ...(option('systems') === undefined ? {} : { systems: option('systems')!.split(',').filter((x): x is FanoutSystem => (FANOUT_SYSTEMS as readonly string[]).includes(x)) }),
    ...(option('clients') === undefined ? {} : { clients: Number(option('clients')) }),
    ...(option('intervals') === undefined ? {} : { intervalsMs: option('intervals')!.split(',').map(Number) }),
    ...(option('window') === undefined ? {} : { windowMs: Number(option('window')) }),
    ...(argv.includes('--no-slow') ? { slow: null } : {})
  }
  const t0 = performance.now()
  const log = (line: string): void => { console.log(`[${((performance.now() - t0) / 1000).toFixed(1).padStart(5)} s] ${line}`) }
  const hardStop = setTimeout(() => { console.error('bench:fanout: out of time; stopping'); killFanout(); process.exit(2) }, plan.budgetMs + 120_000)
  hardStop.unref()
  process.on('SIGINT', () => { killFanout(); process.exit(130) })
  try {
    await buildBundles()
    const results = await runFanout(plan, log)
    // Standalone runs never touch docs/: `npm run bench` publishes the figures.
    const dir = resolve(option('out') ?? join(os.tmpdir(), 'fastify-grpc-ws-bench'))
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, 'fanout.json'), JSON.stringify(results, null, 2) + '\n')
    writeFileSync(join(dir, 'fanout.md'), `# Fan-out benchmark (\`npm run bench:fanout\`, ${results.date})\n\n${fanoutMarkdown(results)}`)
    log(`done: ${join(dir, 'fanout.md')}, fanout.json`)
    for (const t of fanoutTargets(results)) log(`target ${t.pass === true ? 'MET    ' : t.pass === false ? 'NOT MET' : '   n/a '} ${t.name}: ${t.measured}`)
    const failures = fanoutFailures(results)
    for (const f of failures) log(`FAILED ${f}`)
    process.exit(failures.length > 0 ? 1 : 0)
  } catch (err) {
    console.error(err)
    killFanout()
    process.exit(1)
  }
}
