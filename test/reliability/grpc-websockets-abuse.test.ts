/**
 * The grpc-websockets route under abusive but well-formed traffic, over real
 * sockets with a raw `ws` client: empty request messages to a handler that
 * does not read (the server stops reading instead of queueing them), one
 * request in a million pieces, a header block repeating one key thousands of
 * times (the work stays linear), and peers that vanish while their socket is
 * paused (noticed, handlers cancelled). Assertions are on behaviour and
 * structure (bytes read from the socket, socket paused, counts), never on
 * time or process memory.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify, { type FastifyInstance } from 'fastify'
import { EventEmitter } from 'node:events'
import * as http2 from 'node:http2'
import { connect as tcpConnect, type Socket } from 'node:net'
import t from 'tap'
import { WebSocket } from 'ws'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { Changes, bounded } from '../helpers/bounded.js'
import { createTestService, testDefinition, type Request, type Response } from '../helpers/test-service.js'

const apps: FastifyInstance[] = []
const clients: WebSocket[] = []
t.teardown(async () => {
  for (const ws of clients) ws.terminate()
  for (const app of apps) await app.close()
})

async function startApp (options: Partial<FastifyGrpcWsOptions>, implementation: object): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify()
  apps.push(app)
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: implementation as grpc.UntypedServiceImplementation }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  return { app, url: `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc` }
}

const request = (r: Request): Buffer => testDefinition.Unary!.requestSerialize(r)
const response = (body: Buffer): Response => testDefinition.Unary!.responseDeserialize(body)
function lpm (payload: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + payload.length)
  out.writeUInt32BE(payload.length, 1)
  out.set(payload, 5)
  return out
}
const data = (bytes: Uint8Array): Buffer => Buffer.concat([Buffer.of(0), bytes])
const END = Buffer.of(1)
const headerBlock = (lines: string[] = []): Buffer =>
  Buffer.from([...lines, 'content-type: application/grpc-web+proto', 'x-grpc-web: 1'].map(l => l + '\r\n').join(''), 'latin1')

/** A raw client socket; `frames` parses what the server sent. */
class RawCall {
  readonly messages: Buffer[] = []
  closeCode: number | undefined
  readonly changes = new Changes()
  constructor (readonly ws: WebSocket) {
    clients.push(ws)
    ws.on('message', (d: Buffer) => { this.messages.push(d); this.changes.changed() })
    ws.on('close', (code: number) => { this.closeCode = code; this.changes.changed() })
    ws.on('error', () => {})
  }

  static async open (url: string, path: string): Promise<RawCall> {
    const call = new RawCall(new WebSocket(url + path, ['grpc-websockets']))
    await bounded('the socket to open', new Promise<void>((resolve, reject) => {
      call.ws.once('open', () => { resolve() })
      call.ws.once('error', reject)
    }))
    return call
  }

  get frames (): Array<{ flag: number, body: Buffer }> {
    const stream = Buffer.concat(this.messages)
    const frames = []
    for (let at = 0; at + 5 <= stream.length;) {
      const length = stream.readUInt32BE(at + 1)
      frames.push({ flag: stream[at]!, body: stream.subarray(at + 5, at + 5 + length) })
      at += 5 + length
    }
    return frames
  }

  async closed (ms = 10_000): Promise<number> {
    return await this.changes.until('the socket to close', () => this.closeCode, ms)
  }
}

/** Sends `count` messages made by `make`, waiting for the socket to drain now and then (bounded). */
async function sendMany (ws: WebSocket, count: number, make: (i: number) => Buffer): Promise<void> {
  for (let i = 0; i < count; i++) {
    ws.send(make(i))
    if (ws.bufferedAmount > 4 * 1024 * 1024) {
      // ws has no 'drain': wait on the net socket's.
      const socket = (ws as unknown as { _socket: Socket })._socket
      await bounded('the client socket to drain', new Promise(resolve => socket.once('drain', resolve)), 20_000)
    }
  }
}

/** The server's side of the only grpc-websockets socket of `app`. */
function serverSocketOf (app: FastifyInstance): { ws: WebSocket, socket: Socket } {
  const [ws] = app.websocketServer.clients
  if (ws === undefined) throw new Error('no server socket')
  return { ws, socket: (ws as unknown as { _socket: Socket })._socket }
}

