// The forwarder's own behaviour: its options, conflicts, discovery, the
// request metadata policy, and what happens when the upstream is down, dies,
// or is slow, and when the client leaves. The upstream is a grpc-js server in
// another process (test/helpers/upstream-child.ts).
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { createServer } from 'node:net'
import t, { type Test } from 'tap'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { validateOptions } from '../../lib/options.js'
import { collect, handlerEvent, nextId, unary, unaryError } from '../helpers/parity.js'
import { TestClient, createTestService, testDefinition } from '../helpers/test-service.js'
import { UpstreamProcess } from '../helpers/upstream-process.js'
import { webClient } from '../helpers/web-client.js'
import { EventEmitter } from 'node:events'

const upstream = await UpstreamProcess.start()
t.teardown(async () => { await upstream.close() })

const ALL_METHODS = { name: 'test.Test', methods: ['Unary', 'ServerStream', 'ClientStream', 'Bidi'] }

async function forwarding (t: Test, options: FastifyGrpcWsOptions): Promise<{ client: any, wsUrl: string, host: string }> {
  const app = Fastify()
  await app.register(fastifyGrpcWs, options)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const wsUrl = `ws://127.0.0.1:${port}/grpc`
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl) })
  t.teardown(async () => {
    client.close()
    await app.close()
  })
  return { client, wsUrl, host: `127.0.0.1:${port}` }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise(resolve => server.close(resolve))
  return port
}

async function readyError (options: FastifyGrpcWsOptions): Promise<any> {
  const app = Fastify()
  try {
    await app.register(fastifyGrpcWs, options)
    await app.ready()
  } catch (err) {
    return err
  } finally {
    await app.close()
  }
  throw new Error('ready() succeeded')
}

t.test('Should refuse malformed upstreams options with FST_GRPCWS_INVALID_OPTION naming the option', async t => {
  const cases: Array<[unknown, RegExp]> = [
    [{}, /upstreams.*expected an array/],
    [[{ services: 'reflection' }], /upstreams\[0\]\.target/],
    [[{ target: 'h:1', services: [] }], /upstreams\[0\]\.services/],
    [[{ target: 'h:1', services: 'all' }], /upstreams\[0\]\.services/],
    [[{ target: 'h:1', services: ['not a name'] }], /upstreams\[0\]\.services\[0\].*fully-qualified/],
    [[{ target: 'h:1', services: ['a.B', 'a.B'] }], /listed twice/],
    [[{ target: 'h:1', services: [{ name: 'a.B', methods: [] }] }], /services\[0\]\.methods/],
    [[{ target: 'h:1', services: [{ name: 'a.B', methods: ['no/slash'] }] }], /services\[0\]\.methods/],
    [[{ target: 'h:1', services: [{ Get: { path: 'nope' } }] }], /ServiceDefinition/],
    [[{ target: 'h:1', services: 'reflection', credentials: {} }], /credentials/],
    [[{ target: 'h:1', services: 'reflection', channelOptions: 3 }], /channelOptions/],
    [[{ target: 'h:1', services: 'reflection', discoveryTimeout: 0 }], /discoveryTimeout/],
    [[{ target: 'h:1', services: 'reflection', metadata: { allow: 'x' } }], /metadata\.allow/],
    [[{ target: 'h:1', services: 'reflection', metadata: { cookies: true } }], /metadata\.cookies.*unknown/],
    [[{ target: 'h:1', services: 'reflection', metadata: { forwarded: 'yes' } }], /metadata\.forwarded/],
    [[{ target: 'h:1', services: 'reflection', retries: 3 }], /upstreams\[0\]\.retries.*unknown/]
  ]
  for (const [upstreams, message] of cases) {
    t.throws(() => validateOptions({ upstreams } as any), { code: 'FST_GRPCWS_INVALID_OPTION', message }, JSON.stringify(upstreams))
  }
  const resolved = validateOptions({ upstreams: [{ target: 'h:1', services: ['a.B', { name: 'c.D', methods: ['M'] }, testDefinition] }] })
  t.same(resolved.upstreams[0]!.reflect, ['a.B'])
  t.same([...resolved.upstreams[0]!.known.keys()], ['c.D', 'test.Test'])
  t.same(resolved.upstreams[0]!.known.get('c.D'), ['/c.D/M'])
})

