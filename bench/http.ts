/**
 * `npm run bench:http`: unary calls of 100 B at 64 in flight over HTTP/1.1,
 * gRPC-Web and Connect (binary), against the plugin's HTTP routes and
 * against connect-fastify serving the same Echo service, in the same run.
 * Each server runs in its own process (pinned to CPU 0 when taskset
 * exists); the client is connect-node's transports in this process (CPU
 * 1). Reports calls/s and server CPU µs per call, per repetition, and the
 * median ratio plugin / connect-fastify taken within each repetition.
 *
 *   npm run bench:http -- [--seconds 3] [--reps 3]
 */
import { createClient } from '@connectrpc/connect'
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { echoService } from './connect-service.js'
import { median } from './common.js'
import type { ServerReply, ServerSample } from './common.js'

const arg = (name: string, fallback: number): number => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}
const SECONDS = arg('seconds', 3)
const REPS = arg('reps', 3)
const IN_FLIGHT = 64
const taskset = spawnSync('taskset', ['-c', '1', 'true']).status === 0

class Server {
  port = 0
  private next = 1
  private readonly pending = new Map<number, (s: ServerSample) => void>()
  private constructor (readonly child: ChildProcess) {}
  static async start (file: string): Promise<Server> {
    const script = fileURLToPath(new URL(`servers/${file}`, import.meta.url))
    const argv = ['--import', 'tsx', script]
    const child = taskset ? spawn('taskset', ['-c', '0', process.execPath, ...argv], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }) : spawn(process.execPath, argv, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    const server = new Server(child)
    await new Promise<void>((resolve, reject) => {
      child.on('message', (msg: ServerReply) => {
        if (msg.type === 'ready') { server.port = msg.port; resolve() } else { server.pending.get(msg.id)?.(msg.sample); server.pending.delete(msg.id) }
      })
      child.once('exit', code => { reject(new Error(`${file} exited with ${String(code)}`)) })
    })
    return server
  }

  async cpuUs (): Promise<number> {
    const id = this.next++
    const answer = new Promise<ServerSample>(resolve => { this.pending.set(id, resolve) })
    this.child.send({ cmd: 'sample', id })
    return (await answer).cpuUs
  }

  stop (): void { this.child.kill() }
}

async function measure (server: Server, protocol: 'grpc-web' | 'connect'): Promise<{ callsPerSec: number, cpuUsPerCall: number }> {
  const baseUrl = `http://127.0.0.1:${server.port}/grpc`
  const transport = protocol === 'grpc-web'
    ? createGrpcWebTransport({ baseUrl, httpVersion: '1.1' })
    : createConnectTransport({ baseUrl, httpVersion: '1.1', useBinaryFormat: true })
  const client: any = createClient(echoService(), transport)
  const request = { message: 'x', payload: new Uint8Array(100).fill(7) }
  const run = async (ms: number): Promise<number> => {
    const until = performance.now() + ms
    let calls = 0
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < until) {
        const reply = await client.echo(request)
        if (reply.payload.length !== 100) throw new Error('wrong reply')
        calls++
      }
    }))
    return calls
  }
  await run(1000) // warm-up
  const cpu0 = await server.cpuUs()
  const t0 = performance.now()
  const calls = await run(SECONDS * 1000)
  const elapsed = (performance.now() - t0) / 1000
  const cpu1 = await server.cpuUs()
  return { callsPerSec: calls / elapsed, cpuUsPerCall: (cpu1 - cpu0) / calls }
}

const plugin = await Server.start('http-plugin.ts')
const connect = await Server.start('http-connect.ts')
const rows: string[] = []
const ratios: Record<string, { rate: number[], cpu: number[] }> = { 'grpc-web': { rate: [], cpu: [] }, connect: { rate: [], cpu: [] } }
try {
  for (let rep = 0; rep < REPS; rep++) {
    for (const protocol of ['grpc-web', 'connect'] as const) {
      // Alternating which goes first.
      const order = rep % 2 === 0 ? [plugin, connect] : [connect, plugin]
      const results = new Map<Server, { callsPerSec: number, cpuUsPerCall: number }>()
      for (const server of order) results.set(server, await measure(server, protocol))
      const p = results.get(plugin)!
      const c = results.get(connect)!
      ratios[protocol]!.rate.push(p.callsPerSec / c.callsPerSec)
      ratios[protocol]!.cpu.push(p.cpuUsPerCall / c.cpuUsPerCall)
      rows.push(`| ${rep + 1} | ${protocol} | ${Math.round(p.callsPerSec)} | ${p.cpuUsPerCall.toFixed(1)} | ${Math.round(c.callsPerSec)} | ${c.cpuUsPerCall.toFixed(1)} |`)
      console.error(rows.at(-1))
    }
  }
} finally {
  plugin.stop()
  connect.stop()
}
console.log(`unary 100 B, ${IN_FLIGHT} in flight, HTTP/1.1, ${SECONDS} s a cell, ${REPS} reps${taskset ? ', server on CPU 0' : ''}\n`)
console.log('| rep | protocol | plugin calls/s | plugin server µs/call | connect-fastify calls/s | connect-fastify server µs/call |')
console.log('|---|---|---|---|---|---|')
for (const row of rows) console.log(row)
console.log('')
for (const [protocol, r] of Object.entries(ratios)) {
  console.log(`${protocol}: plugin / connect-fastify, median of reps: calls/s ×${median(r.rate).toFixed(2)}, server CPU per call ×${median(r.cpu).toFixed(2)}`)
}
