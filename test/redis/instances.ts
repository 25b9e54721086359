/** Starts and stops instance processes: instance.ts (the fan-out app), or another script given to start(). */
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const CHILD = fileURLToPath(new URL('./instance.ts', import.meta.url))

export class Instance {
  private constructor (readonly child: ChildProcess, readonly url: string, readonly grpcAddress: string) {}

  static async start (redisSocket: string, script = CHILD): Promise<Instance> {
    // The parent's own TypeScript loader (tap's), as test/helpers/server-process.ts.
    const child = fork(script, [redisSocket], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const [message] = await Promise.race([
      once(child, 'message') as Promise<[{ url: string, grpcAddress: string }]>,
      once(child, 'exit').then(([code]) => { throw new Error(`instance exited (${String(code)}) before it was ready`) })
    ])
    return new Instance(child, message.url, message.grpcAddress)
  }

  async stats (topic: string): Promise<any> {
    this.child.send({ type: 'stats', topic })
    const [message] = await once(this.child, 'message') as [{ stats: unknown }]
    return message.stats
  }

  /** Sends `{ type }` and resolves with the child's next message. */
  async ask (type: string): Promise<any> {
    this.child.send({ type })
    const [message] = await once(this.child, 'message')
    return message
  }

  /** Closes it cleanly. */
  async stop (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = once(this.child, 'exit')
    this.child.disconnect()
    await exited
  }

  /** Kills it at once (SIGKILL): no goodbye to clients or Redis. */
  async kill (): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return
    const exited = once(this.child, 'exit')
    this.child.kill('SIGKILL')
    await exited
  }
}
