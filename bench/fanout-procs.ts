/**
 * The processes of the fan-out benchmark (bench/fanout.ts forks this file):
 * a server (`--role server`) and a subscriber client (`--role client`),
 * driven over IPC.
 *
 * Server systems: `topics` (app.grpc.topics, serialized once per publish),
 * `per-call` (the handler writes the message object to every call), `ws` (a
 * raw `ws` broadcast loop), `tcp` (one write to each bare TCP socket: the
 * machine's floor), `socketio` (Socket.IO 4, WebSocket transport,
 * `io.to(room).emit`). With `--redis URL`, topics go through redisBus and
 * Socket.IO through @socket.io/redis-adapter; only instance 0 publishes.
 * `--streams K` gives every socket K subscribers: K server-streaming calls
 * (plugin), K namespaces on one connection (Socket.IO), or K frames per
 * publish told apart by a byte (raw ws).
 *
 * Payload, 96 bytes (about 100 on the wire with the message's field tag):
 * u32 sequence number, f64 publish time (ms, performance.timeOrigin-based,
 * so one clock on the machine), u8 stream index (raw ws and bare TCP only).
 * The publisher reports its first publish, and each client its last
 * receipt, on that clock: the orchestrator's span of a step runs from one to
 * the other.
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { once } from 'node:events'
import { connect, createServer, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import WebSocket, { WebSocketServer } from 'ws'

// Run as a bundle in bench/.build (bench/procs.ts): the orchestrator passes the path.
const protoPath = process.env.FANOUT_PROTO ?? fileURLToPath(new URL('../test/fixtures/test.proto', import.meta.url))
const definition = (grpc.loadPackageDefinition(loader.loadSync(protoPath, { defaults: true })) as any).test.Test.service as grpc.ServiceDefinition
const method = definition.ServerStream!
// timeOrigin is a getter: read once.
const origin = performance.timeOrigin
const now = (): number => origin + performance.now()
const PAYLOAD = 96
const TOPIC = 'bench'
const GREETING = Buffer.from([0])

function payload (seq: number): Buffer {
  const b = Buffer.alloc(PAYLOAD)
  b.writeUInt32LE(seq, 0)
  b.writeDoubleLE(now(), 4)
  return b
}

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : process.argv[i + 1]!
}

export type ServerCommand =
  | { cmd: 'cpu' }
  | { cmd: 'publish', count: number, intervalMs: number }
  | { cmd: 'stats' }
  | { cmd: 'subscribers', atLeast: number, timeoutMs: number }
  | { cmd: 'exit' }

export type ClientCommand =
  | { cmd: 'window', fromSeq: number, toSeq: number }
  | { cmd: 'progress' }
  | { cmd: 'result' }
  | { cmd: 'check', lastSeq: number }
  | { cmd: 'open', ports: number[] }
  | { cmd: 'close' }
  | { cmd: 'exit' }

/** Latencies in 0.1 ms buckets, sent as [bucket, count] pairs. */
export type Histogram = Array<[number, number]>

/** lastAt: the absolute time (the payload's clock) of the last receipt in the window, 0 if none. */
export interface WindowResult { received: number, expected: number, lost: number, duplicated: number, hist: Histogram, lastAt: number, cpuMs: number, wallMs: number }
export interface CheckResult { lost: number, duplicated: number, subscribers: number, ended: number }

// --- server -------------------------------------------------------------------

