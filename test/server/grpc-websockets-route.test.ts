/**
 * The grpc-websockets route driven byte by byte with a raw `ws` client: the
 * upgrade (subprotocol echo, HTTP 400 / 403), the frame sequence of each kind
 * of response, reassembly, limits, deadlines, cancellation, interceptors,
 * protocol errors, and the grpcWebSocketsPrefix option.
 */
import websocket from '@fastify/websocket'
import * as grpc from '@grpc/grpc-js'
import Fastify, { type FastifyInstance } from 'fastify'
import { EventEmitter } from 'node:events'
import t from 'tap'
import { WebSocket } from 'ws'
import fastifyGrpcWs, { fastifyRequestOf, type FastifyGrpcWsOptions } from '../../index.js'
import { createTestService, testDefinition, type Request, type Response } from '../helpers/test-service.js'
import { Changes, bounded } from '../helpers/bounded.js'

const WAIT_MS = 5000
const events = new EventEmitter()
events.setMaxListeners(0)
const apps: FastifyInstance[] = []
const sockets: RawCall[] = []

t.teardown(async () => {
  for (const s of sockets) s.ws.terminate()
  for (const app of apps) await app.close()
})

async function startApp (options: Partial<FastifyGrpcWsOptions> = {}, implementation: object = createTestService(events), register?: (app: FastifyInstance) => Promise<void>): Promise<string> {
  const app = Fastify()
  apps.push(app)
  if (register !== undefined) await register(app)
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: implementation as grpc.UntypedServiceImplementation }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address() as { port: number }
  return `ws://127.0.0.1:${address.port}`
}

const base = await startApp()


// --- a raw grpc-websockets client ------------------------------------------------

interface Frame { flag: number, body: Buffer }

const ascii = (text: string): Buffer => Buffer.from(text, 'latin1')
const request = (r: Request): Buffer => testDefinition.Unary!.requestSerialize(r)
const response = (body: Buffer): Response => testDefinition.Unary!.responseDeserialize(body)
function lpm (payload: Uint8Array, flag = 0): Buffer {
  const out = Buffer.alloc(5 + payload.length)
  out[0] = flag
  out.writeUInt32BE(payload.length, 1)
  out.set(payload, 5)
  return out
}
const data = (bytes: Uint8Array): Buffer => Buffer.concat([Buffer.of(0), bytes])
const END = Buffer.of(1)
/** A header block as the clients send it. */
const headerBlock = (lines: string[] = []): Buffer => ascii([...lines, 'content-type: application/grpc-web+proto', 'x-grpc-web: 1'].map(l => l + '\r\n').join(''))

/** Metadata frame body → lines. */
function lines (frame: Frame): string[] {
  return frame.body.toString('latin1').split('\r\n').filter(l => l !== '')
}
function statusOf (frame: Frame): { code: number, message: string } {
  const get = (name: string): string | undefined => lines(frame).find(l => l.startsWith(name + ': '))?.slice(name.length + 2)
  return { code: Number(get('grpc-status')), message: decodeURIComponent(get('grpc-message') ?? '') }
}

class RawCall {
  /** Every WebSocket message from the server. */
  readonly messages: Buffer[] = []
  closeInfo: { code: number, reason: string } | undefined
  readonly problems: string[] = []
  private readonly changes = new Changes()

  constructor (readonly ws: WebSocket) {
    sockets.push(this)
    ws.on('message', (d: Buffer, isBinary: boolean) => {
      if (!isBinary) this.problems.push('text message from the server')
      this.messages.push(d)
      this.changes.changed()
    })
    ws.on('close', (code: number, reason: Buffer) => { this.closeInfo = { code, reason: reason.toString() }; this.changes.changed() })
    ws.on('error', err => { this.problems.push(err.message) })
  }