t.test('Should refuse a service both in-process and forwarded, or forwarded to two upstreams', async t => {
  const implementation = createTestService(new EventEmitter())
  const inProcess = await readyError({ services: [{ definition: testDefinition, implementation }], upstreams: [{ target: upstream.address, services: ['test.Test'] }] })
  t.equal(inProcess.code, 'FST_GRPCWS_UPSTREAM_CONFLICT')
  t.match(inProcess.message, /test\.Test is both served in-process and forwarded to 127\.0\.0\.1/)
  const twice = await readyError({ upstreams: [{ target: 'a:1', services: [ALL_METHODS] }, { target: 'b:1', services: [testDefinition] }] })
  t.equal(twice.code, 'FST_GRPCWS_UPSTREAM_CONFLICT')
  t.match(twice.message, /test\.Test is forwarded to both a:1 and b:1/)
  // Found only at ready, by reflection.
  const discovered = await readyError({ services: [{ definition: testDefinition, implementation }], upstreams: [{ target: upstream.address, services: 'reflection' }] })
  t.equal(discovered.code, 'FST_GRPCWS_UPSTREAM_CONFLICT')
  // addService after register.
  const app = Fastify()
  t.teardown(async () => { await app.close() })
  await app.register(fastifyGrpcWs, { upstreams: [{ target: upstream.address, services: [testDefinition] }] })
  t.throws(() => { app.grpc.addService(testDefinition, implementation) }, { code: 'FST_GRPCWS_UPSTREAM_CONFLICT' })
})

