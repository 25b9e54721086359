/**
 * What every benchmark server does besides serving: tells the orchestrator
 * it listens (with the time since process start), and answers its CPU and
 * memory samples over IPC.
 */
import type { ServerCommand, ServerReply, ServerSample } from '../common.js'

function send (reply: ServerReply): void {
  // Without the orchestrator (run by hand), say it on stdout.
  if (process.send === undefined) console.log(JSON.stringify(reply))
  else process.send(reply)
}

export interface Started {
  port: number
  grpcPort?: number
  connections?: () => number
}

export function serve (start: () => Promise<Started>): void {
  let connections: (() => number) | undefined
  const sample = (): ServerSample => {
    const cpu = process.cpuUsage()
    const mem = process.memoryUsage()
    return {
      cpuUs: cpu.user + cpu.system,
      rss: mem.rss,
      heapUsed: mem.heapUsed,
      external: mem.external,
      arrayBuffers: mem.arrayBuffers,
      connections: connections === undefined ? null : connections()
    }
  }
  process.on('message', (msg: ServerCommand) => {
    switch (msg.cmd) {
      case 'sample': send({ type: 'sample', id: msg.id, sample: sample() }); return
      case 'gc': {
        const gc = (globalThis as { gc?: () => void }).gc
        if (gc !== undefined) { gc(); gc() }
        send({ type: 'sample', id: msg.id, sample: sample() })
        return
      }
      case 'exit': process.exit(0)
    }
  })
  // The orchestrator going away ends the server too.
  process.on('disconnect', () => process.exit(0))
  start().then(started => {
    connections = started.connections
    const ready: ServerReply = { type: 'ready', port: started.port, readyMs: performance.now() }
    if (started.grpcPort !== undefined) ready.grpcPort = started.grpcPort
    send(ready)
  }, (err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