  static async open (path: string, options: { url?: string, protocols?: string[], headers?: Record<string, string>, autoPong?: boolean } = {}): Promise<RawCall> {
    // (ws takes an explicit `autoPong: undefined` as false: pass it only when set.)
    const wsOptions = options.autoPong === undefined ? { headers: options.headers } : { headers: options.headers, autoPong: options.autoPong }
    const call = new RawCall(new WebSocket((options.url ?? base) + path, options.protocols ?? ['grpc-websockets'], wsOptions))
    await bounded('the socket to open', new Promise<void>((resolve, reject) => {
      call.ws.once('open', () => { resolve() })
      call.ws.once('error', reject)
    }))
    return call
  }

  /** The server's byte stream, as gRPC-web frames. */
  get frames (): Frame[] {
    const stream = Buffer.concat(this.messages)
    const frames: Frame[] = []
    let at = 0
    while (at + 5 <= stream.length) {
      const length = stream.readUInt32BE(at + 1)
      if (at + 5 + length > stream.length) break
      frames.push({ flag: stream[at]!, body: stream.subarray(at + 5, at + 5 + length) })
      at += 5 + length
    }
    return frames
  }

  send (...messages: Buffer[]): void {
    for (const m of messages) this.ws.send(m)
  }

  async until<T> (what: string, check: () => T | undefined, ms = WAIT_MS): Promise<T> {
    return await this.changes.until(what, check, ms)
  }


  async closed (): Promise<{ code: number, reason: string }> {
    return await this.until('the socket to close', () => this.closeInfo)
  }
}

/** Opens a call, sends header, requests and end, and waits for the server to close. */
async function exchange (path: string, requests: Request[], headerLines: string[] = [], url?: string): Promise<RawCall> {
  const call = await RawCall.open(path, { url })
  call.send(headerBlock(headerLines), ...requests.map(r => data(lpm(request(r)))), END)
  await call.closed()
  return call
}

async function upgradeStatus (url: string, protocols: string[], headers?: Record<string, string>): Promise<{ status: number, body: string }> {
  const ws = new WebSocket(url, protocols, { headers })
  return await bounded('the upgrade to be refused', new Promise((resolve, reject) => {
    ws.once('open', () => { ws.terminate(); reject(new Error('the upgrade succeeded')) })
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.on('data', (chunk: Buffer) => { body += chunk.toString() })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body }) })
    })
    ws.once('error', () => {})
  }))
}

function handlerEvent (id: string): Promise<any> {
  return bounded(`the handler event ${id}`, new Promise(resolve => events.once(id, resolve)))
}

// --- the upgrade ------------------------------------------------------------------

t.test('the upgrade echoes grpc-websockets on <prefix>/<package.Service>/<Method>', async t => {
  const call = await RawCall.open('/grpc/test.Test/Unary')
  t.equal(call.ws.protocol, 'grpc-websockets')
  call.ws.close()
  await call.closed()
})

t.test('an upgrade that does not offer grpc-websockets gets HTTP 400, on either route', async t => {
  const compat = await upgradeStatus(`${base}/grpc/test.Test/Unary`, ['grpc-ws.v1'])
  t.equal(compat.status, 400)
  t.match(compat.body, /Expected the WebSocket subprotocol grpc-websockets/)
  t.equal((await upgradeStatus(`${base}/grpc/test.Test/Unary`, [])).status, 400, 'no subprotocol at all')
  t.equal((await upgradeStatus(`${base}/grpc`, ['grpc-websockets'])).status, 400, 'the grpc-ws.v1 route does not speak grpc-websockets')
})

t.test('a client offering both subprotocols gets the one of the route it asked', async t => {
  const compat = await RawCall.open('/grpc/test.Test/Unary', { protocols: ['grpc-ws.v1', 'grpc-websockets'] })
  t.equal(compat.ws.protocol, 'grpc-websockets')
  compat.ws.close()
  const mux = new WebSocket(`${base}/grpc`, ['grpc-websockets', 'grpc-ws.v1'])
  await bounded('open', new Promise(resolve => mux.once('open', resolve)))
  t.equal(mux.protocol, 'grpc-ws.v1')
  mux.close()
  await compat.closed()
})

