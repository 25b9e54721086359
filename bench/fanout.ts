/**
 * `npm run bench:fanout`: server CPU per delivery and delivery latency when
 * one 100-byte message is published to N subscribers, one server stream per
 * WebSocket, with several client processes (their CPU is reported: a client
 * near 100 % of its core makes the latency figures the client's, not the
 * server's). Systems, over the same sockets count and bytes:
 * - `topics`: the plugin, each subscriber a server-streaming call subscribed
 *   with app.grpc.topics (serialized once per publish);
 * - `per-call`: the plugin, the handler writing the message object to each
 *   call (serialized once per subscriber: what an app does without topics);
 * - `ws`: a raw `ws` broadcast loop (the floor);
 * - `socketio`: Socket.IO 4 (WebSocket transport only), every socket in one
 *   room, `io.to(room).emit('m', bytes)`.
 * Payload: a u32 sequence number and the publish time (f64 ms), padded to
 * 100 bytes; every subscriber checks its sequence (lost, out of order).
 *
 * Options: --subscribers 2000 --clients 2 --rate 20 --seconds 4 --systems topics,per-call,ws,socketio
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { fork, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import WebSocket, { WebSocketServer } from 'ws'

const protoPath = fileURLToPath(new URL('../test/fixtures/test.proto', import.meta.url))
const definition = (grpc.loadPackageDefinition(loader.loadSync(protoPath, { defaults: true })) as any).test.Test.service as grpc.ServiceDefinition
const method = definition.ServerStream!
const now = (): number => performance.timeOrigin + performance.now()

function payload (seq: number): Buffer {
  const b = Buffer.alloc(100 - 4) // with the message's field tags, about 100 bytes on the wire
  b.writeUInt32LE(seq, 0)
  b.writeDoubleLE(now(), 4)
  return b
}

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : process.argv[i + 1]!
}

// --- server process -------------------------------------------------------

async function server (system: string): Promise<void> {
  let publish: (seq: number) => void
  let port: number
  if (system === 'socketio') {
    const { createServer } = await import('node:http')
    const { Server } = await import('socket.io')
    const http = createServer()
    const io = new Server(http, { transports: ['websocket'], serveClient: false })
    io.on('connection', socket => { void socket.join('bench') })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    port = (http.address() as { port: number }).port
    publish = seq => { io.to('bench').emit('m', payload(seq)) }
  } else if (system === 'ws') {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await once(wss, 'listening')
    port = (wss.address() as { port: number }).port
    publish = seq => {
      const bytes = payload(seq)
      for (const socket of wss.clients) socket.send(bytes, { binary: true })
    }
  } else {
    const { default: Fastify } = await import('fastify')
    const { default: fastifyGrpcWs } = await import('../index.js')
    const app = Fastify()
    const calls = new Set<grpc.ServerWritableStream<any, any>>()
    await app.register(fastifyGrpcWs, {
      services: [{
        definition,
        implementation: {
          ServerStream (call: grpc.ServerWritableStream<any, any>) {
            if (system === 'topics') app.grpc.topics.subscribe('bench', call)
            else {
              calls.add(call)
              call.on('cancelled', () => { calls.delete(call) })
            }
            call.sendMetadata(new grpc.Metadata())
          }
        }
      }],
      maxConnections: 0
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    port = (app.server.address() as { port: number }).port
    publish = system === 'topics'
      ? seq => { void app.grpc.topics.publish('bench', { payload: payload(seq) }) }
      : seq => { const message = { payload: payload(seq) }; for (const call of calls) call.write(message) }
  }
  process.on('message', (m: { cmd: string, seq?: number }) => {
    if (m.cmd === 'publish') publish(m.seq!)
    else if (m.cmd === 'cpu') process.send!({ type: 'cpu', cpu: process.cpuUsage(), rss: process.memoryUsage().rss })
    else if (m.cmd === 'exit') process.exit(0)
  })
  process.send!({ type: 'ready', port })
}

// --- client process -------------------------------------------------------

async function client (system: string, port: number, sockets: number): Promise<void> {
  const latencies: number[] = []
  let received = 0
  let lost = 0
  let disorder = 0
  const last = new Int32Array(sockets).fill(-1)
  let measuring = false
  const onPayload = (i: number, p: Buffer): void => {
    const seq = p.readUInt32LE(0)
    const sentAt = p.readDoubleLE(4)
    if (last[i]! >= 0) {
      if (seq <= last[i]!) disorder++
      else lost += seq - last[i]! - 1
    }
    last[i] = seq
    if (measuring) {
      received++
      latencies.push(now() - sentAt)
    }
  }
  const { createClient } = await import('../lib/client/web/index.js')
  const descriptor = {
    path: method.path,
    serialize: (r: unknown) => method.requestSerialize(r),
    deserialize: (b: Uint8Array) => method.responseDeserialize(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
  }
  const ready: Array<Promise<unknown>> = []
  for (let i = 0; i < sockets; i++) {
    if (system === 'socketio') {
      const { io } = await import('socket.io-client')
      const socket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false })
      socket.on('m', (data: Buffer) => { onPayload(i, data) })
      ready.push(once(socket as any, 'connect'))
    } else if (system === 'ws') {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`)
      ws.on('message', (data: Buffer) => { onPayload(i, data) })
      ready.push(once(ws, 'open'))
    } else {
      const c = createClient(`ws://127.0.0.1:${port}/grpc`, { WebSocket: WebSocket as any })
      const call = c.serverStream(descriptor as any, {})
      ready.push(call.headers)
      void (async () => { for await (const r of call as AsyncIterable<any>) onPayload(i, r.payload) })().catch(() => {})
    }
    if (i % 100 === 99) await Promise.all(ready.slice(-100))
  }
  await Promise.all(ready)
  let cpuStart = process.cpuUsage()
  process.on('message', (m: { cmd: string }) => {
    if (m.cmd === 'start') {
      measuring = true
      latencies.length = 0
      received = 0
      cpuStart = process.cpuUsage()
    } else if (m.cmd === 'stop') {
      measuring = false
      const cpu = process.cpuUsage(cpuStart)
      process.send!({ type: 'result', received, lost, disorder, latencies, cpuMs: (cpu.user + cpu.system) / 1000 })
    } else if (m.cmd === 'exit') process.exit(0)
  })
  process.send!({ type: 'ready' })
}

// --- orchestrator -----------------------------------------------------------

const self = fileURLToPath(import.meta.url)
function child (args: string[]): ChildProcess {
  return fork(self, args, { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
}
async function reply<T> (c: ChildProcess, type: string): Promise<T> {
  for (;;) {
    const [m] = await once(c, 'message') as [{ type: string }]
    if (m.type === type) return m as T
  }
}
const pct = (sorted: number[], p: number): number => sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!

async function run (system: string, subscribers: number, clients: number, rate: number, seconds: number): Promise<Record<string, unknown>> {
  const srv = child(['--role', 'server', '--system', system])
  const { port } = await reply<{ port: number }>(srv, 'ready')
  const per = Math.ceil(subscribers / clients)
  const cls = Array.from({ length: clients }, () => child(['--role', 'client', '--system', system, '--port', String(port), '--sockets', String(per)]))
  await Promise.all(cls.map(async c => await reply(c, 'ready')))
  let seq = 0
  const tick = (): void => { srv.send({ cmd: 'publish', seq: seq++ }) }
  // warm-up 1 s
  let timer = setInterval(tick, 1000 / rate)
  await new Promise(resolve => setTimeout(resolve, 1000))
  srv.send({ cmd: 'cpu' })
  const before = await reply<{ cpu: NodeJS.CpuUsage }>(srv, 'cpu')
  for (const c of cls) c.send({ cmd: 'start' })
  const published0 = seq
  const wall0 = now()
  await new Promise(resolve => setTimeout(resolve, seconds * 1000))
  clearInterval(timer)
  const published = seq - published0
  srv.send({ cmd: 'cpu' })
  const after = await reply<{ cpu: NodeJS.CpuUsage, rss: number }>(srv, 'cpu')
  await new Promise(resolve => setTimeout(resolve, 500)) // the last deliveries arrive
  for (const c of cls) c.send({ cmd: 'stop' })
  const results = await Promise.all(cls.map(async c => await reply<{ received: number, lost: number, disorder: number, latencies: number[], cpuMs: number }>(c, 'result')))
  const wall = now() - wall0
  timer = undefined as any
  for (const c of [srv, ...cls]) c.send({ cmd: 'exit' })
  const received = results.reduce((s, r) => s + r.received, 0)
  const latencies = results.flatMap(r => r.latencies).sort((a, b) => a - b)
  const serverCpuUs = (after.cpu.user - before.cpu.user + after.cpu.system - before.cpu.system)
  return {
    system,
    subscribers: per * clients,
    publishesPerS: rate,
    published,
    deliveriesPerS: Math.round(received / seconds),
    received,
    lost: results.reduce((s, r) => s + r.lost, 0),
    outOfOrder: results.reduce((s, r) => s + r.disorder, 0),
    serverUsPerDelivery: +(serverCpuUs / Math.max(1, received)).toFixed(2),
    serverCpuPct: Math.round(serverCpuUs / 10 / (seconds * 1000)),
    p50ms: +pct(latencies, 0.5).toFixed(1),
    p99ms: +pct(latencies, 0.99).toFixed(1),
    clientCpuPct: results.map(r => Math.round(r.cpuMs / (wall / 100))),
    serverRssMiB: Math.round(after.rss / 1048576)
  }
}

const role = arg('role', 'main')
if (role === 'server') {
  await server(arg('system', 'topics'))
} else if (role === 'client') {
  await client(arg('system', 'topics'), Number(arg('port', '0')), Number(arg('sockets', '1')))
} else {
  const subscribers = Number(arg('subscribers', '2000'))
  const clients = Number(arg('clients', '2'))
  const seconds = Number(arg('seconds', '4'))
  const rates = arg('rate', '20').split(',').map(Number)
  const systems = arg('systems', 'topics,per-call,ws,socketio').split(',')
  const rows = []
  for (const rate of rates) {
    for (const system of systems) {
      const row = await run(system, subscribers, clients, rate, seconds)
      console.log(JSON.stringify(row))
      rows.push(row)
    }
  }
  console.table(rows.map(r => ({ ...r, clientCpuPct: (r.clientCpuPct as number[]).join('/') })))
}
