/**
 * A real redis-server for the tests: Debian's, on a unix socket in a fresh
 * directory (`--port 0`: no TCP, so no port to race for), nothing persisted.
 * Or, with `{ tcp: true }` (the fan-out benchmark), on a random loopback
 * port instead (found free, then taken; tried again if lost meanwhile).
 * Fails loudly, with the install command, when redis-server is missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const REDIS_MISSING = 'redis-server is not installed: apt-get install -y redis-server'

export function assertRedisInstalled (): void {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined || probe.status !== 0) throw new Error(REDIS_MISSING)
}

async function freePort (): Promise<number> {
  const probe = createServer()
  probe.listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as { port: number }
  probe.close()
  await once(probe, 'close')
  return port
}

export class RedisServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'grpcws-redis-'))
  readonly socket = join(this.dir, 'redis.sock')
  /** The TCP port with `{ tcp: true }` (0 until started). */
  port = 0
  private child: ChildProcess | null = null

  constructor (private readonly options: { tcp?: boolean } = {}) {}

  /** redis://127.0.0.1:<port> with `{ tcp: true }`. */
  get url (): string { return `redis://127.0.0.1:${this.port}` }

  /** The redis-server process id, while it runs. */
  get pid (): number | undefined { return this.child?.pid }

  async start (): Promise<void> {
    assertRedisInstalled()
    if (this.options.tcp !== true) return await this.spawn(['--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700'])
    for (let attempt = 1; ; attempt++) {
      this.port = await freePort()
      try {
        return await this.spawn(['--port', String(this.port), '--bind', '127.0.0.1'])
      } catch (err) {
        // Another process took the port between the probe and redis-server's bind.
        if (attempt >= 5 || !/in use/i.test(String(err))) throw err
      }
    }
  }

  private async spawn (listen: string[]): Promise<void> {
    const child = spawn('redis-server', [...listen, '--save', '', '--appendonly', 'no', '--dir', this.dir], { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    let out = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error(`redis-server did not start: ${out}`)) }, 10000)
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        // On a unix socket alone: "The server is now ready to accept connections at <sock>"
        if (/ready to accept connections/i.test(out)) { clearTimeout(timer); resolve() }
      })
      child.once('exit', code => { clearTimeout(timer); reject(new Error(`redis-server exited (${String(code)}): ${out}`)) })
    })
    child.stdout!.resume()
    child.stderr!.resume()
  }

  /** Stops it (SIGTERM; it removes its socket). */
  async stop (): Promise<void> {
    const child = this.child
    this.child = null
    if (child === null || child.exitCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    await exited
  }

  async restart (): Promise<void> {
    await this.stop()
    await this.start()
  }

  async close (): Promise<void> {
    await this.stop()
    rmSync(this.dir, { recursive: true, force: true })
  }
}