t.test('an upgrade from a foreign Origin gets HTTP 403, as on the grpc-ws.v1 route', async t => {
  const refused = await upgradeStatus(`${base}/grpc/test.Test/Unary`, ['grpc-websockets'], { origin: 'https://evil.example' })
  t.equal(refused.status, 403)
  const same = await RawCall.open('/grpc/test.Test/Unary', { headers: { origin: base.replace('ws:', 'http:') } })
  t.equal(same.ws.protocol, 'grpc-websockets', 'same-origin pages are allowed')
  same.ws.close()
  await same.closed()
})

t.test('a plain GET (no upgrade) on the route is a 404', async t => {
  const res = await fetch(`${base.replace('ws:', 'http:')}/grpc/test.Test/Unary`, { signal: AbortSignal.timeout(WAIT_MS) })
  t.equal(res.status, 404)
})

// --- responses --------------------------------------------------------------------------

t.test('a unary call: header frame, message frame, trailer frame, each alone in a WebSocket message, then close 1000', async t => {
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo', message: 'hi' }])
  t.same(call.problems, [])
  t.equal(call.messages.length, 3, 'three WebSocket messages')
  t.same(call.messages.map(m => m.readUInt32BE(1) + 5), call.messages.map(m => m.length), 'each holds exactly one frame')
  const [headers, message, trailers] = call.frames
  t.equal(headers!.flag, 0x80)
  t.same(lines(headers!), [], 'empty response headers')
  t.equal(message!.flag, 0x00)
  t.equal(response(message!.body).message, 'hi')
  t.equal(trailers!.flag, 0x80)
  t.same(lines(trailers!), ['grpc-status: 0', 'grpc-message: OK'])
  t.same(call.closeInfo, { code: 1000, reason: '' })
})

t.test('a server stream: one header frame, every message, one trailer frame', async t => {
  const call = await exchange('/grpc/test.Test/ServerStream', [{ mode: 'count', count: 5, size: 3 }])
  const frames = call.frames
  t.same(frames.map(f => f.flag), [0x80, 0, 0, 0, 0, 0, 0x80])
  t.same(frames.slice(1, 6).map(f => response(f.body).message), ['0', '1', '2', '3', '4'])
  t.equal(statusOf(frames[6]!).code, 0)
  t.equal(call.closeInfo?.code, 1000)
})

t.test('request messages are reassembled across WebSocket messages, and several may share one', async t => {
  const messages = ['alpha', 'beta', 'gamma'].map(message => lpm(request({ message })))
  const stream = Buffer.concat(messages)
  const call = await RawCall.open('/grpc/test.Test/ClientStream')
  call.send(headerBlock())
  // Split at odd places: inside the first prefix, inside a body, across two messages.
  for (const [from, to] of [[0, 3], [3, 11], [11, 30], [30, stream.length]]) call.send(data(stream.subarray(from, to)))
  call.send(END)
  await call.closed()
  const frames = call.frames
  t.equal(response(frames[1]!.body).message, 'alpha,beta,gamma')
  t.equal(statusOf(frames[2]!).code, 0)
})

t.test('response headers leave as soon as the handler sends them, before any message', async t => {
  const call = await RawCall.open('/grpc/test.Test/ServerStream')
  call.send(headerBlock(), data(lpm(request({ mode: 'headers-first', delayMs: 300 }))), END)
  const first = await call.until('the header frame', () => call.frames[0])
  t.equal(call.frames.length, 1, 'the header frame arrives while the handler still waits')
  t.equal(first.flag, 0x80)
  t.same(lines(first), ['x-header-text: value one', 'x-header-repeated: a', 'x-header-repeated: b', 'x-header-bin: AAEC/v8=', 'x-header-bin: c2Vjb25k'],
    'one line a value, -bin values in base64')
  await call.closed()
  t.same(call.frames.map(f => f.flag), [0x80, 0, 0x80])
})

t.test('an error before any response is one trailers-only frame: status, percent-encoded message, trailing metadata', async t => {
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'status', code: 5, details: 'nöt found: 100%' }])
  t.equal(call.frames.length, 1)
  t.same(lines(call.frames[0]!), ['grpc-status: 5', 'grpc-message: n%C3%B6t found: 100%25', 'x-error-text: error value', 'x-error-bin: CQgH'])
  t.same(statusOf(call.frames[0]!), { code: 5, message: 'nöt found: 100%' })
  t.equal(call.closeInfo?.code, 1000)
})