t.test('Should fail ready with FST_GRPCWS_UPSTREAM_DISCOVERY when reflection is unavailable', async t => {
  const bare = await UpstreamProcess.start({ reflection: false })
  t.teardown(async () => { await bare.close() })
  const all = await readyError({ upstreams: [{ target: bare.address, services: 'reflection' }] })
  t.equal(all.code, 'FST_GRPCWS_UPSTREAM_DISCOVERY')
  t.match(all.message, new RegExp(`upstream ${bare.address}: reflection failed: 12 UNIMPLEMENTED`))
  const named = await readyError({ upstreams: [{ target: bare.address, services: ['test.Test'] }] })
  t.equal(named.code, 'FST_GRPCWS_UPSTREAM_DISCOVERY')
  t.match(named.message, /list each service's methods \(\{ name, methods \}\) or give its definition/)
  const unknown = await readyError({ upstreams: [{ target: upstream.address, services: ['test.Nope'] }] })
  t.match(unknown.message, /reflection does not know service test\.Nope/)
  const down = await readyError({ upstreams: [{ target: `127.0.0.1:${await freePort()}`, services: 'reflection' }] })
  t.match(down.message, /reflection failed: 14 UNAVAILABLE/)
  // Listed methods need no reflection: the same bare upstream serves.
  const { client } = await forwarding(t, { upstreams: [{ target: bare.address, services: [ALL_METHODS] }] })
  t.equal((await unary(client, { mode: 'echo', message: 'no reflection' })).value.message, 'no reflection')
})

t.test('Should learn the methods of named services by reflection and forward only those', async t => {
  const { client } = await forwarding(t, { upstreams: [{ target: upstream.address, services: ['test.Test'] }] })
  t.equal((await unary(client, { mode: 'echo', message: 'named' })).value.message, 'named')
  const err = await new Promise<grpc.ServiceError>(resolve => {
    client.makeUnaryRequest('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', (x: Buffer) => x, (x: Buffer) => x, Buffer.alloc(0), (e: grpc.ServiceError) => { resolve(e) })
  })
  t.equal(err.code, grpc.status.UNIMPLEMENTED, 'a service not listed is not forwarded')
})

t.test('Should answer UNAVAILABLE with the cause while the upstream is down, and forward once it is up', async t => {
  const port = await freePort()
  const { client } = await forwarding(t, { upstreams: [{ target: `127.0.0.1:${port}`, services: [ALL_METHODS] }] })
  const err = await unaryError(client, { mode: 'echo', message: 'x' })
  t.equal(err.code, grpc.status.UNAVAILABLE)
  t.match(err.details, /ECONNREFUSED 127\.0\.0\.1:\d+/, 'the cause')
  const late = await UpstreamProcess.start({ port })
  t.teardown(async () => { await late.close() })
  let answer = ''
  for (let i = 0; i < 60 && answer === ''; i++) {
    try {
      answer = (await unary(client, { mode: 'echo', message: 'up now' })).value.message
    } catch {
      await new Promise(resolve => setTimeout(resolve, 250))
    }
  }
  t.equal(answer, 'up now', 'the channel reconnects')
})

t.test('Should end a forwarded stream with UNAVAILABLE when the upstream dies mid-stream', async t => {
  const doomed = await UpstreamProcess.start()
  const { client } = await forwarding(t, { upstreams: [{ target: doomed.address, services: 'reflection' }] })
  const call = client.ServerStream({ mode: 'endless' })
  call.once('data', () => { void doomed.kill() })
  const result = await collect(call)
  t.ok(result.messages.length > 0, 'messages arrived before')
  t.equal(result.status.code, grpc.status.UNAVAILABLE)
  t.ok(result.status.details.length > 0, `with the cause: ${result.status.details}`)
})

t.test('Should cancel the upstream call when the client disconnects mid-call', async t => {
  const { wsUrl } = await forwarding(t, { upstreams: [{ target: upstream.address, services: 'reflection' }] })
  const { client, test } = webClient(wsUrl)
  const id = nextId()
  const cancelled = handlerEvent(upstream.events, id)
  for await (const _ of test.serverStream({ mode: 'endless', id })) {
    client.close()
    break
  }
  const event = await cancelled
  t.equal(event.event, 'cancelled')
  t.equal(event.cancelled, true, 'the upstream handler sees call.cancelled')
})

/** Writes `count` requests numbered from 1, honouring backpressure, then ends the call. */
function writeNumbered (call: grpc.ClientWritableStream<any>, count: number, payload: Buffer, written: () => void): void {
  let i = 0
  const pump = (): void => {
    while (i < count) {
      i++
      if (!call.write({ message: String(i), payload }, written)) { call.once('drain', pump); return }
    }
    call.end()
  }
  pump()
}

t.test('Should forward requests only as fast as a slow upstream takes them', async t => {
  const { client } = await forwarding(t, { upstreams: [{ target: upstream.address, services: 'reflection' }] })
  const count = 120
  const payload = Buffer.alloc(64 * 1024, 5)
  const md = new grpc.Metadata()
  md.set('x-upstream', 'slow')
  md.set('x-upstream-delay-ms', '10')
  let written = 0
  const done = new Promise<string>((resolve, reject) => {
    const call = client.ClientStream(md, (err: grpc.ServiceError | null, value: { message: string }) => { err === null ? resolve(value.message) : reject(err) })
    writeNumbered(call, count, payload, () => { written++ })
  })
  await new Promise(resolve => setTimeout(resolve, 300))
  t.ok(written < count, `after 300 ms the client has sent ${written} of ${count}: held back by the upstream`)
  t.equal(await done, `took ${count}`)
})

/** Waits until `sent()` has not grown for 300 ms (at most 10 s): the sender is held. */
async function stalled (sent: () => number): Promise<number> {
  let last = -1
  for (let i = 0; i < 33 && sent() !== last; i++) {
    last = sent()
    await new Promise(resolve => setTimeout(resolve, 300))
  }
  return sent()
}

/**
 * A ServerStream call of `count` 1-byte responses (numbered from 1) that the
 * client does not read: how many the upstream wrote before it was held back
 * (its write() returned false, with no drain since), and the messages once
 * the client reads.
 */
async function heldResponses (client: any, count: number): Promise<{ held: number, finished: boolean, readMeanwhile: number, read: () => Promise<{ status: grpc.StatusObject, messages: string[] }> }> {
  const id = nextId()
  let written = 0
  let finished = false
  const onRefused = (e: { sent: number }): void => { written = e.sent }
  upstream.events.on(`${id}:refused`, onRefused)
  void handlerEvent(upstream.events, `${id}:flood`).then(() => { finished = true })
  const call = client.ServerStream({ mode: 'numbered-flood', count, size: 1, id })
  call.pause()
  const messages: string[] = []
  call.on('data', (m: { message: string }) => { messages.push(m.message) })
  call.on('error', () => {})
  const status = new Promise<grpc.StatusObject>(resolve => call.once('status', resolve))
  const held = await stalled(() => written)
  return {
    held,
    finished,
    readMeanwhile: messages.length,
    read: async () => {
      call.resume()
      const result = { status: await status, messages }
      upstream.events.off(`${id}:refused`, onRefused)
      return result
    }
  }
}

// Tiny messages, far more than FORWARD_QUEUED_MESSAGES, while their bytes
// (about 10 a message) stay below FORWARD_HIGH_WATER_MARK: only the message
// bound stops the forwarder from taking all of them.
t.test('Should stop reading an upstream streaming tiny messages to a client that does not read, then deliver them all in order', async t => {
  const count = 20000
  const expected = Array.from({ length: count }, (_, i) => String(i + 1))
  const { wsUrl } = await forwarding(t, { upstreams: [{ target: upstream.address, services: 'reflection' }] })
  // The smallest window, so that the client's side holds few of them.
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl, { initialWindowSize: 1024 }) })
  t.teardown(() => { client.close() })
  const forwarded = await heldResponses(client, count)
  t.equal(forwarded.readMeanwhile, 0, 'the client read nothing meanwhile')
  t.notOk(forwarded.finished, `the upstream is held back: its write() returned false after ${forwarded.held} of ${count}, with no drain since`)
  // What the upstream may write unread is the channel's HTTP/2 stream
  // window (65,535 bytes, at least 14 a message here with its prefix) and
  // the plugin's share: FORWARD_QUEUED_MESSAGES and the client's window
  // (1024 bytes, some 70 of these). 256 KiB of them, the byte bound, would
  // be all 20,000. (A direct grpc-js client, which decodes what HTTP/2 hands
  // it whole, lets the upstream write all 20,000: no reference here.)
  const window = Math.floor(65535 / 14)
  t.ok(forwarded.held < window + 300, `the upstream wrote ${forwarded.held - window} past the HTTP/2 window before it was held back`)
  const { status, messages } = await forwarded.read()
  t.equal(status.code, grpc.status.OK)
  t.equal(messages.length, count)
  t.ok(messages.every((m, i) => m === expected[i]), 'all arrived, in order')
})

