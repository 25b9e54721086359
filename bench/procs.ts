/**
 * Child processes of the orchestrator: bundles built with esbuild (so every
 * server starts as plain `node file.mjs`, with no TypeScript loader in its
 * start-up time), spawned with IPC, optionally pinned to a CPU, with a raised
 * open-file limit when the soft one is too low.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ClientCommand, ClientReply, ServerCommand, ServerReply, ServerSample } from './common.js'

export const BENCH_DIR = dirname(fileURLToPath(import.meta.url))
export const BUILD_DIR = join(BENCH_DIR, '.build')
export const SERVER_KINDS = ['node', 'bare', 'plugin', 'grpc', 'ws', 'connect', 'forward', 'http-plugin', 'http-connect'] as const
export type ServerKind = (typeof SERVER_KINDS)[number]

/** Bundles bench/servers/*.ts, bench/client.ts and bench/fanout-procs.ts into bench/.build (node_modules stay external). */
export async function buildBundles (): Promise<void> {
  const esbuild = await import('esbuild')
  mkdirSync(BUILD_DIR, { recursive: true })
  writeFileSync(join(BUILD_DIR, '.gitignore'), '*\n')
  await esbuild.build({
    entryPoints: [...SERVER_KINDS.map(k => join(BENCH_DIR, 'servers', `${k}.ts`)), join(BENCH_DIR, 'client.ts'), join(BENCH_DIR, 'fanout-procs.ts')],
    outdir: BUILD_DIR,
    outExtension: { '.js': '.mjs' },
    entryNames: '[name]',
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'linked',
    logLevel: 'warning'
  })
}

function softNoFileLimit (): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find(l => l.startsWith('Max open files'))
    const soft = line?.split(/\s{2,}/)[1]
    return soft === undefined || soft === 'unlimited' ? Infinity : Number(soft)
  } catch {
    return Infinity
  }
}

export interface SpawnOptions {
  /** CPU to pin to with taskset, or null. */
  cpu: number | null
  nodeArgs?: string[]
  env?: Record<string, string>
  /** Open files needed; the limit is raised (up to the hard limit) when the soft one is lower. */
  noFile?: number
}

function spawnNode (file: string, args: string[], options: SpawnOptions): ChildProcess {
  let command = process.execPath
  let argv = [...(options.nodeArgs ?? []), file, ...args]
  if (options.cpu !== null) {
    argv = ['-c', String(options.cpu), command, ...argv]
    command = 'taskset'
  }
  if (options.noFile !== undefined && softNoFileLimit() < options.noFile) {
    argv = ['-c', `ulimit -n ${options.noFile} 2>/dev/null || ulimit -n hard; exec "$@"`, 'bench', command, ...argv]
    command = 'bash'
  }
  return spawn(command, argv, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, BENCH_PROTO: resolve(BENCH_DIR, 'echo.proto'), ...options.env }
  })
}

function exited (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise(resolve => child.once('exit', () => { resolve() }))
}

async function withTimeout<T> (p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`${what}: no answer in ${ms} ms`)) }, ms) })])
  } finally {
    clearTimeout(timer)
  }
}

const live = new Set<ChildProcess>()

/** Kills every child still running (on exit or on a fatal error). */
export function killAll (): void {
  for (const child of live) child.kill('SIGKILL')
  live.clear()
}

export class ServerProcess {
  port = 0
  grpcPort = 0
  /** ms from spawn() to the 'ready' message. */
  spawnToReadyMs = 0
  /** performance.now() in the server when it was listening. */
  readyMs = 0
  private nextId = 1
  private readonly pending = new Map<number, (s: ServerSample) => void>()

  private constructor (readonly kind: ServerKind, readonly child: ChildProcess) {}

  static async start (kind: ServerKind, options: SpawnOptions): Promise<ServerProcess> {
    const started = performance.now()
    const child = spawnNode(join(BUILD_DIR, `${kind}.mjs`), [], options)
    live.add(child)
    child.once('exit', () => { live.delete(child) })
    const server = new ServerProcess(kind, child)
    const ready = new Promise<void>((resolve, reject) => {
      child.on('message', (msg: ServerReply) => {
        if (msg.type === 'ready') {
          server.spawnToReadyMs = performance.now() - started
          server.readyMs = msg.readyMs
          server.port = msg.port
          server.grpcPort = msg.grpcPort ?? 0
          resolve()
        } else {
          server.pending.get(msg.id)?.(msg.sample)
          server.pending.delete(msg.id)
        }
      })
      child.once('exit', code => { reject(new Error(`server ${kind} exited with ${String(code)} before it was ready`)) })
    })
    await withTimeout(ready, 30_000, `server ${kind} start`)
    return server
  }