t.test('an unknown method or service: a trailers-only UNIMPLEMENTED frame, then close 1000', async t => {
  for (const path of ['/grpc/test.Test/Nope', '/grpc/no.Such/Method', '/grpc/test.Test']) {
    const call = await exchange(path, [{}])
    t.same(call.frames.map(statusOf), [{ code: 12, message: `The server does not implement the method ${path.slice(5)}` }], path)
    t.equal(call.closeInfo?.code, 1000)
  }
})

// --- request metadata ----------------------------------------------------------------------

t.test('the header block becomes the handler\'s metadata: joined and repeated values, base64 -bin, transport keys gone', async t => {
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'info' }], [
    'X-Improbable: a, b', 'x-nice: a', 'x-nice: b', 'x-bin: AAEC, /w==', 'x-bin: c2Vjb25k', 'user-agent: my-agent/1'
  ])
  const info = JSON.parse(response(call.frames[1]!.body).message)
  t.same(info.metadata, {
    'x-improbable': ['a, b'],
    'x-nice': ['a, b'],
    'x-bin': [{ bin: '000102' }, { bin: 'ff' }, { bin: '7365636f6e64' }],
    'user-agent': ['my-agent/1']
  })
  t.equal(info.deadline, 'Infinity')
  t.equal(info.path, '/test.Test/Unary')
  t.match(info.peer, /^127\.0\.0\.1:\d+$/)
})

t.test('a call without user-agent gets the upgrade\'s', async t => {
  const call = await RawCall.open('/grpc/test.Test/Unary', { headers: { 'user-agent': 'upgrade-agent/2' } })
  call.send(headerBlock(), data(lpm(request({ mode: 'info' }))), END)
  await call.closed()
  t.same(JSON.parse(response(call.frames[1]!.body).message).metadata['user-agent'], ['upgrade-agent/2'])
})

t.test('a malformed header block: a trailers-only INTERNAL frame naming the problem', async t => {
  for (const [block, message] of [
    [ascii('no colon here\r\n'), 'Header line "no colon here" is not "name: value"'],
    [ascii('x-bin: ***\r\n'), 'Metadata value for key "x-bin" is not base64'],
    [Buffer.of(0x6b, 0x3a, 0xff), 'Header block byte 0xff at offset 2 is not printable ASCII']
  ] as const) {
    const call = await RawCall.open('/grpc/test.Test/Unary')
    call.send(block)
    await call.closed()
    t.same(call.frames.map(statusOf), [{ code: 13, message }])
    t.equal(call.closeInfo?.code, 1000)
  }
})

// --- limits ------------------------------------------------------------------------------------

t.test('limits: a request message over maxReceiveMessageSize and a header block over maxMetadataSize give RESOURCE_EXHAUSTED', async t => {
  const url = await startApp({ maxReceiveMessageSize: 1000, maxMetadataSize: 2048 })
  const ok = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo', payload: Buffer.alloc(900) }], [], url)
  t.equal(statusOf(ok.frames.at(-1)!).code, 0, 'under the limit')
  const tooBig: Request = { mode: 'echo', payload: Buffer.alloc(1000) }
  const big = await exchange('/grpc/test.Test/Unary', [tooBig], [], url)
  t.same(big.frames.map(statusOf), [{ code: 8, message: `Received message larger than max (${request(tooBig).length} vs 1000)` }])
  t.equal(big.closeInfo?.code, 1000)
  const bigLines = [`x-big: ${'a'.repeat(2100)}`]
  const metadata = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo' }], bigLines, url)
  t.same(metadata.frames.map(statusOf), [{ code: 8, message: `Request metadata of ${headerBlock(bigLines).length} bytes exceeds the limit of 2048` }])
})

