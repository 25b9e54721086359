/**
 * A real redis-server for the tests: Debian's, on a unix socket in a fresh
 * directory (`--port 0`: no TCP, so no port to race for), nothing persisted.
 * Fails loudly, with the install command, when redis-server is missing.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const REDIS_MISSING = 'redis-server is not installed: apt-get install -y redis-server'

export function assertRedisInstalled (): void {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (probe.error !== undefined || probe.status !== 0) throw new Error(REDIS_MISSING)
}

export class RedisServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'grpcws-redis-'))
  readonly socket = join(this.dir, 'redis.sock')
  private child: ChildProcess | null = null

  async start (): Promise<void> {
    assertRedisInstalled()
    const child = spawn('redis-server', ['--port', '0', '--unixsocket', this.socket, '--unixsocketperm', '700',
      '--save', '', '--appendonly', 'no', '--dir', this.dir], { stdio: ['ignore', 'pipe', 'pipe'] })
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