/**
 * A ClientStream call of `count` small requests (numbered from 1) to a held
 * upstream call: how many the client got sent before it was held back, and
 * the answer once released.
 */
async function heldRequests (client: any, count: number): Promise<{ held: number, release: () => Promise<string> }> {
  const id = nextId()
  const md = new grpc.Metadata()
  md.set('x-upstream', 'held')
  md.set('x-upstream-id', id)
  const isHeld = handlerEvent(upstream.events, `${id}:held`)
  let written = 0
  const payload = Buffer.alloc(32, 1)
  const done = new Promise<string>((resolve, reject) => {
    const call = client.ClientStream(md, (err: grpc.ServiceError | null, value: { message: string }) => { err === null ? resolve(value.message) : reject(err) })
    writeNumbered(call, count, payload, () => { written++ })
  })
  await isHeld
  const held = await stalled(() => written)
  return { held, release: async () => { upstream.release(id); return await done } }
}

t.test('Should hold back a client sending many small requests to an upstream that does not read, then deliver them all in order', async t => {
  // More than the upstream's own HTTP/2 transport takes from a call it does
  // not read (about 1 MB, some 23,000 of these 41-byte requests here).
  const count = 40000
  const expected = Array.from({ length: count }, (_, i) => String(i + 1)).join(',')
  // What the upstream's transport takes from a grpc-js client sending to it directly.
  const direct = new TestClient(upstream.address, grpc.credentials.createInsecure())
  t.teardown(() => { direct.close() })
  const alone = await heldRequests(direct, count)
  t.ok(alone.held < count, `a direct client is held back by the upstream after ${alone.held}`)
  t.ok(await alone.release() === expected, 'all arrived, in order')

  // The smallest window the plugin gives a call's requests.
  const { wsUrl } = await forwarding(t, { initialWindowSize: 1024, upstreams: [{ target: upstream.address, services: 'reflection' }] })
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl) })
  t.teardown(() => { client.close() })
  const forwarded = await heldRequests(client, count)
  const extra = forwarded.held - alone.held
  // The plugin's share: the route's window (1024 bytes, some 20 of these)
  // and FORWARD_QUEUED_MESSAGES; 64 KiB of them, the byte bound, would be
  // some 1,600.
  t.ok(forwarded.held < count, `the forwarded client is held back after ${forwarded.held}`)
  t.ok(extra < 200, `through the forwarder, the client got ${extra} more sent before it was held back than directly`)
  t.ok(await forwarded.release() === expected, 'all arrived, in order')
})