t.test('limits: a response message over maxSendMessageSize gives RESOURCE_EXHAUSTED', async t => {
  const url = await startApp({ maxSendMessageSize: 100 })
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'size', size: 200 }], [], url)
  t.same(call.frames.map(statusOf), [{ code: 8, message: 'Sent message larger than max (208 vs. 100)' }])
})

t.test('maxConnections counts grpc-websockets sockets too: beyond it, HTTP 503', async t => {
  const url = await startApp({ maxConnections: 1 })
  const first = await RawCall.open('/grpc/test.Test/Bidi', { url })
  const refused = await upgradeStatus(`${url}/grpc/test.Test/Bidi`, ['grpc-websockets'])
  t.equal(refused.status, 503)
  t.match(refused.body, /Too many WebSocket connections \(limit 1\)/)
  first.ws.close()
  await first.closed()
})

t.test('a request that does not deserialize: INTERNAL, as with grpc-js', async t => {
  const call = await RawCall.open('/grpc/test.Test/Unary')
  call.send(headerBlock(), data(lpm(Buffer.of(0xff, 0xff, 0xff))), END)
  await call.closed()
  t.same(call.frames.map(statusOf), [{ code: 13, message: 'Error deserializing request' }])
})

t.test('a request message larger than maxFrameSize but within maxReceiveMessageSize is accepted', async t => {
  const url = await startApp({ maxFrameSize: 16384, maxMetadataSize: 4096 })
  const call = await RawCall.open('/grpc/test.Test/Unary', { url })
  call.send(headerBlock(), data(lpm(request({ mode: 'echo', payload: Buffer.alloc(20000) }))), END)
  t.equal((await call.closed()).code, 1000)
  t.equal(statusOf(call.frames.at(-1)!).code, 0)
})

t.test('writes wait while the socket is over socketHighWaterMark (write() returns false), and every message arrives', async t => {
  const url = await startApp({ socketHighWaterMark: 64 * 1024 })
  const call = await RawCall.open('/grpc/test.Test/ServerStream', { url })
  const flood = handlerEvent('flood-1:flood')
  call.ws.pause() // a client that does not read
  call.send(headerBlock(), data(lpm(request({ mode: 'flood', id: 'flood-1', count: 200, size: 32 * 1024 }))), END)
  await new Promise(resolve => setTimeout(resolve, 300))
  call.ws.resume()
  const { refusals } = await flood
  t.ok(refusals > 0, `write() returned false ${String(refusals)} times`)
  await call.closed()
  t.equal(call.frames.filter(f => f.flag === 0).length, 200)
  t.equal(statusOf(call.frames.at(-1)!).code, 0)
})

t.test('a handler that reads late still gets every request message, in order (reading pauses meanwhile)', async t => {
  const late = {
    ...createTestService(events),
    Bidi (call: grpc.ServerDuplexStream<Request, Response>) {
      const got: string[] = []
      setTimeout(() => {
        call.on('data', (r: Request) => { got.push(r.message ?? '') })
        call.on('end', () => { call.write({ message: got.join(','), payload: Buffer.alloc(0) }); call.end() })
      }, 200)
    }
  }
  const url = await startApp({ initialWindowSize: 1024 }, late)
  const call = await RawCall.open('/grpc/test.Test/Bidi', { url })
  const sent = Array.from({ length: 60 }, (_, i) => String(i))
  call.send(headerBlock(), ...sent.map(message => data(lpm(request({ message, payload: Buffer.alloc(500) })))), END)
  await call.closed()
  t.equal(response(call.frames[1]!.body).message, sent.join(','))
})

// --- deadlines and cancellation ---------------------------------------------------------------------