  private ask (cmd: 'sample' | 'gc'): Promise<ServerSample> {
    const id = this.nextId++
    const answer = new Promise<ServerSample>(resolve => { this.pending.set(id, resolve) })
    this.child.send({ cmd, id } satisfies ServerCommand)
    return withTimeout(answer, 30_000, `server ${this.kind} ${cmd}`)
  }

  /** Moves the running process, every thread, to `cpu` (taskset -a -p). */
  pin (cpu: number): void {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(this.child.pid)], { stdio: 'ignore' })
  }

  sample (): Promise<ServerSample> { return this.ask('sample') }
  gcAndSample (): Promise<ServerSample> { return this.ask('gc') }

  async stop (): Promise<void> {
    if (this.child.connected) this.child.send({ cmd: 'exit' } satisfies ServerCommand)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await exited(this.child)
    clearTimeout(timer)
  }
}

export class ClientProcess {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (r: ClientReply) => void, reject: (e: Error) => void }>()
  /** Called on the client's window marks. */
  onMark: ((phase: 'start' | 'end') => void) | null = null

  private constructor (readonly child: ChildProcess) {
    child.on('message', (msg: ClientReply) => {
      if (msg.type === 'mark') { this.onMark?.(msg.phase); return }
      if ('id' in msg) {
        this.pending.get(msg.id)?.resolve(msg)
        this.pending.delete(msg.id)
      }
    })
    child.once('exit', code => {
      for (const p of this.pending.values()) p.reject(new Error(`client exited with ${String(code)}`))
      this.pending.clear()
    })
  }

  static async start (options: SpawnOptions): Promise<ClientProcess> {
    const child = spawnNode(join(BUILD_DIR, 'client.mjs'), [], options)
    live.add(child)
    child.once('exit', () => { live.delete(child) })
    await withTimeout(new Promise<void>((resolve, reject) => {
      child.on('message', (msg: ClientReply) => { if (msg.type === 'ready') resolve() })
      child.once('exit', code => { reject(new Error(`client exited with ${String(code)}`)) })
    }), 30_000, 'client start')
    return new ClientProcess(child)
  }

  async ask (command: ClientCommand & { id: number }, timeoutMs: number): Promise<ClientReply> {
    const answer = new Promise<ClientReply>((resolve, reject) => { this.pending.set(command.id, { resolve, reject }) })
    this.child.send(command)
    const reply = await withTimeout(answer, timeoutMs, `client ${command.cmd}`)
    if (reply.type === 'error') throw new Error(reply.message)
    return reply
  }

  newId (): number { return this.nextId++ }

  async stop (): Promise<void> {
    if (this.child.connected) this.child.send({ cmd: 'exit' } satisfies ClientCommand)
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await exited(this.child)
    clearTimeout(timer)
  }
}

// --- the machine --------------------------------------------------------------

export interface CpuTimes { busy: number, idle: number, steal: number }

/**
 * Per-CPU jiffies from /proc/stat: busy (user+nice+system), idle (+iowait,
 * +irq and softirq: loopback traffic's softirq time belongs to no process,
 * and most of it is this benchmark's own), steal.
 */
export function cpuTimes (): CpuTimes[] {
  try {
    return readFileSync('/proc/stat', 'utf8').split('\n').filter(l => /^cpu\d/.test(l)).map(l => {
      const v = l.trim().split(/\s+/).slice(1).map(Number)
      return { busy: v[0]! + v[1]! + v[2]!, idle: v[3]! + v[4]! + v[5]! + v[6]!, steal: v[7] ?? 0 }
    })
  } catch {
    return []
  }
}

/** Each CPU's busy, idle and steal shares (%) between two readings. */
export function cpuShares (a: CpuTimes[], b: CpuTimes[]): CpuTimes[] {
  return b.map((e, i) => {
    const s = a[i]
    if (s === undefined) return { busy: NaN, idle: NaN, steal: NaN }
    const busy = e.busy - s.busy
    const idle = e.idle - s.idle
    const steal = e.steal - s.steal
    const total = Math.max(1, busy + idle + steal)
    return { busy: 100 * busy / total, idle: 100 * idle / total, steal: 100 * steal / total }
  })
}

/** taskset (util-linux) is there to pin processes with. */
export function hasTaskset (): boolean {
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** Versions of installed packages, read from node_modules (not every package exports its package.json). */
export function packageVersions (names: string[]): Record<string, string> {
  const version = (name: string): string => {
    try { return (JSON.parse(readFileSync(join(BENCH_DIR, '..', 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version } catch { return 'not installed' }
  }
  return Object.fromEntries(names.map(n => [n, version(n)]))
}

/** CPU model and count, memory, OS and Node: what every report states about the machine. */
export function machineBasics (): { cpuModel: string, cores: number, memoryGiB: number, os: string, node: string } {
  const cpus = os.cpus()
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()}`,
    node: process.version
  }
}
