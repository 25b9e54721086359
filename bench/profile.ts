/**
 * Profiles the plugin's server under unary load: `node --cpu-prof` on the
 * server process while a client keeps 64 calls of 100 B in flight, then the
 * functions with the most self time, and the same by module.
 *
 *   npx tsx bench/profile.ts [--client plugin-lean|plugin-grpcjs] [--seconds 6] [--size 100] [--inflight 64] [--out docs/bench-profile.md]
 *
 * `--forward`: profiles the forwarder instead (bench/servers/forward.ts,
 * forwarding to a grpc-js upstream in another process), called over its
 * WebSocket route (`--client forward-lean`, the default then) or its
 * grpcServer (`--client forward-grpcjs`).
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { join, relative, resolve } from 'node:path'
import type { ClientSystem, RunResult, RunSpec } from './common.js'
import { BENCH_DIR, BUILD_DIR, ClientProcess, ServerProcess, buildBundles, killAll } from './procs.js'

const argv = process.argv.slice(2)
const option = (name: string, fallback: string): string => {
  const i = argv.indexOf(name)
  return i === -1 ? fallback : argv[i + 1]!
}
const forward = argv.includes('--forward')
const system = option('--client', forward ? 'forward-lean' : 'plugin-lean') as ClientSystem
const seconds = Number(option('--seconds', '6'))
const size = Number(option('--size', '100'))
const inflight = Number(option('--inflight', '64'))
const out = option('--out', '')
const TOP = 25

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number, columnNumber: number }
  children?: number[]
}
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

/** The module an esbuild bundle line came from: esbuild marks each with a `// path` comment. */
function moduleMap (bundle: string): (line: number) => string {
  const lines = readFileSync(bundle, 'utf8').split('\n')
  const starts: Array<[number, string]> = []
  lines.forEach((l, i) => {
    const m = /^\/\/ (\S+\.(?:ts|js|mjs))$/.exec(l)
    if (m !== null) starts.push([i, m[1]!])
  })
  return line => {
    let found = 'bench/.build'
    for (const [start, name] of starts) {
      if (start > line) break
      found = name
    }
    return found
  }
}

function where (frame: ProfileNode['callFrame'], bundleModule: (line: number) => string): string {
  const url = frame.url
  if (url === '') return '(native/V8)'
  if (url.startsWith('node:')) return url
  const path = url.replace(/^file:\/\//, '')
  if (path.startsWith(BUILD_DIR)) return bundleModule(frame.lineNumber)
  const nm = path.lastIndexOf('node_modules/')
  if (nm !== -1) return path.slice(nm + 'node_modules/'.length)
  return relative(resolve(BENCH_DIR, '..'), path)
}

function packageOf (place: string): string {
  if (place.startsWith('node:')) return 'node (core JS)'
  if (place.startsWith('(')) return place
  if (place.startsWith('lib/') || place === 'index.ts') return `fastify-grpc-ws ${place.split('/').slice(0, 2).join('/')}`
  if (place.startsWith('bench/')) return 'bench harness'
  const parts = place.split('/')
  return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!
}

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
    const warm: RunSpec = { system, target, pattern: 'unary', size, inflight, warmupMs: 1500, windowMs: 50, maxOps: 50_000_000 }
    await client.ask({ cmd: 'run', id: client.newId(), spec: warm }, 60_000)
    const spec: RunSpec = { ...warm, warmupMs: 100, windowMs: seconds * 1000 }
    let a = 0
    let b = 0
    client.onMark = phase => { void server.sample().then(s => { if (phase === 'start') a = s.cpuUs; else b = s.cpuUs }) }
    const reply = await client.ask({ cmd: 'run', id: client.newId(), spec }, seconds * 1000 + 60_000) as { result: RunResult }
    await new Promise(resolve => setTimeout(resolve, 100))
    const r = reply.result
    console.log(`load: ${system}, unary ${size} B, ${inflight} in flight: ${Math.round(r.ops / r.seconds).toLocaleString('en-US')} calls/s, server ${((b - a) / r.ops).toFixed(1)} µs/call, p50 ${r.p50Ms?.toFixed(2) ?? '?'} ms p99 ${r.p99Ms?.toFixed(2) ?? '?'} ms, ${r.errors} errors`)
  } finally {
    await client.stop()
    await server.stop()
    await upstream?.stop()
  }
  const file = readdirSync(dir).find(f => f.endsWith('.cpuprofile'))
  if (file === undefined) throw new Error(`no profile written in ${dir}`)
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile
  const bundleModule = moduleMap(join(BUILD_DIR, forward ? 'forward.mjs' : 'plugin.mjs'))

  const byId = new Map(profile.nodes.map(n => [n.id, n]))
  const self = new Map<number, number>()
  profile.samples.forEach((id, i) => { self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)) })
  const total = [...self.values()].reduce((x, y) => x + y, 0)
  let idle = 0
  const fn = new Map<string, number>()
  const pkg = new Map<string, number>()
  for (const [id, us] of self) {
    const node = byId.get(id)!
    const name = node.callFrame.functionName === '' ? '(anonymous)' : node.callFrame.functionName
    if (name === '(idle)') { idle += us; continue }
    const place = where(node.callFrame, bundleModule)
    const key = `${name} — ${place}${node.callFrame.url.startsWith('node:') || place.startsWith('(') ? '' : `:${node.callFrame.lineNumber + 1}`}`
    fn.set(key, (fn.get(key) ?? 0) + us)
    const p = name === '(garbage collector)' ? '(garbage collector)' : name === '(program)' ? '(program: native, outside JS)' : packageOf(place)
    pkg.set(p, (pkg.get(p) ?? 0) + us)
  }
  const busy = total - idle
  const lines: string[] = []
  lines.push(`# Server profile: fastify-grpc-ws${forward ? ' forwarding to a grpc-js upstream' : ''} under unary load (${system.endsWith('lean') ? 'lean client' : 'grpc-js client'}, ${size} B, ${inflight} in flight)`, '')
  lines.push(`\`node --cpu-prof\` on the server process (pinned to CPU 0; client on CPU 1), ${seconds} s of load after 1.5 s of warm-up; the profile covers the whole process life, start-up included. Busy ${(busy / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms sampled (${(100 * busy / total).toFixed(0)} %). Percentages are of busy time. Bundle lines are mapped back to their source module (\`lib/...\`); \`bench/profile.ts\` regenerates this file.`, '')
  lines.push('## By package or module', '', '| where | self ms | % of busy |', '|---|---:|---:|')
  for (const [k, us] of [...pkg].sort((x, y) => y[1] - x[1]).slice(0, 20)) lines.push(`| ${k} | ${(us / 1000).toFixed(0)} | ${(100 * us / busy).toFixed(1)} |`)
  lines.push('', `## Top ${TOP} functions by self time`, '', '| function — where | self ms | % of busy |', '|---|---:|---:|')
  for (const [k, us] of [...fn].sort((x, y) => y[1] - x[1]).slice(0, TOP)) lines.push(`| ${k.replace(/\|/g, '\\|')} | ${(us / 1000).toFixed(0)} | ${(100 * us / busy).toFixed(1)} |`)
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
