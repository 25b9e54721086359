/**
 * The benchmark's load client: one process per system, driven by the
 * orchestrator over IPC. Every load loop is closed (a fixed number of calls
 * or messages in flight), and bounded in time and in count.
 *
 * Systems:
 * - plugin-grpcjs: a stock grpc-js client over createWebSocketChannel (this
 *   project's client; includes grpc-js client-side costs)
 * - plugin-lean: ClientSession (lib/client/session.ts, the protocol core
 *   without grpc-js) with pre-encoded request bytes; responses not decoded
 * - grpc: a stock grpc-js client over HTTP/2
 * - ws: a `ws` client against a bare @fastify/websocket echo
 * - connect: a connect-node client (Connect protocol, HTTP/2, binary)
 * - plugin-web: the plain client (fastify-grpc-ws/client) over `ws`, with
 *   protobuf-es's binary codec
 * - plugin-connect: a Connect client over fastify-grpc-ws/connect, on the
 *   same plain client and codec: beside plugin-web, the Connect layer's cost
 * - forward-grpcjs, forward-lean: the grpc and plugin-lean drivers, aimed at
 *   the forwarder (its grpcServer, its WebSocket route)
 * - plugin-http-grpcweb, plugin-http-connect, cf-http-grpcweb,
 *   cf-http-connect: connect-node's gRPC-Web and Connect (binary)
 *   transports over HTTP/1.1 (Node's agent: one keep-alive socket per call
 *   in flight), to the plugin's HTTP routes and to connect-fastify
 */
