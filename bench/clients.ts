/**
 * `npm run bench:clients`: what the clients themselves cost. Unary calls at
 * 64 in flight (100 B and 64 KiB) from the browser client (in Node, over
 * `ws`, protobuf-es codec), from a stock grpc-js client over
 * createWebSocketChannel (proto-loader), both to the plugin, and from a raw
 * `ws` client to a bare @fastify/websocket echo (the floor, per message).
 * Each client in its own process; systems alternate within a repetition,
 * and every ratio is taken within one.
 *
 *   npx tsx bench/clients.ts [--reps 5] [--seconds 2] [--sizes 100,65536] [--inflight 64]
 *     [--systems plugin-web,plugin-grpcjs,ws] [--prof plugin-web] [--no-stackless] [--memory-reducer] [--no-pin]
 *
 * `--prof SYSTEM` (or `--prof 'plugin-grpcjs, no stacks'`) runs that client
 * under `node --cpu-prof` and prints where its time went (the whole process,
 * every size and repetition of the run).
 *
 * With plugin-grpcjs among the systems, a further row runs the same client
 * in a process started with `--stack-trace-limit=0`: grpc-js's Client makes
 * a `new Error()` for every call (to give a failure the caller's stack),
 * and the difference between the two rows is what capturing that stack
 * costs, which no Channel can avoid. A diagnostic, not a way to run an app.
 * `--no-stackless` leaves it out.
 *
 * Clients run with `--no-memory-reducer` (see CLIENT_FLAGS);
 * `--memory-reducer` gives them V8's default.
 */