t.test('grpc-timeout sets the deadline the handler sees, and DEADLINE_EXCEEDED ends the call', async t => {
  const before = Date.now()
  const info = await exchange('/grpc/test.Test/Unary', [{ mode: 'info' }], ['grpc-timeout: 5S'])
  const after = Date.now()
  const seen = JSON.parse(response(info.frames[1]!.body).message)
  t.ok(seen.deadline >= before + 5000 && seen.deadline <= after + 5000, `deadline ${String(seen.deadline - before)} ms after the call began`)
  t.notOk('grpc-timeout' in seen.metadata, 'grpc-timeout is not handler metadata')

  const cancelled = handlerEvent('deadline-1')
  const started = Date.now()
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'never', id: 'deadline-1' }], ['grpc-timeout: 150m'])
  const elapsed = Date.now() - started
  t.same(call.frames.map(statusOf), [{ code: 4, message: 'Deadline exceeded' }])
  t.ok(elapsed >= 140 && elapsed < 2000, `ended after ${elapsed} ms`)
  t.same(await cancelled, { event: 'cancelled', reason: 'cancelled', cancelled: true }, 'the handler sees cancelled')
})

t.test('a bad grpc-timeout is INTERNAL, as with grpc-js, and the handler never runs', async t => {
  for (const value of ['soon', '5', '123456789S', '1S, 2S']) {
    const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo' }], [`grpc-timeout: ${value}`])
    t.same(call.frames.map(statusOf), [{ code: 13, message: `Invalid grpc-timeout value "${value}"` }], value)
  }
})

t.test('the client closing its socket before the trailers cancels the handler', async t => {
  for (const [path, mode, halfClose] of [['/grpc/test.Test/Unary', 'never', true], ['/grpc/test.Test/ServerStream', 'endless', true], ['/grpc/test.Test/Bidi', undefined, false]] as const) {
    const id = `close-${path}`
    const cancelled = handlerEvent(id)
    const call = await RawCall.open(path)
    call.send(headerBlock(), data(lpm(request({ mode, id, message: 'x' }))))
    if (halfClose) call.send(END)
    if (path.endsWith('Bidi')) await call.until('the echo', () => call.frames[1])
    else await new Promise(resolve => setTimeout(resolve, 50))
    call.ws.close() // no code, as both clients do (the server sees 1005)
    t.same(await cancelled, { event: 'cancelled', reason: 'cancelled', cancelled: true }, path)
    await call.closed()
  }
})

// --- keepalive and idle ---------------------------------------------------------------------------------------

t.test('a socket that never sends its header block is closed after idleTimeout', async t => {
  const url = await startApp({ idleTimeout: 100 })
  const started = Date.now()
  const call = await RawCall.open('/grpc/test.Test/Unary', { url })
  t.same(await call.closed(), { code: 1000, reason: 'idle timeout' })
  t.ok(Date.now() - started >= 95, `after ${Date.now() - started} ms`)
  t.same(call.frames, [])
})

t.test('pings every pingInterval keep a quiet call alive; a peer that stops answering is cut off and its handler cancelled', async t => {
  const url = await startApp({ pingInterval: 40, pingTimeout: 150 })
  const answering = await RawCall.open('/grpc/test.Test/Unary', { url })
  let pings = 0
  answering.ws.on('ping', () => { pings++ })
  answering.send(headerBlock(), data(lpm(request({ mode: 'delay', delayMs: 400, message: 'late' }))), END)
  const closeInfo = await answering.closed()
  t.equal(closeInfo.code, 1000)
  t.equal(response(answering.frames[1]!.body).message, 'late', 'the call completes')
  t.ok(pings >= 3, `${pings} pings answered meanwhile`)

  const cancelled = handlerEvent('stalled-1')
  const silent = await RawCall.open('/grpc/test.Test/Unary', { url, autoPong: false })
  silent.send(headerBlock(), data(lpm(request({ mode: 'never', id: 'stalled-1' }))), END)
  t.match(await cancelled, { event: 'cancelled', cancelled: true }, 'the handler of a stalled peer is cancelled')
  t.equal((await silent.closed()).code, 1006, 'the socket is cut off (no close handshake with a stalled peer)')
})

t.test('app.close() lets a grpc-websockets call in flight finish within the grace period', async t => {
  const app = Fastify()
  await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }], closeGracePeriod: 2000 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const call = await RawCall.open('/grpc/test.Test/Unary', { url })
  call.send(headerBlock(), data(lpm(request({ mode: 'delay', delayMs: 200, message: 'drained' }))), END)
  await new Promise(resolve => setTimeout(resolve, 50))
  await bounded('app.close()', app.close())
  t.equal((await call.closed()).code, 1000, 'the call ended normally')
  t.equal(statusOf(call.frames.at(-1)!).code, 0, 'with its trailers: OK')
})

