/**
 * Starts upstream-child.ts, an upstream grpc-js server in another process,
 * and relays its handler events to `events`.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'

const CHILD = fileURLToPath(new URL('./upstream-child.ts', import.meta.url))

export interface UpstreamProcessOptions {
  /** Serve reflection. Default true. */
  reflection?: boolean
  /** Listen on this port (a restart on the same address). Default: any. */
  port?: number
}

export class UpstreamProcess {
  readonly events = new EventEmitter()
  exited: Promise<void>

  private constructor (private readonly child: ChildProcess, readonly port: number) {
    this.events.setMaxListeners(0)
    child.on('message', (message: { type: string, id: string, payload: unknown }) => {
      if (message.type === 'event') this.events.emit(message.id, message.payload)
    })
    this.exited = new Promise(resolve => { child.once('exit', () => { resolve() }) })
  }

  /** 127.0.0.1:<port> */
  get address (): string { return `127.0.0.1:${this.port}` }

  static async start (options: UpstreamProcessOptions = {}, ms = 30000): Promise<UpstreamProcess> {
    const child = fork(CHILD, [], {
      // The parent's own TypeScript loader (see server-process.ts).
      execArgv: process.execArgv,
      env: { ...process.env, UPSTREAM_REFLECTION: options.reflection === false ? 'off' : 'on', UPSTREAM_PORT: String(options.port ?? 0) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => { child.kill(); reject(new Error(`the upstream process did not start within ${ms} ms`)) }, ms)
      child.on('message', (message: { type: string, port: number }) => {
        if (message.type === 'ready') { clearTimeout(timer); resolve(message.port) }
      })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`the upstream process exited with ${String(code)} before it was ready`)) })
    })
    return new UpstreamProcess(child, port)
  }

  /** Lets a held call (`x-upstream: held`, see upstream-child.ts) read its requests. */
  release (id: string): void {
    this.child.send({ type: 'release', id })
  }

  /** Kills it at once (SIGKILL): its connections drop with no GOAWAY. */
  async kill (): Promise<void> {
    this.child.kill('SIGKILL')
    await this.exited
  }

  async close (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    this.child.send({ type: 'close' })
    const timer = setTimeout(() => { this.child.kill('SIGKILL') }, 5000)
    await this.exited
    clearTimeout(timer)
  }
}