async function settle (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

// --- what a slow handler makes the server hold ---------------------------------------------------------

/** A Bidi handler that reads nothing until `go` fires, then counts every request and answers the count. */
function lateReader (go: EventEmitter): object {
  return {
    ...createTestService(new EventEmitter()),
    Bidi (call: grpc.ServerDuplexStream<Request, Response>) {
      go.once('go', () => {
        let count = 0
        call.on('data', () => { count++ })
        call.on('end', () => { call.write({ message: String(count), payload: Buffer.alloc(0) }); call.end() })
      })
    }
  }
}

t.test('empty request messages to a handler that does not read: the server stops reading the socket, then delivers every one', async t => {
  const go = new EventEmitter()
  const readHighWaterMark = 4096
  const { app, url } = await startApp({ initialWindowSize: readHighWaterMark }, lateReader(go))
  const call = await RawCall.open(url, '/test.Test/Bidi')
  const count = 100_000
  const empty = data(lpm(new Uint8Array(0)))
  call.ws.send(headerBlock())
  // ~1.2 MB on the wire: every message costs 5 of the 4 KiB, so the server
  // has to stop reading after about 800 of them.
  const sending = sendMany(call.ws, count, () => empty).then(() => { call.ws.send(END) })
  const { ws: serverWs, socket } = await bounded('the server socket', (async () => {
    for (let i = 0; i < 500 && app.websocketServer.clients.size === 0; i++) await settle(10)
    return serverSocketOf(app)
  })())
  // Reading stops once readHighWaterMark is unread; what was read then stays put.
  let before = -1
  for (let i = 0; i < 100 && (before !== socket.bytesRead || !serverWs.isPaused); i++) {
    before = socket.bytesRead
    await settle(50)
  }
  t.ok(serverWs.isPaused, 'the server socket is paused')
  const wire = count * 12
  t.ok(socket.bytesRead < 256 * 1024, `the server read ${socket.bytesRead} of the ${wire} bytes sent`)
  go.emit('go')
  await sending
  t.equal(await call.closed(), 1000)
  t.equal(response(call.frames[1]!.body).message, String(count), 'the handler got every message, once reading resumed')
})

t.test('a WebSocket message of many messages past the read limit, then the end: parsing stops midway, resumes, and the end comes after', async t => {
  const go = new EventEmitter()
  const { app, url } = await startApp({ initialWindowSize: 1024 }, lateReader(go))
  const call = await RawCall.open(url, '/test.Test/Bidi')
  // 3,000 empty messages in one WebSocket message (15,000 bytes, cost 15,000),
  // then a second one and the end, all read before the handler takes any.
  const many = (n: number): Buffer => data(Buffer.concat(Array.from({ length: n }, () => lpm(new Uint8Array(0)))))
  call.ws.send(headerBlock())
  call.ws.send(many(3000))
  call.ws.send(many(1000))
  call.ws.send(END)
  for (let i = 0; i < 100 && app.websocketServer.clients.size === 0; i++) await settle(10)
  const { ws: serverWs } = serverSocketOf(app)
  for (let i = 0; i < 100 && !serverWs.isPaused; i++) await settle(10)
  t.ok(serverWs.isPaused, 'the server socket is paused')
  go.emit('go')
  t.equal(await call.closed(), 1000)
  t.equal(response(call.frames[1]!.body).message, '4000', 'every message, in order, then the end')
  t.match(call.frames.at(-1)!.body.toString('latin1'), /grpc-status: 0/)
})

t.test('one request in 200,000 one-byte pieces arrives whole (the reassembler holds only the message: see the codec test)', async t => {
  const { url } = await startApp({}, createTestService(new EventEmitter()))
  const call = await RawCall.open(url, '/test.Test/Unary')
  const body = lpm(request({ mode: 'size', payload: Buffer.alloc(200_000 - 20, 7) }))
  call.ws.send(headerBlock())
  await sendMany(call.ws, body.length, i => Buffer.of(0, body[i]!))
  call.ws.send(END)
  t.equal(await call.closed(20_000), 1000)
  const status = call.frames.at(-1)!.body.toString('latin1')
  t.match(status, /grpc-status: 0/)
  t.ok(call.frames.some(f => f.flag === 0), 'a response message')
})

// --- a header block repeating one key -------------------------------------------------------------------

t.test('a 16 KiB header block of one repeated key costs work linear in its size, as one of distinct keys does', async t => {
  const { url } = await startApp({}, createTestService(new EventEmitter()))
  // Sum the length of every value grpc-js Metadata validates while calls start.
  const proto = grpc.Metadata.prototype as unknown as Record<'set' | 'add', (key: string, value: unknown) => void>
  const original = { set: proto.set, add: proto.add }
  let validated = 0
  for (const name of ['set', 'add'] as const) {
    proto[name] = function (this: unknown, key: string, value: unknown) {
      validated += key.length + (typeof value === 'string' ? value.length : (value as Buffer).length)
      return original[name].call(this, key, value)
    }
  }
  t.teardown(() => { proto.set = original.set; proto.add = original.add })

  async function workFor (lines: string[]): Promise<{ work: number, size: number }> {
    const block = headerBlock(lines)
    validated = 0
    const call = await RawCall.open(url, '/test.Test/Unary')
    call.ws.send(block)
    call.ws.send(data(lpm(request({ mode: 'echo', message: 'x' }))))
    call.ws.send(END)
    t.equal(await call.closed(), 1000)
    t.match(call.frames.at(-1)!.body.toString('latin1'), /grpc-status: 0/)
    return { work: validated, size: block.length }
  }
  /** Lines made by `line` up to just under maxMetadataSize (16 KiB) with the transport lines, CRLF-ended as improbable sends them. */
  function fill (line: (i: number) => string): string[] {
    const lines: string[] = []
    for (let size = headerBlock().length; ; lines.push(line(lines.length))) {
      size += line(lines.length).length + 2
      if (size > 16 * 1024) return lines
    }
  }
  const repeated = await workFor(fill(() => 'a:'))
  const distinct = await workFor(fill(i => `k${i}: v`))
  t.ok(repeated.size > 16_000 && distinct.size > 16_000, `blocks of ${repeated.size} and ${distinct.size} bytes`)
  t.ok(distinct.work <= 4 * distinct.size, `distinct keys: ${distinct.work} characters validated`)
  t.ok(repeated.work <= 4 * repeated.size, `one key repeated: ${repeated.work} characters validated (at most 4× the block)`)
})

// --- a paused socket whose peer vanishes --------------------------------------------------------------------

/** A Bidi handler that never reads; counts starts and cancellations. */
function neverReads (): { implementation: object, started: () => number, cancelled: () => number, changes: Changes } {
  const changes = new Changes()
  let started = 0
  let cancelled = 0
  const implementation = {
    ...createTestService(new EventEmitter()),
    Bidi (call: grpc.ServerDuplexStream<Request, Response>) {
      started++
      changes.changed()
      call.on('cancelled', () => { cancelled++; changes.changed() })
    }
  }
  return { implementation, started: () => started, cancelled: () => cancelled, changes }
}

t.test('sockets paused behind a handler that never reads notice their peer leaving: every handler cancelled, no socket left', async t => {
  const pingInterval = 100
  const handlers = neverReads()
  const { changes, started, cancelled } = handlers
  const { app, url } = await startApp({ initialWindowSize: 1024, pingInterval, pingTimeout: 2 * pingInterval }, handlers.implementation)
  const count = 24
  const calls = await Promise.all(Array.from({ length: count }, async () => await RawCall.open(url, '/test.Test/Bidi')))
  const chunk = data(lpm(request({ payload: Buffer.alloc(8 * 1024) })))
  for (const call of calls) {
    call.ws.send(headerBlock())
    // 512 KiB each: far past the read limit, and past what the server's
    // socket buffers before it stops reading.
    for (let i = 0; i < 64; i++) call.ws.send(chunk)
  }
  await changes.until('every handler to start', () => started() === count ? true : undefined)
  const paused = async (): Promise<number> => [...app.websocketServer.clients].filter(ws => ws.isPaused).length
  for (let i = 0; i < 100 && await paused() < count; i++) await settle(20)
  t.equal(await paused(), count, 'every server socket is paused')
  // Several pings go by while paused, unanswered (the pongs wait behind the
  // paused data): a live peer is not cut off for it.
  await settle(6 * pingInterval)
  t.equal(app.websocketServer.clients.size, count, 'paused sockets with live peers stay open')
  t.equal(cancelled(), 0, 'and their handlers run on')

  for (const call of calls) (call.ws as unknown as { _socket: Socket })._socket.destroy()
  await changes.until('every handler to be cancelled', () => cancelled() === count ? true : undefined, 20 * pingInterval + 5000)
  t.equal(cancelled(), count, `${cancelled()} of ${count} handlers cancelled`)
  for (let i = 0; i < 100 && app.websocketServer.clients.size > 0; i++) await settle(20)
  t.equal(app.websocketServer.clients.size, 0, 'no server socket left open')
})

t.test('HTTP/2 parity: grpc-js cancels the handler that never reads when the client destroys its socket', async t => {
  const handlers = neverReads()
  const server = new grpc.Server()
  server.addService(testDefinition, handlers.implementation as grpc.UntypedServiceImplementation)
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => { if (err !== null) reject(err); else resolve(bound) })
  })
  t.teardown(() => { server.forceShutdown() })
  const count = 24
  // Each session on a socket of our own, to destroy as the WebSocket clients' are.
  const sockets: Socket[] = []
  const sessions = Array.from({ length: count }, () => http2.connect(`http://127.0.0.1:${port}`, {
    createConnection: () => { const s = tcpConnect(port, '127.0.0.1'); sockets.push(s); return s }
  }))
  const chunk = lpm(request({ payload: Buffer.alloc(8 * 1024) }))
  for (const session of sessions) {
    session.on('error', () => {})
    const stream = session.request({ ':method': 'POST', ':path': '/test.Test/Bidi', 'content-type': 'application/grpc', te: 'trailers' })
    stream.on('error', () => {})
    // Past the stream's window: the rest waits in the client.
    for (let i = 0; i < 64; i++) stream.write(chunk)
  }
  await handlers.changes.until('every handler to start', () => handlers.started() === count ? true : undefined)
  await settle(300)
  t.equal(handlers.cancelled(), 0, 'live peers: handlers run on')
  for (const socket of sockets) socket.destroy()
  await handlers.changes.until('every handler to be cancelled', () => handlers.cancelled() === count ? true : undefined)
  t.equal(handlers.cancelled(), count, `${handlers.cancelled()} of ${count} handlers cancelled`)
})