t.test('app.close() cancels a grpc-websockets call still running after the grace period and closes with 1001', async t => {
  const app = Fastify()
  await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(events) }], closeGracePeriod: 300 })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const cancelled = handlerEvent('shutdown-1')
  const call = await RawCall.open('/grpc/test.Test/ServerStream', { url })
  call.send(headerBlock(), data(lpm(request({ mode: 'endless', id: 'shutdown-1' }))), END)
  await call.until('a first message', () => call.frames[1])
  const started = Date.now()
  await bounded('app.close()', app.close())
  t.ok(Date.now() - started >= 250, 'the grace period was given')
  t.equal((await call.closed()).code, 1001)
  t.equal(call.frames.at(-1)!.flag, 0, 'no trailers: the socket closed under the call')
  t.match(await cancelled, { event: 'cancelled', cancelled: true })
})

// --- protocol errors -------------------------------------------------------------------------------------

t.test('protocol errors end the call with INTERNAL and the socket with 1002 (1003 for text)', async t => {
  const cases: Array<[string, Buffer[] | string, RegExp, number]> = [
    ['unknown control byte', [Buffer.of(2, 0)], /unknown control byte 0x02/, 1002],
    ['end with a payload', [Buffer.of(1, 1)], /end-of-stream message with a payload/, 1002],
    ['empty message', [Buffer.alloc(0)], /empty WebSocket message/, 1002],
    ['text message', 'hello', /text WebSocket message/, 1003],
    ['compressed flag', [data(lpm(request({}), 1))], /compressed message/, 1000],
    // mode 'never': the handler does not answer at the end, so the data after it is what ends the call.
    ['data after end', [data(lpm(request({ mode: 'never' }))), END, data(lpm(request({})))], /request data after the end of the request stream/, 1000],
    ['end inside a message', [data(lpm(request({ message: 'abc' })).subarray(0, 7)), END], /ended inside a message \(7 bytes of it received\)/, 1000]
  ]
  for (const [name, messages, message, closeCode] of cases) {
    const call = await RawCall.open('/grpc/test.Test/ClientStream')
    call.send(headerBlock())
    if (typeof messages === 'string') call.ws.send(messages)
    else call.send(...messages)
    const { code } = await call.closed()
    t.equal(code, closeCode, `${name}: close ${closeCode}`)
    const status = statusOf(call.frames.at(-1)!)
    t.equal(status.code, 13, `${name}: INTERNAL`)
    t.match(status.message, message)
  }
})

t.test('a text message instead of the header block: INTERNAL, close 1003', async t => {
  const call = await RawCall.open('/grpc/test.Test/Unary')
  call.ws.send('content-type: application/grpc-web+proto\r\n')
  t.equal((await call.closed()).code, 1003)
  t.equal(statusOf(call.frames[0]!).code, 13)
})

// --- interceptors, hooks, the Fastify request -------------------------------------------------------------

t.test('interceptors, Fastify hooks and fastifyRequestOf apply as on the grpc-ws.v1 route', async t => {
  const seen: string[] = []
  const interceptor: grpc.ServerInterceptor = (method, call) => new grpc.ServerInterceptingCall(call, {
    start: next => {
      next({
        onReceiveMetadata: (metadata, mdNext) => {
          seen.push(`${method.path} ${fastifyRequestOf({ metadata })?.url ?? 'no request'} ${String(fastifyRequestOf({ metadata })?.headers['x-hooked'])}`)
          if (metadata.get('authorization')[0] !== 'Bearer ok') {
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'who are you?' })
            return
          }
          mdNext(metadata)
        }
      })
    }
  })
  const url = await startApp({ interceptors: [interceptor] }, createTestService(events), async app => {
    app.addHook('onRequest', async request => { request.headers['x-hooked'] = 'yes' })
  })
  const refused = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo' }], [], url)
  t.same(refused.frames.map(statusOf), [{ code: 16, message: 'who are you?' }])
  const allowed = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo', message: 'in' }], ['authorization: Bearer ok'], url)
  t.equal(response(allowed.frames[1]!.body).message, 'in')
  t.same(seen, ['/test.Test/Unary /grpc/test.Test/Unary yes', '/test.Test/Unary /grpc/test.Test/Unary yes'])

  const throwing = await startApp({ interceptors: [() => { throw new Error('boom') }] })
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo' }], [], throwing)
  t.same(call.frames.map(statusOf), [{ code: 13, message: 'Server interceptor threw: boom' }])
})

