/**
 * Profiles the plugin's server under load: `node --cpu-prof` on the server
 * process while a client keeps 64 unary calls of 100 B in flight (or the
 * given pattern: `--pattern bidi --inflight 1000` is the bench's pipelined
 * bidi), then the functions with the most self time, and the same by module.
 *
 *   npx tsx bench/profile.ts [--client plugin-lean|plugin-grpcjs] [--pattern unary|bidi|server-stream] [--seconds 6] [--size 100] [--inflight 64] [--out docs/bench-profile.md]
 *
 * `--forward`: profiles the forwarder instead (bench/servers/forward.ts,
 * forwarding to a grpc-js upstream in another process), called over its
 * WebSocket route (`--client forward-lean`, the default then) or its
 * grpcServer (`--client forward-grpcjs`).
 */
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { flag, option, type ClientSystem, type Pattern, type RunResult, type RunSpec } from './common.js'
import { profileTables, summarizeProfile } from './cpu-profile.js'
import { BUILD_DIR, ClientProcess, ServerProcess, buildBundles, killAll } from './procs.js'

const forward = flag('--forward')
const system = (option('--client') ?? (forward ? 'forward-lean' : 'plugin-lean')) as ClientSystem
const seconds = Number(option('--seconds') ?? '6')
const pattern = (option('--pattern') ?? 'unary') as Pattern
const size = Number(option('--size') ?? '100')
const inflight = Number(option('--inflight') ?? '64')
const out = option('--out') ?? ''
const TOP = 25

async function main (): Promise<void> {
  await buildBundles()
  const dir = mkdtempSync(join(os.tmpdir(), 'grpcws-prof-'))
  const upstream = forward ? await ServerProcess.start('grpc', { cpu: null }) : null
  const server = upstream === null
    ? await ServerProcess.start('plugin', { cpu: 0, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir] })
    : await ServerProcess.start('forward', { cpu: 0, nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir], env: { UPSTREAM_TARGET: `127.0.0.1:${upstream.port}` } })
  const client = await ClientProcess.start({ cpu: 1 })
  const target = system === 'forward-grpcjs' ? `127.0.0.1:${server.grpcPort}` : `ws://127.0.0.1:${server.port}/grpc`
  try {
    const warm: RunSpec = { system, target, pattern, size, inflight, warmupMs: 1500, windowMs: 50, maxOps: 50_000_000 }
    await client.ask({ cmd: 'run', id: client.newId(), spec: warm }, 60_000)
    const spec: RunSpec = { ...warm, warmupMs: 100, windowMs: seconds * 1000 }
    let a = 0
    let b = 0
    client.onMark = phase => { void server.sample().then(s => { if (phase === 'start') a = s.cpuUs; else b = s.cpuUs }) }
    const reply = await client.ask({ cmd: 'run', id: client.newId(), spec }, seconds * 1000 + 60_000) as { result: RunResult }
    await new Promise(resolve => setTimeout(resolve, 100))
    const r = reply.result
    console.log(`load: ${system}, ${pattern} ${size} B, ${inflight} in flight: ${Math.round(r.ops / r.seconds).toLocaleString('en-US')} ${pattern === 'unary' ? 'calls' : 'msgs'}/s, server ${((b - a) / r.ops).toFixed(1)} µs/${pattern === 'unary' ? 'call' : 'msg'}, p50 ${r.p50Ms?.toFixed(2) ?? '?'} ms p99 ${r.p99Ms?.toFixed(2) ?? '?'} ms, ${r.errors} errors`)
  } finally {
    await client.stop()
    await server.stop()
    await upstream?.stop()
  }
  const file = readdirSync(dir).find(f => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`no profile written in ${dir}`)
  const summary = summarizeProfile(join(dir, file), join(BUILD_DIR, forward ? 'forward.mjs' : 'plugin.mjs'))
  const busy = summary.busyUs
  const total = summary.totalUs
  const lines: string[] = []
  lines.push(`# Server profile: fastify-grpc-ws${forward ? ' forwarding to a grpc-js upstream' : ''} under ${pattern} load (${system.endsWith('lean') ? 'lean client' : 'grpc-js client'}, ${size} B, ${inflight} in flight)`, '')
  lines.push(`\`node --cpu-prof\` on the server process (pinned to CPU 0; client on CPU 1), ${seconds} s of load after 1.5 s of warm-up; the profile covers the whole process life, start-up included. Busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms sampled (${(100 * busy / total).toFixed(0)} %). Percentages are of busy time. Bundle lines are mapped back to their source module (\`lib/...\`); \`bench/profile.ts\` regenerates this file.`, '')
  lines.push(...profileTables(summary, TOP).map(l => l.replace(/^### /, '## ')))
  lines.push('')
  const text = lines.join('\n')
  console.log(text)
  console.log(`profile: ${join(dir, file)}`)
  if (out !== '') writeFileSync(out, text)
}

main().then(() => { process.exit(0) }, (err: unknown) => {
  console.error(err)
  killAll()
  process.exit(1)
})
