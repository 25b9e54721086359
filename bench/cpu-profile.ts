/**
 * Reads a `node --cpu-prof` profile of a bench process: self time by
 * function and by package, with the lines of an esbuild bundle mapped back
 * to the module they came from. Shared by bench/profile.ts (the server) and
 * bench/clients.ts (a load client).
 */
import { readFileSync } from 'node:fs'
import { relative, resolve } from 'node:path'
import { BENCH_DIR, BUILD_DIR } from './procs.js'

interface ProfileNode {
  id: number
  callFrame: { functionName: string, url: string, lineNumber: number, columnNumber: number }
  children?: number[]
}
interface CpuProfile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number, endTime: number }

export interface ProfileSummary {
  /** µs sampled, and µs of it not idle. */
  totalUs: number
  busyUs: number
  /** Self µs by "function — where", and by package or module, largest first. */
  functions: Array<[string, number]>
  packages: Array<[string, number]>
}

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

/** Summarizes the profile in `file`, taken of a process running `bundle` (a file of bench/.build). */
export function summarizeProfile (file: string, bundle: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const bundleModule = moduleMap(bundle)
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
  const sorted = (m: Map<string, number>): Array<[string, number]> => [...m].sort((x, y) => y[1] - x[1])
  return { totalUs: total, busyUs: total - idle, functions: sorted(fn), packages: sorted(pkg) }
}

/** The two tables as markdown: packages (top 20) and functions (top `top`). */
export function profileTables (s: ProfileSummary, top = 25): string[] {
  const lines: string[] = []
  lines.push('### By package or module', '', '| where | self ms | % of busy |', '|---|---:|---:|')
  for (const [k, us] of s.packages.slice(0, 20)) lines.push(`| ${k} | ${(us / 1000).toFixed(0)} | ${(100 * us / s.busyUs).toFixed(1)} |`)
  lines.push('', `### Top ${top} functions by self time`, '', '| function — where | self ms | % of busy |', '|---|---:|---:|')
  for (const [k, us] of s.functions.slice(0, top)) lines.push(`| ${k.replace(/\|/g, '\\|')} | ${(us / 1000).toFixed(0)} | ${(100 * us / s.busyUs).toFixed(1)} |`)
  return lines
}