async function server (system: string, streams: number, redisUrl: string): Promise<void> {
  let publishOne: (seq: number) => void
  let port: number
  let stats = (): unknown => null
  let subscribers = (): Promise<number> => Promise.resolve(NaN)
  const cleanups: Array<() => Promise<unknown>> = []
  if (system === 'socketio') {
    const { createServer } = await import('node:http')
    const { Server } = await import('socket.io')
    const http = createServer()
    const io = new Server(http, { transports: ['websocket'], serveClient: false })
    if (redisUrl !== '') {
      const { createClient } = await import('redis')
      const { createAdapter } = await import('@socket.io/redis-adapter')
      const pub = createClient({ url: redisUrl })
      const sub = pub.duplicate()
      await Promise.all([pub.connect(), sub.connect()])
      // The adapter of every namespace listens for the clients' errors: more than Node's default 10.
      pub.setMaxListeners(0)
      sub.setMaxListeners(0)
      // A command timing out under overload is reported, not a crash of this instance (the cell's counts show the loss).
      pub.on('error', (err: Error) => { console.error(`socket.io redis client: ${err.message}`) })
      sub.on('error', (err: Error) => { console.error(`socket.io redis client: ${err.message}`) })
      // Under overload a command of the adapter's can time out, and its rejection goes unhandled (redis-adapter
      // 8.3 does not catch its PUBLISHes): that ended this process and the cell with it. Reported once instead.
      let timedOut = 0
      process.on('unhandledRejection', (err: unknown) => {
        // node-redis's TimeoutError sets neither a name nor a message.
        if (!(err instanceof Error && err.constructor.name === 'TimeoutError')) throw err
        if (timedOut++ === 0) console.error('socket.io redis adapter: a command timed out; further ones not reported')
      })
      io.adapter(createAdapter(pub, sub))
      // Each namespace's adapter psubscribes on its own: the publisher waits until every instance's are in
      // place. PUBSUB NUMPAT counts distinct patterns (the same on every instance): CLIENT LIST has each connection's.
      subscribers = async () => {
        const list = String(await pub.sendCommand(['CLIENT', 'LIST']))
        return [...list.matchAll(/ psub=(\d+)/g)].reduce((n, m) => n + Number(m[1]), 0)
      }
      cleanups.push(async () => { pub.destroy(); sub.destroy() })
    }
    const namespaces = Array.from({ length: streams }, (_, j) => io.of(`/s${j}`))
    for (const ns of namespaces) ns.on('connection', socket => { void socket.join(TOPIC) })
    http.listen(0, '127.0.0.1')
    await once(http, 'listening')
    port = (http.address() as { port: number }).port
    publishOne = seq => {
      const bytes = payload(seq)
      for (const ns of namespaces) ns.to(TOPIC).emit('m', bytes)
    }
  } else if (system === 'tcp') {
    // The machine's floor: one write of the step's bytes to each socket, no WebSocket, no framing.
    const sockets = new Set<Socket>()
    const tcp = createServer(socket => {
      socket.setNoDelay(true)
      // A greeting byte: the client counts as connected once the server has the socket (a publish reaches it).
      socket.write(GREETING)
      sockets.add(socket)
      socket.on('close', () => { sockets.delete(socket) })
      socket.on('error', () => {})
    })
    tcp.listen(0, '127.0.0.1')
    await once(tcp, 'listening')
    port = (tcp.address() as { port: number }).port
    publishOne = seq => {
      const base = payload(seq)
      const bytes = Buffer.alloc(PAYLOAD * streams)
      for (let j = 0; j < streams; j++) { base.copy(bytes, j * PAYLOAD); bytes[j * PAYLOAD + 12] = j }
      for (const socket of sockets) socket.write(bytes)
    }
    cleanups.push(async () => { for (const socket of sockets) socket.destroy(); tcp.close() })
  } else if (system === 'ws') {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
    await once(wss, 'listening')
    port = (wss.address() as { port: number }).port
    publishOne = seq => {
      const base = payload(seq)
      const frames = Array.from({ length: streams }, (_, j) => { const b = Buffer.from(base); b[12] = j; return b })
      for (const socket of wss.clients) for (const frame of frames) socket.send(frame, { binary: true })
    }
  } else {
    const { default: Fastify } = await import('fastify')
    const { default: fastifyGrpcWs, redisBus } = await import('../index.js')
    const app = Fastify()
    const calls = new Set<grpc.ServerWritableStream<any, any>>()
    let bus
    if (redisUrl !== '') {
      const { createClient } = await import('redis')
      const client = createClient({ url: redisUrl })
      client.on('error', (err: Error) => { console.error(`redis client: ${err.message}`) })
      await client.connect()
      bus = redisBus({ client })
      cleanups.push(async () => { client.destroy() })
    }
    await app.register(fastifyGrpcWs, {
      services: [{
        definition,
        implementation: {
          ServerStream (call: grpc.ServerWritableStream<any, any>) {
            if (system === 'topics') {
              // The never-reading subscriber asks for its own bound and policy (bench/fanout.ts says why).
              const r = call.request as { mode: string, count: number }
              const options = r.mode === '' ? undefined : { overflow: r.mode as 'drop-oldest', maxQueueMessages: r.count }
              const sub = app.grpc.topics.subscribe(TOPIC, call, options)
              sub.ready.then(() => { call.sendMetadata(new grpc.Metadata()) }, () => { call.destroy() })
            } else {
              calls.add(call)
              call.on('cancelled', () => { calls.delete(call) })
              call.sendMetadata(new grpc.Metadata())
            }
          }
        }
      }],
      maxConnections: 0,
      ...(bus === undefined ? {} : { topics: { bus } })
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    port = (app.server.address() as { port: number }).port
    stats = () => app.grpc.topics.stats(TOPIC) ?? null
    publishOne = system === 'topics'
      ? seq => { void app.grpc.topics.publish(TOPIC, { payload: payload(seq) }) }
      : seq => { const message = { payload: payload(seq) }; for (const call of calls) call.write(message) }
    cleanups.unshift(async () => { await app.close() })
  }
  let seq = 0
  process.on('message', (m: ServerCommand) => {
    if (m.cmd === 'publish') {
      // Paced on the clock (no drift): message k goes at start + k × interval.
      const start = performance.now()
      const firstAt = performance.timeOrigin + start // the first publish goes now, on the clients' clock
      const first = seq
      let k = 0
      const next = (): void => {
        while (k < m.count && performance.now() >= start + k * m.intervalMs) { publishOne(seq++); k++ }
        if (k < m.count) setTimeout(next, Math.max(0, start + k * m.intervalMs - performance.now()))
        else process.send!({ type: 'published', fromSeq: first, toSeq: seq - 1, ms: performance.now() - start, firstAt })
      }
      next()
    } else if (m.cmd === 'cpu') {
      const cpu = process.cpuUsage()
      process.send!({ type: 'cpu', cpuUs: cpu.user + cpu.system, rss: process.memoryUsage().rss })
    } else if (m.cmd === 'stats') {
      process.send!({ type: 'stats', stats: stats(), rss: process.memoryUsage().rss })
    } else if (m.cmd === 'subscribers') {
      void (async () => {
        const until = performance.now() + m.timeoutMs
        let n = await subscribers()
        while (!(n >= m.atLeast) && performance.now() < until) {
          await new Promise(resolve => setTimeout(resolve, 50))
          n = await subscribers()
        }
        process.send!({ type: 'subscribers', count: n })
      })()
    } else if (m.cmd === 'exit') {
      void Promise.allSettled(cleanups.map(async f => await f())).finally(() => process.exit(0))
      setTimeout(() => process.exit(0), 2000).unref()
    }
  })
  process.send!({ type: 'ready', port, pid: process.pid })
}

// --- client ---------------------------------------------------------------------

const BUCKETS = 600_000 // 0.1 ms up to 60 s

// Scratch for the publish time's 8 bytes: no view or reader per message.
const scratch = new Uint8Array(8)
const scratchView = new DataView(scratch.buffer)

/**
 * The sequence number and publish time in an encoded Response's payload
 * (field 2, bytes), read in place: what the raw ws and TCP clients read off
 * their Buffers, without a reader, a view or a copy of the payload per message.
 */
function readReceived (b: Uint8Array): Received {
  let at = 0
  while (at < b.length) {
    const tag = b[at++]!
    let len = 0
    for (let shift = 0; ; shift += 7) {
      if (at >= b.length || shift > 28) throw new Error('a Response with a broken length')
      const byte = b[at++]!
      len |= (byte & 0x7f) << shift
      if (byte < 0x80) break
    }
    if (tag === 0x12) {
      if (len < 12 || at + len > b.length) break
      for (let k = 0; k < 8; k++) scratch[k] = b[at + 4 + k]!
      return { seq: (b[at]! | b[at + 1]! << 8 | b[at + 2]! << 16 | b[at + 3]! << 24) >>> 0, sentAt: scratchView.getFloat64(0, true) }
    }
    // Response has no other length-delimited field than message (1): anything else is a fault here.
    if (tag !== 0x0a) break
    at += len
  }
  throw new Error('a Response without a payload')
}

interface Received { seq: number, sentAt: number }

async function client (system: string, first: number, sockets: number, streams: number, neverReader: boolean): Promise<void> {
  const n = sockets * streams
  const next = new Float64Array(n) // the sequence number each subscriber expects next
  let lost = 0
  let duplicated = 0
  let ended = 0
  // The measured window: sequence numbers [from, to] of one step.
  let from = Infinity
  let to = -1
  let inWindow = 0
  let winLost = 0
  let winDup = 0
  let lastAt = 0
  const hist = new Uint32Array(BUCKETS)
  const onPayload = (i: number, seq: number, sentAt: number): void => {
    const t = now()
    const expected = next[i]!
    if (seq < expected) { duplicated++; if (seq >= from && seq <= to) winDup++; return }
    if (seq > expected) {
      lost += seq - expected
      // Only what falls in the window counts against it.
      winLost += Math.max(0, Math.min(seq, to + 1) - Math.max(expected, from))
    }
    next[i] = seq + 1
    if (seq >= from && seq <= to) {
      inWindow++
      lastAt = t
      hist[Math.min(BUCKETS - 1, Math.max(0, Math.floor((t - sentAt) * 10)))]!++
    }
  }
  let ports: number[] = []
  const url = (g: number): string => `127.0.0.1:${ports[g % ports.length]!}`
  const ready: Array<Promise<unknown>> = []
  const closers: Array<() => void> = []
  const { createClient } = await import('../lib/client/web/index.js')
  const descriptor = {
    path: method.path,
    serialize: (r: unknown) => method.requestSerialize(r),
    // The payload's two numbers only, as the other systems' clients read theirs: the clients' CPU is taken from the server's here.
    deserialize: readReceived
  }
  const open = async (): Promise<void> => {
    for (let s = 0; s < sockets; s++) {
      const g = first + s // this socket's number over all client processes (the instance it goes to)
      if (system === 'socketio') {
        const { Manager } = await import('socket.io-client')
        const manager = new Manager(`http://${url(g)}`, { transports: ['websocket'], reconnection: false })
        for (let j = 0; j < streams; j++) {
          const socket = manager.socket(`/s${j}`)
          const i = s * streams + j
          socket.on('m', (data: Buffer) => { onPayload(i, data.readUInt32LE(0), data.readDoubleLE(4)) })
          socket.on('disconnect', () => { ended++ })
          ready.push(once(socket as any, 'connect'))
          closers.push(() => socket.disconnect())
        }
      } else if (system === 'tcp') {
        const socket = connect(ports[g % ports.length]!, '127.0.0.1')
        // Records of PAYLOAD bytes, as TCP happens to cut them.
        let rest: Buffer | null = null
        let greeted: (() => void) | null = null
        // A socket that fails before the greeting fails the cell's connect, as ws's 'open' does.
        ready.push(new Promise<void>((resolve, reject) => { greeted = resolve; socket.once('error', reject) }))
        socket.on('data', (chunk: Buffer) => {
          if (greeted !== null) { greeted(); greeted = null; chunk = chunk.subarray(GREETING.length) }
          const data = rest === null ? chunk : Buffer.concat([rest, chunk])
          let at = 0
          for (; at + PAYLOAD <= data.length; at += PAYLOAD) onPayload(s * streams + data[at + 12]!, data.readUInt32LE(at), data.readDoubleLE(at + 4))
          rest = at < data.length ? data.subarray(at) : null
        })
        socket.on('close', () => { ended++ })
        socket.on('error', () => {})
        closers.push(() => socket.destroy())
      } else if (system === 'ws') {
        const ws = new WebSocket(`ws://${url(g)}`, { perMessageDeflate: false })
        ws.on('message', (data: Buffer) => { onPayload(s * streams + data[12]!, data.readUInt32LE(0), data.readDoubleLE(4)) })
        ws.on('close', () => { ended++ })
        ready.push(once(ws, 'open'))
        closers.push(() => ws.terminate())
      } else {
        let raw: WebSocket | null = null
        // Captures the socket so that a never-reader can stop reading it at the TCP level.
        class Captured extends WebSocket {
          constructor (address: string, protocols?: string | string[]) {
            super(address, protocols, { perMessageDeflate: false })
            raw = this // eslint-disable-line @typescript-eslint/no-this-alias
          }
        }
        const c = createClient(`ws://${url(g)}/grpc`, { WebSocket: Captured as any, ...(neverReader ? { initialWindowSize: 1024 } : {}) })
        closers.push(() => { c.close() })
        for (let j = 0; j < streams; j++) {
          const i = s * streams + j
          const call = c.serverStream(descriptor as any, neverReader ? { mode: 'drop-oldest', count: 20 } : {})
          ready.push(call.headers)
          if (neverReader) {
            void call.headers.then(() => { (raw as any)?._socket?.pause() }, () => {})
            continue
          }
          void (async () => { for await (const r of call as AsyncIterable<Received>) onPayload(i, r.seq, r.sentAt) })().catch(() => { ended++ })
        }
      }
      if (s % 100 === 99) await Promise.all(ready.slice(-100 * streams))
    }
    await Promise.all(ready)
  }
  let cpu0 = process.cpuUsage()
  let wall0 = now()
  process.on('message', (m: ClientCommand) => {
    if (m.cmd === 'window') {
      from = m.fromSeq
      to = m.toSeq
      inWindow = 0
      winLost = 0
      winDup = 0
      lastAt = 0
      hist.fill(0)
      cpu0 = process.cpuUsage()
      wall0 = now()
      process.send!({ type: 'window' })
    } else if (m.cmd === 'progress') {
      process.send!({ type: 'progress', received: inWindow, expected: n * (to - from + 1) })
    } else if (m.cmd === 'result') {
      const cpu = process.cpuUsage(cpu0)
      const pairs: Histogram = []
      for (let b = 0; b < BUCKETS; b++) if (hist[b]! > 0) pairs.push([b, hist[b]!])
      process.send!({ type: 'result', result: { received: inWindow, expected: n * (to - from + 1), lost: winLost, duplicated: winDup, hist: pairs, lastAt, cpuMs: (cpu.user + cpu.system) / 1000, wallMs: now() - wall0 } satisfies WindowResult })
    } else if (m.cmd === 'check') {
      // Whatever was published and never arrived counts as lost, up to the last message.
      let tail = 0
      for (let i = 0; i < n; i++) tail += Math.max(0, m.lastSeq + 1 - next[i]!)
      process.send!({ type: 'check', check: { lost: lost + tail, duplicated, subscribers: n, ended } satisfies CheckResult })
    } else if (m.cmd === 'open') {
      ports = m.ports
      void open().then(() => process.send!({ type: 'opened' }), (err: unknown) => process.send!({ type: 'opened', error: String(err) }))
    } else if (m.cmd === 'close') {
      for (const close of closers.splice(0)) close()
      ready.length = 0
      process.send!({ type: 'closed' })
    } else if (m.cmd === 'exit') {
      for (const close of closers.splice(0)) close()
      setTimeout(() => process.exit(0), 100)
    }
  })
  process.send!({ type: 'ready' })
}

const role = arg('role', '')
if (role === 'server') {
  await server(arg('system', 'topics'), Number(arg('streams', '1')), arg('redis', ''))
} else if (role === 'client') {
  await client(arg('system', 'topics'), Number(arg('first', '0')), Number(arg('sockets', '1')), Number(arg('streams', '1')), arg('never', '0') === '1')
}