// --- the grpcWebSocketsPrefix option ------------------------------------------------------------------------

t.test('grpcWebSocketsPrefix: defaults to path, may be set apart, or false to turn the route off', async t => {
  const custom = await startApp({ path: '/ws', grpcWebSocketsPrefix: '/compat/v1' })
  const call = await exchange('/compat/v1/test.Test/Unary', [{ mode: 'echo', message: 'prefixed' }], [], custom)
  t.equal(response(call.frames[1]!.body).message, 'prefixed')
  t.equal((await upgradeStatus(`${custom}/ws/test.Test/Unary`, ['grpc-websockets'])).status, 404, 'not under path any more')

  const followsPath = await startApp({ path: '/rpc/' })
  const viaPath = await exchange('/rpc/test.Test/Unary', [{ mode: 'echo', message: 'via path' }], [], followsPath)
  t.equal(response(viaPath.frames[1]!.body).message, 'via path', 'the default is path, without its trailing "/"')

  const root = await startApp({ grpcWebSocketsPrefix: '/' })
  const atRoot = await exchange('/test.Test/Unary', [{ mode: 'echo', message: 'root' }], [], root)
  t.equal(response(atRoot.frames[1]!.body).message, 'root')

  const off = await startApp({ grpcWebSocketsPrefix: false })
  t.equal((await upgradeStatus(`${off}/grpc/test.Test/Unary`, ['grpc-websockets'])).status, 404)
})

t.test('grpcWebSocketsPrefix: a bad value rejects register with FST_GRPCWS_INVALID_OPTION', async t => {
  for (const value of ['grpc', '/grpc/', '/a/:id', '/a/*', '/a b', '', 7, null, true]) {
    const app = Fastify()
    await t.rejects(async () => { await app.register(fastifyGrpcWs, { grpcWebSocketsPrefix: value as any }) },
      { code: 'FST_GRPCWS_INVALID_OPTION', message: /invalid option "grpcWebSocketsPrefix"/ }, JSON.stringify(value))
    await app.close()
  }
  const app = Fastify()
  await t.rejects(async () => { await app.register(fastifyGrpcWs, { path: '/a/:tenant' }) },
    { code: 'FST_GRPCWS_INVALID_OPTION', message: /\(the default: path\)/ }, 'a parametric path needs an explicit prefix')
  await app.close()
})

t.test('the route works when the app registered @fastify/websocket itself', async t => {
  const url = await startApp({}, createTestService(events), async app => { await app.register(websocket) })
  const call = await exchange('/grpc/test.Test/Unary', [{ mode: 'echo', message: 'shared' }], [], url)
  t.equal(call.ws.protocol, 'grpc-websockets')
  t.equal(response(call.frames[1]!.body).message, 'shared')
})

t.test('the app\'s own handleProtocols choosing another subprotocol: close 1002', async t => {
  const url = await startApp({}, createTestService(events), async app => {
    await app.register(websocket, { options: { handleProtocols: () => 'grpc-websockets-other' } })
  })
  // `ws` would refuse a reply naming a subprotocol it did not offer; offer both.
  const call = await RawCall.open('/grpc/test.Test/Unary', { url, protocols: ['grpc-websockets', 'grpc-websockets-other'] })
  t.same(await call.closed(), { code: 1002, reason: 'subprotocol grpc-websockets was not negotiated' })
})