t.test('Should forward request metadata under the policy', async t => {
  const seen = async (client: any, md: grpc.Metadata): Promise<Record<string, unknown[]>> => {
    md.set('x-upstream', 'metadata')
    return JSON.parse((await unary(client, { mode: 'echo' }, md)).value.message)
  }
  const request = (): grpc.Metadata => {
    const md = new grpc.Metadata()
    md.set('x-text', 'v')
    md.add('x-data-bin', Buffer.from([0, 255]))
    md.set('cookie', 'session=secret')
    md.set('x-forwarded-for', '203.0.113.7')
    md.set('x-forwarded-host', 'spoofed.example')
    md.set('x-private', 'p')
    return md
  }
  const plain = await forwarding(t, { upstreams: [{ target: upstream.address, services: 'reflection' }] })
  const a = await seen(plain.client, request())
  t.same(a['x-text'], ['v'])
  t.same(a['x-data-bin'], [{ bin: '00ff' }], 'binary values unchanged')
  t.notOk('cookie' in a, 'cookie is not forwarded by default')
  t.same(a['x-forwarded-for'], ['203.0.113.7, 127.0.0.1'], 'the client address appended')
  t.same(a['x-forwarded-host'], [plain.host], 'the host the call was made to')
  t.match(a['user-agent']?.[0], /^grpc-node-js\//, "the channel's own user-agent")
  for (const key of ['grpc-timeout', 'te', 'host', 'connection']) t.notOk(key in a, `transport key ${key} is not forwarded`)

  const custom = await forwarding(t, { upstreams: [{ target: upstream.address, services: 'reflection', metadata: { cookie: true, drop: ['x-private'], forwarded: false } }] })
  const b = await seen(custom.client, request())
  t.same(b.cookie, ['session=secret'], 'cookie when asked for')
  t.notOk('x-private' in b, 'a dropped key')
  t.same(b['x-forwarded-for'], ['203.0.113.7'], 'forwarded: false leaves the header as it came')

  const allow = await forwarding(t, { upstreams: [{ target: upstream.address, services: 'reflection', metadata: { allow: ['x-text', 'x-upstream'] } }] })
  const c = await seen(allow.client, request())
  t.same(Object.keys(c).filter(k => k.startsWith('x-')).sort(), ['x-forwarded-for', 'x-forwarded-host', 'x-text', 'x-upstream'])
  t.notOk('cookie' in c)
})

t.test('Should run the plugin interceptors on forwarded calls', async t => {
  const seen: string[] = []
  const interceptor: grpc.ServerInterceptor = (method, call) => {
    seen.push(`${method.path} ${String(method.requestStream)} ${String(method.responseStream)}`)
    return new grpc.ServerInterceptingCall(call)
  }
  const { client } = await forwarding(t, { interceptors: [interceptor], upstreams: [{ target: upstream.address, services: 'reflection' }] })
  await unary(client, { mode: 'echo' })
  t.same(seen, ['/test.Test/Unary true true'], 'seen as the generic bidi handler it is')
})

t.test('Should apply maxSendMessageSize to what the channel reads from the upstream', async t => {
  const { client } = await forwarding(t, { maxSendMessageSize: 1024, upstreams: [{ target: upstream.address, services: 'reflection' }] })
  t.equal((await unary(client, { mode: 'size', size: 500 })).value.payload.length, 500)
  const err = await unaryError(client, { mode: 'size', size: 4096 })
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
})

t.test('Should name the upstream in its logs', async t => {
  const lines: Array<Record<string, unknown>> = []
  const stream = { write: (line: string) => { lines.push(JSON.parse(line)) } }
  const port = await freePort()
  const app = Fastify({ logger: { level: 'debug', stream } })
  await app.register(fastifyGrpcWs, { upstreams: [{ target: `127.0.0.1:${port}`, services: [ALL_METHODS] }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(`ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`) })
  t.teardown(async () => { client.close(); await app.close() })
  t.equal((await unaryError(client, { mode: 'echo' })).code, grpc.status.UNAVAILABLE)
  const warning = lines.find(l => l.msg === 'upstream unavailable')
  t.equal(warning?.upstream, `127.0.0.1:${port}`)
  t.equal(warning?.method, '/test.Test/Unary')
  t.ok(lines.some(l => l.msg === 'forwarded call ended' && l.upstream === `127.0.0.1:${port}` && l.code === grpc.status.UNAVAILABLE))
})
