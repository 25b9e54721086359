/**
 * `npm run bench:forward` (about a minute; `-- --quick`: about 20 s):
 * calls forwarded by the plugin to a grpc-js upstream in another process,
 * against a direct grpc-js client to the same upstream. Unary 100 B at 64
 * in flight and pipelined bidi (100 B, 1000 in flight), each through the
 * forwarder's grpcServer (HTTP/2 in, HTTP/2 out) and its WebSocket route
 * (the lean client), and direct. Reports calls/s, the ratio to direct, and
 * the CPU of the forwarder and of the upstream per call. Every server and
 * the client run in processes of their own on 127.0.0.1, unpinned (three
 * processes on two cores).
 */
import type { ClientSystem, Pattern, RunResult, RunSpec, ServerSample } from './common.js'
import { ClientProcess, ServerProcess, buildBundles, killAll } from './procs.js'

const quick = process.argv.includes('--quick')
const reps = quick ? 1 : 3
const warmupMs = quick ? 200 : 500
const windowMs = quick ? 500 : 1500

const hardStop = setTimeout(() => { console.error('bench:forward: still running after 4 minutes; stopping'); killAll(); process.exit(2) }, 240_000)
hardStop.unref()
process.on('exit', killAll)

interface Way { name: string, system: ClientSystem, target: () => string, via: 'direct' | 'forwarder' }
interface Row { scenario: string, way: string, rate: number, forwarderUsPerOp: number | null, upstreamUsPerOp: number, errors: number }

const scenarios: Array<{ key: string, pattern: Pattern, size: number, inflight: number }> = [
  { key: 'unary-100-c64', pattern: 'unary', size: 100, inflight: 64 },
  { key: 'bidi-100-p1000', pattern: 'bidi', size: 100, inflight: 1000 }
]

await buildBundles()
const upstream = await ServerProcess.start('grpc', { cpu: null })
const upstreamTarget = `127.0.0.1:${upstream.port}`
const forwarder = await ServerProcess.start('forward', { cpu: null, env: { UPSTREAM_TARGET: upstreamTarget } })
const ways: Way[] = [
  { name: 'direct grpc-js', system: 'grpc', target: () => upstreamTarget, via: 'direct' },
  { name: 'forwarded (HTTP/2 in)', system: 'grpc', target: () => `127.0.0.1:${forwarder.grpcPort}`, via: 'forwarder' },
  { name: 'forwarded (WebSocket in)', system: 'plugin-lean', target: () => `ws://127.0.0.1:${forwarder.port}/grpc`, via: 'forwarder' }
]
const clients = await Promise.all(ways.map(async () => await ClientProcess.start({ cpu: null })))

async function run (client: ClientProcess, spec: RunSpec): Promise<{ result: RunResult, forwarderUs: number, upstreamUs: number }> {
  let start: Promise<[ServerSample, ServerSample]> | null = null
  let end: Promise<[ServerSample, ServerSample]> | null = null
  client.onMark = phase => {
    const both = Promise.all([forwarder.sample(), upstream.sample()])
    both.catch(() => {})
    if (phase === 'start') start = both
    else end = both
  }
  const reply = await client.ask({ cmd: 'run', id: client.newId(), spec }, spec.warmupMs + spec.windowMs + 30_000)
  client.onMark = null
  if (start === null || end === null) throw new Error('the client never marked its window')
  const [f0, u0] = await start as [ServerSample, ServerSample]
  const [f1, u1] = await end as [ServerSample, ServerSample]
  return { result: (reply as { result: RunResult }).result, forwarderUs: f1.cpuUs - f0.cpuUs, upstreamUs: u1.cpuUs - u0.cpuUs }
}

const rows: Row[] = []
try {
  // Warm-up: JIT and channels of every way.
  for (const [i, way] of ways.entries()) {
    await run(clients[i]!, { system: way.system, target: way.target(), pattern: 'unary', size: 100, inflight: 64, warmupMs: 300, windowMs: 100, maxOps: 50_000_000 })
  }
  for (let rep = 0; rep < reps; rep++) {
    for (const scenario of scenarios) {
      // The order turns from one repetition to the next.
      const order = ways.map((_, i) => (i + rep) % ways.length)
      for (const i of order) {
        const way = ways[i]!
        const { result, forwarderUs, upstreamUs } = await run(clients[i]!, { system: way.system, target: way.target(), ...scenario, warmupMs, windowMs, maxOps: 50_000_000 })
        const row: Row = {
          scenario: scenario.key,
          way: way.name,
          rate: result.ops / result.seconds,
          forwarderUsPerOp: way.via === 'forwarder' ? forwarderUs / result.ops : null,
          upstreamUsPerOp: upstreamUs / result.ops,
          errors: result.errors
        }
        rows.push(row)
        console.log(`rep ${rep + 1}/${reps} ${scenario.key.padEnd(15)} ${way.name.padEnd(25)} ${Math.round(row.rate).toLocaleString('en-US').padStart(8)} /s  forwarder ${row.forwarderUsPerOp === null ? '   -' : row.forwarderUsPerOp.toFixed(1)} µs/op  upstream ${row.upstreamUsPerOp.toFixed(1)} µs/op${row.errors > 0 ? `  ERRORS ${row.errors}: ${result.firstError ?? ''}` : ''}`)
      }
    }
  }
} finally {
  await Promise.all(clients.map(async c => { await c.stop() }))
  await forwarder.stop()
  await upstream.stop()
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2 }
console.log(`\n| scenario | way | calls/s (median of ${reps}) | vs direct | forwarder CPU µs/call | upstream CPU µs/call |\n|---|---|---:|---:|---:|---:|`)
for (const scenario of scenarios) {
  const direct = median(rows.filter(r => r.scenario === scenario.key && r.way === ways[0]!.name).map(r => r.rate))
  for (const way of ways) {
    const mine = rows.filter(r => r.scenario === scenario.key && r.way === way.name)
    const rate = median(mine.map(r => r.rate))
    const fwd = way.via === 'forwarder' ? median(mine.map(r => r.forwarderUsPerOp!)).toFixed(1) : '-'
    console.log(`| ${scenario.key} | ${way.name} | ${Math.round(rate).toLocaleString('en-US')} | ${(100 * rate / direct).toFixed(0)} % | ${fwd} | ${median(mine.map(r => r.upstreamUsPerOp)).toFixed(1)} |`)
  }
}
if (rows.some(r => r.errors > 0)) process.exitCode = 1