// --- isolation ----------------------------------------------------------------------------------------------------

t.test('an interceptor that throws on one call\'s message ends only that call: other sockets go on', async t => {
  const interceptor: grpc.ServerInterceptor = (_method, call) => new grpc.ServerInterceptingCall(call, {
    start: next => {
      let throws = false
      next({
        onReceiveMetadata: (metadata, mdNext) => { throws = metadata.get('x-throw').length > 0; mdNext(metadata) },
        onReceiveMessage: (message, messageNext) => {
          if (throws) throw new Error('interceptor boom')
          messageNext(message)
        }
      })
    }
  })
  const app = Fastify()
  apps.push(app)
  await app.register(fastifyGrpcWs, { interceptors: [interceptor], services: [{ definition: testDefinition, implementation: createTestService(new EventEmitter()) }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`
  const others = await Promise.all(Array.from({ length: 3 }, async () => await RawCall.open(url, '/test.Test/Bidi')))
  for (const other of others) other.ws.send(headerBlock())
  const thrower = await RawCall.open(url, '/test.Test/Unary')
  thrower.ws.send(headerBlock(['x-throw: 1']))
  thrower.ws.send(data(lpm(request({ mode: 'echo', message: 'x' }))))
  thrower.ws.send(END)
  await thrower.closed()
  const status = thrower.frames.at(-1)!.body.toString('latin1')
  t.match(status, /grpc-status: 13/, 'the throwing call ends with INTERNAL')
  for (const other of others) {
    t.equal(other.closeCode, undefined, 'another socket is still open')
    other.ws.send(data(lpm(request({ message: 'still here' }))))
    other.ws.send(END)
    t.equal(await other.closed(), 1000)
    t.equal(response(other.frames[1]!.body).message, 'STILL HERE')
    t.match(other.frames.at(-1)!.body.toString('latin1'), /grpc-status: 0/)
  }
})