import { mkdtempSync, readdirSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { flag, median, option, type ClientSystem, type RunResult, type RunSpec } from './common.js'
import { profileTables, summarizeProfile } from './cpu-profile.js'
import { BUILD_DIR, ClientProcess, ServerProcess, buildBundles, hasTaskset, killAll } from './procs.js'

const reps = Number(option('--reps') ?? '5')
const windowMs = Number(option('--seconds') ?? '2') * 1000
const warmupMs = 500
const sizes = (option('--sizes') ?? '100,65536').split(',').map(Number)
const inflight = Number(option('--inflight') ?? '64')
const systems = (option('--systems') ?? 'plugin-web,plugin-grpcjs,ws').split(',') as ClientSystem[]
const profiled = option('--prof') ?? ''

// Each client idles while the others run. After a few seconds of that,
// V8's memory reducer shrinks its heap, and at 64 KiB the plugin's clients
// then took twice the CPU per call (GC 11 → 25 % of it, on more than one
// thread) for the rest of the run, whenever the idle gaps were long enough
// (with four clients, in each of nine runs; with three, not in the one run
// tried). Every client runs without it, the raw ws client too, so that each
// row is the client's steady state, not the alternation's after-effect.
const CLIENT_FLAGS = flag('--memory-reducer') ? [] : ['--no-memory-reducer']

/** One row of the table: a client system in a process started with these node flags. */
interface Way { key: string, system: ClientSystem, nodeArgs: string[] }
const STACKLESS = 'plugin-grpcjs, no stacks'
const ways: Way[] = systems.map(system => ({ key: system, system, nodeArgs: [] }))
if (systems.includes('plugin-grpcjs') && !flag('--no-stackless')) ways.push({ key: STACKLESS, system: 'plugin-grpcjs', nodeArgs: ['--stack-trace-limit=0'] })
const pin = !flag('--no-pin') && os.availableParallelism() >= 2 && hasTaskset()

// Bounded in time whatever happens.
const budgetMs = reps * sizes.length * ways.length * (warmupMs + windowMs + 5000) + 60_000
setTimeout(() => { console.error(`bench:clients: still running after ${budgetMs} ms; stopping`); killAll(); process.exit(2) }, budgetMs).unref()
process.on('exit', killAll)

interface Row { rep: number, size: number, system: string, rate: number, clientUs: number, clientPct: number, serverUs: number, p50: number, p99: number, errors: number, firstError: string | null }

function sizeLabel (size: number): string {
  return size === 65536 ? '64 KiB' : `${size} B`
}

async function main (): Promise<void> {
  await buildBundles()
  const cpu = (n: number): number | null => pin ? n : null
  const plugin = await ServerProcess.start('plugin', { cpu: cpu(0) })
  const ws = await ServerProcess.start('ws', { cpu: cpu(0) })
  const profDir = mkdtempSync(join(os.tmpdir(), 'grpcws-client-prof-'))
  const clients = new Map<string, ClientProcess>()
  for (const way of ways) {
    const prof = way.key === profiled ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []
    clients.set(way.key, await ClientProcess.start({ cpu: cpu(1), nodeArgs: [...CLIENT_FLAGS, ...way.nodeArgs, ...prof] }))
  }
  const serverOf = (system: ClientSystem): ServerProcess => system === 'ws' ? ws : plugin
  const targetOf = (system: ClientSystem): string => system === 'ws' ? `ws://127.0.0.1:${ws.port}` : `ws://127.0.0.1:${plugin.port}/grpc`
  const rows: Row[] = []
  const started = performance.now()
  try {
    for (const { key, system } of ways) {
      const c = clients.get(key)!
      for (const size of sizes) {
        await c.ask({ cmd: 'run', id: c.newId(), spec: { system, target: targetOf(system), pattern: 'unary', size, inflight, warmupMs: 600, windowMs: 50, maxOps: 50_000_000 } }, 60_000)
      }
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const [i, size] of sizes.entries()) {
        const n = (rep + i) % ways.length
        for (const { key, system } of [...ways.slice(n), ...ways.slice(0, n)]) {
          const c = clients.get(key)!
          const server = serverOf(system)
          let a: Promise<number> | null = null
          let b: Promise<number> | null = null
          c.onMark = phase => { const s = server.sample().then(x => x.cpuUs); if (phase === 'start') a = s; else b = s }
          const spec: RunSpec = { system, target: targetOf(system), pattern: 'unary', size, inflight, warmupMs, windowMs, maxOps: 50_000_000 }
          const r = (await c.ask({ cmd: 'run', id: c.newId(), spec }, warmupMs + windowMs + 30_000) as { result: RunResult }).result
          c.onMark = null
          const serverCpu = a !== null && b !== null ? await b - await a : NaN
          const row: Row = {
            rep, size, system: key,
            rate: r.ops / r.seconds,
            clientUs: r.clientCpuUs / r.ops,
            clientPct: r.clientCpuUs / (r.seconds * 1e4),
            serverUs: serverCpu / r.ops,
            p50: r.p50Ms ?? NaN,
            p99: r.p99Ms ?? NaN,
            errors: r.errors,
            firstError: r.firstError
          }
          rows.push(row)
          console.log(`rep ${rep + 1}/${reps} ${String(size).padStart(5)} B ${key.padEnd(24)} ${Math.round(row.rate).toLocaleString('en-US').padStart(8)} /s  client ${row.clientUs.toFixed(1).padStart(6)} µs/call (${row.clientPct.toFixed(0)} %)  server ${row.serverUs.toFixed(1)} µs/call  p50 ${row.p50.toFixed(2)} p99 ${row.p99.toFixed(2)} ms  load ${os.loadavg()[0]!.toFixed(1)}${row.errors > 0 ? `  ERRORS ${row.errors}: ${row.firstError ?? ''}` : ''}`)
        }
      }
    }
  } finally {
    for (const c of clients.values()) await c.stop()
    await plugin.stop()
    await ws.stop()
  }

  const floor = systems.includes('ws') ? 'ws' : null
  const lines: string[] = []
  lines.push(`${reps} repetitions × ${windowMs / 1000} s per measurement, ${inflight} unary calls in flight, ${(performance.now() - started) / 1000 | 0} s; pinning ${pin ? 'servers on CPU 0, clients on CPU 1' : 'off'}; clients ${CLIENT_FLAGS.length === 0 ? "with V8's memory reducer" : 'with --no-memory-reducer'}; load average at the end ${os.loadavg()[0]!.toFixed(1)} (${os.availableParallelism()} CPUs). Medians over the repetitions; ratios per repetition, then their median.`, '')
  lines.push('| size | client | calls/s | client CPU µs/call | client CPU % | × raw ws client per message | server CPU µs/call | p50 / p99 ms |', '|---:|---|---:|---:|---:|---:|---:|---:|')
  for (const size of sizes) {
    for (const { key: system } of ways) {
      const mine = rows.filter(r => r.size === size && r.system === system)
      const ratios = floor === null
        ? []
        : mine.map(r => r.clientUs / (rows.find(f => f.size === size && f.rep === r.rep && f.system === floor)?.clientUs ?? NaN))
      const m = (f: (r: Row) => number): number => median(mine.map(f))
      lines.push(`| ${sizeLabel(size)} | ${system} | ${Math.round(m(r => r.rate)).toLocaleString('en-US')} | ${m(r => r.clientUs).toFixed(1)} | ${m(r => r.clientPct).toFixed(0)} | ${floor === null ? '' : `${median(ratios).toFixed(2)} (${ratios.map(x => x.toFixed(2)).join(', ')})`} | ${m(r => r.serverUs).toFixed(1)} | ${m(r => r.p50).toFixed(2)} / ${m(r => r.p99).toFixed(2)} |`)
    }
  }
  if (ways.some(w => w.key === STACKLESS)) {
    lines.push('')
    for (const size of sizes) {
      // Per repetition, as the ratios: the same client with and without its caller stacks.
      const shares = rows.filter(r => r.size === size && r.system === 'plugin-grpcjs').map(r => {
        const without = rows.find(f => f.size === size && f.rep === r.rep && f.system === STACKLESS)?.clientUs ?? NaN
        return { us: r.clientUs - without, share: 1 - without / r.clientUs }
      })
      lines.push(`${sizeLabel(size)}: without its caller stacks, the grpc-js channel spends ${median(shares.map(x => x.us)).toFixed(1)} µs less client CPU per call, ${(100 * median(shares.map(x => x.share))).toFixed(0)} % of it (per repetition: ${shares.map(x => `${(100 * x.share).toFixed(0)} %`).join(', ')}).`)
    }
  }
  console.log(['', ...lines].join('\n'))
  if (profiled !== '') {
    const file = readdirSync(profDir).find(f => f.endsWith('.cpuprofile'))
    if (file === undefined) throw new Error(`no profile written in ${profDir}`)
    const s = summarizeProfile(join(profDir, file), join(BUILD_DIR, 'client.mjs'))
    console.log(['', `## Profile of the ${profiled} client process`, '', `Busy ${(s.busyUs / 1000).toFixed(0)} ms of ${(s.totalUs / 1000).toFixed(0)} ms sampled; whole process, start-up and warm-up included.`, '', ...profileTables(s, 40), '', `profile: ${join(profDir, file)}`].join('\n'))
  }
  if (rows.some(r => r.errors > 0 && r.system !== 'ws')) process.exitCode = 1
}

main().then(() => { process.exit(process.exitCode ?? 0) }, (err: unknown) => {
  console.error(err)
  killAll()
  process.exit(1)
})
