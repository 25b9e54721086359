/**
 * Starts server-child.ts in a separate Node process (tsx loader,
 * `--expose-gc`), so that what the server holds under an attack is measured
 * in a heap of its own: heap used + external (ArrayBuffer contents included)
 * after two full collections, against a baseline taken before.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { MemorySample } from './server-child.js'

export type { MemorySample }

const CHILD = fileURLToPath(new URL('./server-child.ts', import.meta.url))

/** What the server holds in a sample: heap used plus external memory, bytes. */
export const held = (s: MemorySample): number => s.heapUsed + s.external

export class ServerProcess {
  private nextId = 0
  private readonly pending = new Map<number, (sample: MemorySample) => void>()
  private baselineSample: MemorySample | undefined
  exitCode: number | null = null

  private constructor (
    private readonly child: ChildProcess,
    /** ws://127.0.0.1:<port> (no path) */
    readonly origin: string,
    /** ws://127.0.0.1:<port>/grpc */
    readonly wsUrl: string,
    /** 127.0.0.1:<port> of the grpc-js Server */
    readonly http2Address: string,
    readonly options: Record<string, unknown>
  ) {
    child.on('message', (message: { type: string, id: number, sample: MemorySample }) => {
      if (message.type !== 'measured') return
      this.pending.get(message.id)?.(message.sample)
      this.pending.delete(message.id)
    })
    child.on('exit', code => { this.exitCode = code ?? -1 })
  }

  /**
   * Spawns the child with `options` for the plugin and waits (≤ `ms`) for its
   * ports; `nodeFlags` are added to its Node flags (e.g. `--cpu-prof`).
   */
  static async start (options: Record<string, unknown> = {}, ms = 30000, nodeFlags: string[] = []): Promise<ServerProcess> {
    const child = fork(CHILD, [], {
      // The parent's own TypeScript loader (tap's under tap, tsx under the
      // bench): with tsx under tap, the two loaders' compiled offsets differ
      // and the child's coverage would corrupt the report of shared files.
      execArgv: [...process.execArgv, '--expose-gc', ...nodeFlags],
      env: { ...process.env, ATTACK_SERVER_OPTIONS: JSON.stringify(options) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    const ports = await new Promise<{ wsPort: number, http2Port: number }>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill(); reject(new Error(`the server process did not start within ${ms} ms`)) }, ms)
      child.on('message', (message: { type: string, wsPort: number, http2Port: number }) => {
        if (message.type === 'ready') { clearTimeout(timer); resolve(message) }
      })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`the server process exited with ${String(code)} before it was ready`)) })
    })
    const origin = `ws://127.0.0.1:${ports.wsPort}`
    return new ServerProcess(child, origin, `${origin}/grpc`, `127.0.0.1:${ports.http2Port}`, options)
  }

  /** Memory and CPU of the server after two full collections (`collect: false`: without). */
  async measure (ms = 20000, collect = true): Promise<MemorySample> {
    if (this.exitCode !== null) throw new Error(`the server process has exited (${this.exitCode})`)
    const id = ++this.nextId
    return await new Promise<MemorySample>((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`no memory sample within ${ms} ms`)) }, ms)
      this.pending.set(id, sample => { clearTimeout(timer); resolve(sample) })
      this.child.send({ type: 'measure', id, collect })
    })
  }

  /** Takes (and keeps) the sample later ones are compared with. */
  async baseline (): Promise<MemorySample> {
    this.baselineSample = await this.measure()
    return this.baselineSample
  }

  /** Bytes held above the baseline (heap used + external), taken now. */
  async heldAboveBaseline (): Promise<{ bytes: number, sample: MemorySample }> {
    if (this.baselineSample === undefined) await this.baseline()
    const sample = await this.measure()
    return { bytes: held(sample) - held(this.baselineSample!), sample }
  }

  /**
   * Waits, up to `ms`, until the server is quiet again after an attack: under
   * 20 % of a core over 250 ms, and (when `reference` is given) holding no
   * more than `tolerance` bytes above it. Returns whether it got there.
   */
  async quiet ({ reference, tolerance = 1024 * 1024, ms = 15000 }: { reference?: MemorySample, tolerance?: number, ms?: number } = {}): Promise<boolean> {
    const until = Date.now() + ms
    while (Date.now() < until && this.exitCode === null) {
      const a = await this.measure(ms, false)
      await new Promise(resolve => setTimeout(resolve, 250))
      const b = await this.measure(ms, false)
      const busy = (b.cpuUser + b.cpuSystem - a.cpuUser - a.cpuSystem) / 1000 / 250
      if (busy < 0.2 && (reference === undefined || held(await this.measure()) - held(reference) <= tolerance)) return true
    }
    return false
  }

  async close (): Promise<void> {
    if (this.exitCode !== null) return
    const exited = new Promise<void>(resolve => this.child.once('exit', () => { resolve() }))
    this.child.send({ type: 'close' })
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, 5000)
    await exited
    clearTimeout(timer)
  }
}
