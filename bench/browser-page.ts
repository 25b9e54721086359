/**
 * The browser benchmark's page (bundled by esbuild, served by bench/browser.ts):
 * the Echo service called from Chromium four ways, each by the load loops of
 * the Node bench (bench/load.ts), on the same payloads (bench/shared.ts):
 * - web: this project's browser client (fastify-grpc-ws/client) over its WebSocket
 * - http: the same client's HTTP fallback, its WebSocket refused, so calls go
 *   over gRPC-Web with fetch
 * - connect-web: @connectrpc/connect-web's Connect transport (fetch, binary) to connect-fastify
 * - ws: a raw WebSocket echo (the floor: no protobuf, no framing)
 * The three protobuf clients encode and decode with protobuf-es (toBinary/fromBinary).
 */
import { fromBinary, toBinary, type DescMessage } from '@bufbuild/protobuf'
import { createClient as createConnectClient } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-web'
import { GrpcWsClient, type BidiCall, type MethodDescriptor, type StreamCall, type WebSocketLike } from '../lib/client/web/index.js'
import { createClient as createWebClient } from '../lib/client/web/index.js'
import type { RunResult } from './common.js'
import { echoService } from './connect-service.js'
import { echoDriver, errorText, runLoad, type BidiHandle, type Done, type Driver, type EchoSocket, type LoadSpec } from './load.js'
import { payloadBytes } from './shared.js'

export type PageSystem = 'web' | 'http' | 'connect-web' | 'ws'

export interface PageTargets {
  /** http://127.0.0.1:<port>/grpc of the plugin (WebSocket and gRPC-Web routes). */
  plugin: string
  /** http://127.0.0.1:<port>/grpc of connect-fastify. */
  connect: string
  /** ws://127.0.0.1:<port> of the raw echo server (/echo, /stream). */
  ws: string
}

interface EchoMessage { message: string, payload: Uint8Array }

const service = echoService()
// CANCELLED (1) is how the loops end a stream: not an error.
const cancelled = (err: unknown): boolean => (err as { code?: unknown }).code === 1

function descriptor (name: 'echo' | 'serverStream' | 'bidi'): MethodDescriptor<EchoMessage, EchoMessage> {
  const method = service.method[name]!
  return {
    path: `/${service.typeName}/${method.name}`,
    serialize: m => toBinary(method.input, m as any),
    deserialize: b => fromBinary(method.output as DescMessage, b) as unknown as EchoMessage
  }
}
const ECHO = descriptor('echo')
const SERVER_STREAM = descriptor('serverStream')
const BIDI = descriptor('bidi')

function request (message: string, size: number): EchoMessage {
  return { $typeName: service.method.echo!.input.typeName, message, payload: payloadBytes(size) } as EchoMessage
}

function consume (call: StreamCall<unknown>, onMessage: () => void, onEnd: Done): void {
  const loop = async (): Promise<void> => { for await (const _ of call) onMessage() }
  loop().then(() => { onEnd(null) }, (err: unknown) => { onEnd(cancelled(err) ? null : errorText(err)) })
}

const notMeasured = (onEnd: Done): void => { onEnd('not measured for this client') }

/** The project's client, over its WebSocket or (http) over gRPC-Web. */
async function clientDriver (client: GrpcWsClient, size: number, bidi: boolean): Promise<Driver> {
  const req = request('', size)
  await client.unary(ECHO, req)
  return {
    unary (done) { client.unary(ECHO, req).then(() => { done(null) }, (err: unknown) => { done(errorText(err)) }) },
    serverStream (count, onMessage, onEnd) {
      const call = client.serverStream(SERVER_STREAM, request(String(count), size))
      consume(call, onMessage, onEnd)
      return () => { call.cancel() }
    },
    bidi (onMessage, _onDrain, onEnd): BidiHandle {
      if (!bidi) { notMeasured(onEnd); return { write: () => false, end: () => {}, cancel: () => {} } }
      const call: BidiCall<EchoMessage, EchoMessage> = client.bidi(BIDI)
      consume(call, onMessage, onEnd)
      // send() queues within the server's credit; the loop's bound on messages in flight is the limit.
      return { write: () => { void call.send(req); return true }, end: () => { call.close() }, cancel: () => { call.cancel() } }
    },
    close () { client.close() }
  }
}