import { createClient, type Client } from '@connectrpc/connect'
import { createConnectTransport, createGrpcWebTransport, Http2SessionManager } from '@connectrpc/connect-node'
import * as grpc from '@grpc/grpc-js'
import WebSocket from 'ws'
import { fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf'
import { createWebSocketTransport } from '../lib/client/connect/index.js'
import { createWebSocketChannel } from '../lib/client/grpc-js/index.js'
import { createClient as createWebClient } from '../lib/client/web/index.js'
import { ClientSession, type ClientStream, type WebSocketConstructor } from '../lib/client/session.js'
import {
  BIDI_PATH, ECHO_PATH, SERVER_STREAM_PATH, encodeEcho, payloadOf,
  type ClientCommand, type ClientReply, type MemSpec, type RunResult, type RunSpec
} from './common.js'
import { echoService } from './connect-service.js'
import { echoDriver, errorText, runLoad, type Done, type Driver, type EchoSocket } from './load.js'
import { loadEcho } from './servers/load-proto.js'


function send (reply: ClientReply): void {
  process.send?.(reply)
}

class NoBufferWebSocket extends WebSocket {
  constructor (url: string, protocols?: string | string[]) {
    super(url, protocols, { perMessageDeflate: false })
  }
}

// --- drivers ---------------------------------------------------------------

async function grpcDriver (system: 'grpc' | 'plugin-grpcjs', target: string, size: number, options: grpc.ClientOptions = {}): Promise<Driver & { client: grpc.Client }> {
  const Echo = loadEcho()
  const client: any = system === 'grpc'
    ? new Echo(target, grpc.credentials.createInsecure(), options)
    : new Echo('ignored', grpc.credentials.createInsecure(), { ...options, channelOverride: createWebSocketChannel(target, { webSocketOptions: { perMessageDeflate: false } }) })
  await new Promise<void>((resolve, reject) => {
    client.waitForReady(Date.now() + 10_000, (err: Error | undefined) => { err === undefined || err === null ? resolve() : reject(err) })
  })
  const request = { message: '', payload: payloadOf(size) }
  return {
    client,
    unary (done) {
      client.Echo(request, (err: grpc.ServiceError | null) => { done(err === null ? null : err.message) })
    },
    serverStream (count, onMessage, onEnd) {
      const call = client.ServerStream({ message: String(count), payload: request.payload })
      call.on('data', onMessage)
      call.on('end', () => { onEnd(null) })
      call.on('error', (err: grpc.ServiceError) => { onEnd(err.code === grpc.status.CANCELLED ? null : err.message) })
      return () => { call.cancel() }
    },
    bidi (onMessage, onDrain, onEnd) {
      const call = client.Bidi()
      call.on('data', onMessage)
      call.on('drain', onDrain)
      call.on('end', () => { onEnd(null) })
      call.on('error', (err: grpc.ServiceError) => { onEnd(err.code === grpc.status.CANCELLED ? null : err.message) })
      return { write: () => call.write(request), end: () => { call.end() }, cancel: () => { call.cancel() } }
    },
    close () { client.close() }
  }
}

async function leanSession (target: string): Promise<ClientSession> {
  const session = new ClientSession(target, { WebSocket: NoBufferWebSocket as unknown as WebSocketConstructor })
  await new Promise<void>((resolve, reject) => {
    const stop = session.onStateChange(state => {
      if (state === 'ready') { stop(); resolve() }
      if (state === 'idle' || state === 'closed') { stop(); reject(new Error('session failed to open')) }
    })
    session.connect()
  })
  return session
}

function leanUnary (session: ClientSession, request: Uint8Array, expected: number, done: Done): void {
  let size = -1
  const stream: ClientStream = session.openStream({ path: ECHO_PATH, metadata: [], deadline: Infinity }, {
    onHeaders () {},
    onMessage (message) { size = message.byteLength; stream.consumed() },
    onEnd (status) {
      if (status.code !== 0) done(`${status.code} ${status.details}`)
      else done(size >= expected ? null : `response of ${size} bytes, expected at least ${expected}`)
    }
  })
  stream.send(request)
  stream.halfClose()
}

async function leanDriver (target: string, size: number): Promise<Driver> {
  const session = await leanSession(target)
  const payload = payloadOf(size)
  const request = encodeEcho('', payload)
  const onEnd = (end: Done) => (status: { code: number, details: string }): void => {
    end(status.code === 0 || status.code === 1 ? null : `${status.code} ${status.details}`)
  }
  return {
    unary (done) { leanUnary(session, request, request.byteLength, done) },
    serverStream (count, onMessage, end) {
      const stream: ClientStream = session.openStream({ path: SERVER_STREAM_PATH, metadata: [], deadline: Infinity }, {
        onHeaders () {},
        onMessage () { stream.consumed(); onMessage() },
        onEnd: onEnd(end)
      })
      stream.send(encodeEcho(String(count), payload))
      stream.halfClose()
      return () => { stream.cancel(); end(null) }
    },
    bidi (onMessage, _onDrain, end) {
      const stream: ClientStream = session.openStream({ path: BIDI_PATH, metadata: [], deadline: Infinity }, {
        onHeaders () {},
        onMessage () { stream.consumed(); onMessage() },
        onEnd: onEnd(end)
      })
      // No back-pressure signal here: the caller's bound on messages in flight is the limit.
      return { write: () => { stream.send(request); return true }, end: () => { stream.halfClose() }, cancel: () => { stream.cancel(); end(null) } }
    },
    close () { session.close() }
  }
}

async function openWs (url: string): Promise<WebSocket> {
  const socket = new WebSocket(url, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => { resolve() })
    socket.once('error', reject)
  })
  socket.on('error', () => {})
  return socket
}

/** `end`: how the socket is closed (a server stream's is terminated: the server would push on while a close waits). */
function echoSocket (socket: WebSocket, end: () => void): EchoSocket {
  return {
    send (data) { socket.send(data) },
    close: end,
    listen (onMessage, onClose) {
      socket.on('message', (data: Buffer) => { onMessage(data.byteLength) })
      socket.on('close', onClose)
    }
  }
}

async function wsDriver (target: string, size: number): Promise<Driver> {
  const socket = await openWs(`${target}/echo`)
  return echoDriver(echoSocket(socket, () => { socket.close() }), payloadOf(size), async () => {
    const stream = await openWs(`${target}/stream`)
    return echoSocket(stream, () => { stream.terminate() })
  })
}

async function connectDriver (target: string, size: number): Promise<Driver> {
  const service = echoService()
  const sessionManager = new Http2SessionManager(target)
  const transport = createConnectTransport({ baseUrl: target, httpVersion: '2', useBinaryFormat: true, sessionManager })
  // Runtime descriptors carry no static method types: call it untyped.
  const client = createClient(service, transport) as Client<any> as any
  const request = { message: '', payload: payloadOf(size) }
  await client.echo(request)
  return {
    unary (done) {
      (client.echo(request) as Promise<unknown>).then(() => { done(null) }, (err: unknown) => { done(errorText(err)) })
    },
    serverStream (count, onMessage, onEnd) {
      const abort = new AbortController()
      const run = async (): Promise<void> => {
        for await (const _ of client.serverStream({ message: String(count), payload: request.payload }, { signal: abort.signal }) as AsyncIterable<unknown>) onMessage()
      }
      run().then(() => { onEnd(null) }, (err: unknown) => { onEnd(abort.signal.aborted ? null : errorText(err)) })
      return () => { abort.abort() }
    },
    bidi (onMessage, _onDrain, onEnd) {
      const abort = new AbortController()
      // The request stream: yields what write() queued; ends on end().
      let queued = 0
      let ended = false
      let wake: (() => void) | null = null
      async function * requests (): AsyncGenerator<typeof request> {
        while (true) {
          if (queued > 0) { queued--; yield request; continue }
          if (ended) return
          await new Promise<void>(resolve => { wake = resolve })
        }
      }
      const poke = (): void => { const w = wake; wake = null; w?.() }
      const run = async (): Promise<void> => {
        for await (const _ of client.bidi(requests(), { signal: abort.signal }) as AsyncIterable<unknown>) onMessage()
      }
      run().then(() => { onEnd(null) }, (err: unknown) => { onEnd(abort.signal.aborted ? null : errorText(err)) })
      return {
        write: () => { queued++; poke(); return true },
        end: () => { ended = true; poke() },
        cancel: () => { abort.abort() }
      }
    },
    // A moment for cancelled streams to reset before the session goes.
    close () { setTimeout(() => { sessionManager.abort() }, 200) }
  }
}

/** Unary calls only: these two clients are measured in the unary rows. */
function unaryOnly (unary: Driver['unary'], close: () => void): Driver {
  return {
    unary,
    serverStream (_count, _onMessage, onEnd) { onEnd('not measured for this client'); return () => {} },
    bidi (_onMessage, _onDrain, onEnd) { onEnd('not measured for this client'); return { write: () => false, end: () => {}, cancel: () => {} } },
    close
  }
}

async function webDriver (target: string, size: number): Promise<Driver> {
  const method = echoService().method.echo!
  const client = createWebClient(target, { WebSocket: NoBufferWebSocket })
  const descriptor = {
    path: ECHO_PATH,
    serialize: (m: any) => toBinary(method.input, m),
    deserialize: (b: Uint8Array) => fromBinary(method.output as DescMessage, b)
  }
  const request = { $typeName: method.input.typeName, message: '', payload: payloadOf(size) }
  await client.unary(descriptor, request)
  return unaryOnly(done => { client.unary(descriptor, request).then(() => { done(null) }, (err: unknown) => { done(errorText(err)) }) }, () => { client.close() })
}

async function webConnectDriver (target: string, size: number): Promise<Driver> {
  const transport = createWebSocketTransport({ baseUrl: target, WebSocket: NoBufferWebSocket })
  const client = createClient(echoService(), transport) as Client<any> as any
  const request = { message: '', payload: payloadOf(size) }
  await client.echo(request)
  return unaryOnly(done => { (client.echo(request) as Promise<unknown>).then(() => { done(null) }, (err: unknown) => { done(errorText(err)) }) }, () => { transport.client.close() })
}

/** Unary over HTTP/1.1: the gRPC-Web or the Connect protocol (binary), to an http://… base URL. */
async function httpDriver (protocol: 'grpc-web' | 'connect', target: string, size: number): Promise<Driver> {
  const transport = protocol === 'grpc-web'
    ? createGrpcWebTransport({ baseUrl: target, httpVersion: '1.1' })
    : createConnectTransport({ baseUrl: target, httpVersion: '1.1', useBinaryFormat: true })
  const client = createClient(echoService(), transport) as Client<any> as any
  const request = { message: '', payload: payloadOf(size) }
  await client.echo(request)
  return unaryOnly(done => {
    (client.echo(request) as Promise<{ payload: Uint8Array }>).then(reply => {
      done(reply.payload.byteLength === size ? null : `reply of ${reply.payload.byteLength} bytes, expected ${size}`)
    }, (err: unknown) => { done(errorText(err)) })
  }, () => {})
}