/**
 * A WebSocket the network refuses (as a proxy that answers upgrades with an
 * error would): fails asynchronously, like a browser's, before it opens.
 */
class RefusedWebSocket implements WebSocketLike {
  binaryType = 'arraybuffer'
  readonly readyState = 3
  readonly protocol = ''
  onopen: ((event: any) => void) | null = null
  onmessage: WebSocketLike['onmessage'] = null
  onclose: WebSocketLike['onclose'] = null
  onerror: ((event: any) => void) | null = null
  constructor () {
    setTimeout(() => {
      this.onerror?.({})
      this.onclose?.({ code: 1006, reason: '' })
    }, 0)
  }

  send (): void { throw new Error('not open') }
  close (): void {}
}

async function httpDriver (url: string, size: number): Promise<Driver> {
  // Retries of the WebSocket (every retryMs) would not succeed anyway; an hour keeps them out of the windows.
  const client = createWebClient(url, { WebSocket: RefusedWebSocket, retryMs: 3_600_000 })
  const driver = await clientDriver(client, size, false)
  if (client.transport !== 'http') throw new Error(`the HTTP fallback client went over ${client.transport}`)
  return driver
}

async function connectWebDriver (baseUrl: string, size: number): Promise<Driver> {
  const transport = createConnectTransport({ baseUrl, useBinaryFormat: true })
  // Runtime descriptors carry no static method types: call it untyped.
  const client = createConnectClient(service, transport) as any
  const req = { message: '', payload: payloadBytes(size) }
  await client.echo(req)
  return {
    unary (done) { (client.echo(req) as Promise<unknown>).then(() => { done(null) }, (err: unknown) => { done(errorText(err)) }) },
    serverStream (count, onMessage, onEnd) {
      const abort = new AbortController()
      const loop = async (): Promise<void> => {
        for await (const _ of client.serverStream({ message: String(count), payload: req.payload }, { signal: abort.signal }) as AsyncIterable<unknown>) onMessage()
      }
      loop().then(() => { onEnd(null) }, (err: unknown) => { onEnd(abort.signal.aborted ? null : errorText(err)) })
      return () => { abort.abort() }
    },
    // fetch has no full-duplex request body in browsers: connect-web does no bidi.
    bidi (_onMessage, _onDrain, onEnd) { notMeasured(onEnd); return { write: () => false, end: () => {}, cancel: () => {} } },
    close () {}
  }
}

async function openSocket (url: string): Promise<WebSocket> {
  const socket = new WebSocket(url)
  socket.binaryType = 'arraybuffer'
  await new Promise<void>((resolve, reject) => {
    socket.onopen = () => { resolve() }
    socket.onerror = () => { reject(new Error(`WebSocket ${url} failed`)) }
  })
  return socket
}

function echoSocket (socket: WebSocket): EchoSocket {
  return {
    send (data) { socket.send(data) },
    close () { socket.close() },
    listen (onMessage, onClose) {
      socket.onmessage = event => { onMessage((event.data as ArrayBuffer).byteLength) }
      socket.onclose = onClose
    }
  }
}

async function wsDriver (target: string, size: number): Promise<Driver> {
  const socket = echoSocket(await openSocket(`${target}/echo`))
  return echoDriver(socket, payloadBytes(size), async () => echoSocket(await openSocket(`${target}/stream`)))
}

async function driverFor (system: PageSystem, targets: PageTargets, size: number): Promise<Driver> {
  switch (system) {
    case 'web': return await clientDriver(createWebClient(targets.plugin), size, true)
    case 'http': return await httpDriver(targets.plugin, size)
    case 'connect-web': return await connectWebDriver(targets.connect, size)
    case 'ws': return await wsDriver(targets.ws, size)
  }
}

/** Tells the orchestrator the window opened or closed (page.exposeFunction). */
declare const benchMark: (phase: 'start' | 'end') => Promise<void>

async function run (system: PageSystem, targets: PageTargets, size: number, spec: LoadSpec): Promise<RunResult> {
  const driver = await driverFor(system, targets, size)
  // The page cannot read its own CPU time: the orchestrator reads Chromium's at the marks.
  return await runLoad(driver, spec, { mark: phase => { void benchMark(phase) }, cpuUs: () => 0 })
}

;(globalThis as { bench?: unknown }).bench = { run }