async function driverFor (spec: RunSpec): Promise<Driver> {
  switch (spec.system) {
    case 'plugin-grpcjs': return await grpcDriver('plugin-grpcjs', spec.target, spec.size)
    case 'grpc':
    case 'forward-grpcjs': return await grpcDriver('grpc', spec.target, spec.size)
    case 'plugin-lean':
    case 'forward-lean': return await leanDriver(spec.target, spec.size)
    case 'plugin-http-grpcweb':
    case 'cf-http-grpcweb': return await httpDriver('grpc-web', spec.target, spec.size)
    case 'plugin-http-connect':
    case 'cf-http-connect': return await httpDriver('connect', spec.target, spec.size)
    case 'plugin-web': return await webDriver(spec.target, spec.size)
    case 'plugin-connect': return await webConnectDriver(spec.target, spec.size)
    case 'ws': return await wsDriver(spec.target, spec.size)
    case 'connect': return await connectDriver(spec.target, spec.size)
  }
}

// --- load ---------------------------------------------------------------------

async function run (spec: RunSpec): Promise<RunResult> {
  return await runLoad(await driverFor(spec), spec, {
    mark: phase => { send({ type: 'mark', phase }) },
    cpuUs: () => { const c = process.cpuUsage(); return c.user + c.system }
  })
}

// --- many idle connections ----------------------------------------------------

interface Held {
  call (done: Done): void
  close (): void
}

let held: Held[] = []

async function openOne (spec: MemSpec, payload: Buffer): Promise<Held> {
  if (spec.system === 'ws') {
    const socket = await openWs(`${spec.target}/echo`)
    const waiting: Done[] = []
    socket.on('message', () => { waiting.shift()?.(null) })
    socket.on('close', () => { for (const d of waiting.splice(0)) d('closed') })
    return { call (done) { waiting.push(done); socket.send(payload) }, close () { socket.terminate() } }
  }
  if (spec.system === 'plugin') {
    const session = await leanSession(spec.target)
    const request = encodeEcho('', payload)
    return { call (done) { leanUnary(session, request, request.byteLength, done) }, close () { session.close() } }
  }
  const d = await grpcDriver('grpc', spec.target, payload.byteLength, { 'grpc.use_local_subchannel_pool': 1 })
  return { call: d.unary, close: d.close }
}

const callOnce = async (h: Held): Promise<void> => {
  await new Promise<void>((resolve, reject) => { h.call(error => { error === null ? resolve() : reject(new Error(error)) }) })
}

async function openMany (spec: MemSpec): Promise<{ opened: number, failed: number, ms: number, firstError: string | null }> {
  const payload = payloadOf(100)
  const started = performance.now()
  let opened = 0
  let failed = 0
  let firstError: string | null = null
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < spec.count && performance.now() - started < spec.timeoutMs) {
      next++
      try {
        const h = await openOne(spec, payload)
        held.push(h)
        await callOnce(h)
        opened++
      } catch (err) {
        failed++
        firstError ??= errorText(err)
        if (failed > 100) return
      }
    }
  }
  await Promise.all(Array.from({ length: spec.batch }, worker))
  return { opened, failed, ms: performance.now() - started, firstError }
}

async function callAll (timeoutMs: number): Promise<{ ok: number, failed: number, ms: number }> {
  const started = performance.now()
  let ok = 0
  let failed = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < held.length && performance.now() - started < timeoutMs) {
      const h = held[next++]!
      try { await callOnce(h); ok++ } catch { failed++ }
    }
  }
  await Promise.all(Array.from({ length: 100 }, worker))
  return { ok, failed, ms: performance.now() - started }
}

// --- IPC ---------------------------------------------------------------------------

process.on('message', (msg: ClientCommand) => {
  const reply = (p: Promise<ClientReply>, id: number): void => {
    p.then(send, (err: unknown) => { send({ type: 'error', id, message: errorText(err) }) })
  }
  switch (msg.cmd) {
    case 'run': reply(run(msg.spec).then(result => ({ type: 'result', id: msg.id, result })), msg.id); return
    case 'open': reply(openMany(msg.spec).then(r => ({ type: 'opened', id: msg.id, ...r })), msg.id); return
    case 'callAll': reply(callAll(msg.timeoutMs).then(r => ({ type: 'called', id: msg.id, ...r })), msg.id); return
    case 'closeAll':
      for (const h of held) h.close()
      held = []
      send({ type: 'closed', id: msg.id })
      return
    case 'exit': process.exit(0)
  }
})
process.on('disconnect', () => process.exit(0))
send({ type: 'ready' })
