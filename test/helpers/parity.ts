/**
 * Runs one scenario with the same assertions over every way in: a stock grpc-js client
 * to a grpc-js Server over HTTP/2, and the same stock client over
 * createWebSocketChannel to the plugin. Both servers hold the very same
 * implementation object. With `connect: true`, twice more: the browser
 * client (`fastify-grpc-ws/client`) and a Connect client over
 * createWebSocketTransport, each in grpc-js's shape (web-as-grpc.ts,
 * connect-as-grpc.ts), for the scenarios whose behaviour they define the
 * same way. Scenarios of unary and server-streaming calls opt in to the
 * gRPC-Web HTTP route too (`{ grpcWeb: true }`, grpc-web-shim.ts).
 *
 * With `parityMode.upstream` (test/forward/ sets it before importing a
 * parity file) the handlers run in an upstream grpc-js server in another
 * process instead, which the plugin forwards to (its services found by
 * reflection), and each scenario also runs through the plugin's grpcServer
 * (HTTP/2), 'http2' then being direct to the upstream.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify, { type FastifyInstance } from 'fastify'
import { EventEmitter } from 'node:events'
import type { Test } from 'tap'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { connectAsGrpcClient } from './connect-as-grpc.js'
import { grpcWebShim } from './grpc-web-shim.js'
import { webAsGrpcClient } from './web-as-grpc.js'
import { TestClient, createTestService, testDefinition, type Request, type Response } from './test-service.js'
import { UpstreamProcess } from './upstream-process.js'

export type TransportName = 'http2' | 'websocket' | 'web' | 'connect' | 'grpc-web' | 'forwarded-http2'

/** The ways in through a stock grpc-js client: for scenarios about grpc-js's own client surface. */
export const GRPC_JS: TransportName[] = ['http2', 'websocket', 'forwarded-http2']

/** Set `upstream` before a parity file is imported to run it through the forwarder. */
export const parityMode = { upstream: false }

export interface Transport {
  name: TransportName
  /** The shared client of this transport (one channel). */
  client: any
  /** A further client on a channel of its own. */
  newClient: () => any
  /** Handler events: `events.once(id)` resolves with what a handler reported. */
  events: EventEmitter
}

export interface Env {
  /** HTTP/2 and WebSocket; with `connect: true` also the browser client and the Connect transport. */
  transports: Transport[]
  /** The gRPC-Web HTTP route (unary and server streaming only). */
  grpcWeb: Transport
  events: EventEmitter
  app: FastifyInstance
  grpcServer: grpc.Server
  wsUrl: string
  http2Address: string
  /** The upstream process, in forwarding mode. */
  upstream?: UpstreamProcess
  /** What getHost() says in a handler reached over `name`. */
  handlerHost: (name: TransportName) => string
}

export interface EnvOptions {
  plugin?: Partial<FastifyGrpcWsOptions>
  server?: grpc.ServerOptions
  /** Also run the scenarios through the browser client and a Connect client over the WebSocket transport. */
  connect?: boolean
}

export async function startEnv (t: Test, options: EnvOptions = {}): Promise<Env> {
  const upstream = parityMode.upstream ? await UpstreamProcess.start() : undefined
  const events = upstream?.events ?? new EventEmitter()
  events.setMaxListeners(0)
  const grpcServer = new grpc.Server(options.server)
  const app = Fastify()
  await app.register(fastifyGrpcWs, {
    ...options.plugin,
    ...upstream === undefined
      ? { services: [{ definition: testDefinition, implementation: createTestService(events) }] }
      : { upstreams: [{ target: upstream.address, services: 'reflection' as const }] },
    grpcServer
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const address = app.server.address()
  const wsUrl = `ws://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}/grpc`
  const http2Address = `127.0.0.1:${port}`
  const clients: any[] = []
  const make = (name: TransportName): any => {
    const client = name === 'http2' || name === 'forwarded-http2'
      ? new TestClient(name === 'http2' && upstream !== undefined ? upstream.address : http2Address, grpc.credentials.createInsecure())
      : name === 'connect'
        ? connectAsGrpcClient(wsUrl)
        : name === 'web'
          ? webAsGrpcClient(wsUrl)
          : name === 'grpc-web'
            ? grpcWebShim(wsUrl.replace(/^ws:/, 'http:'))
            : new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl) })
    clients.push(client)
    return client
  }
  const way = (name: TransportName): Transport => ({
    name,
    client: make(name),
    newClient: () => make(name),
    events
  })
  // The ways every scenario runs; the gRPC-Web route only for those that opt in.
  const names: TransportName[] = options.connect === true ? ['http2', 'websocket', 'web', 'connect'] : ['http2', 'websocket']
  if (upstream !== undefined) names.push('forwarded-http2')
  const transports: Transport[] = names.map(way)
  const grpcWeb = way('grpc-web')
  t.teardown(async () => {
    for (const client of clients) client.close()
    await app.close()
    grpcServer.forceShutdown()
    await upstream?.close()
  })
  // Forwarded, the upstream's handler sees the authority of the plugin's channel to it.
  const handlerHost = (name: TransportName): string => upstream !== undefined ? upstream.address : name === 'http2' ? http2Address : new URL(wsUrl).host
  return { transports, grpcWeb, events, app, grpcServer, wsUrl, http2Address, upstream, handlerHost }
}

export interface ParityOptions {
  /**
   * Also over the gRPC-Web HTTP route (test/helpers/grpc-web-shim.ts): for
   * scenarios made of unary and server-streaming calls only, the kinds
   * gRPC-Web clients make.
   */
  grpcWeb?: boolean
  /** Only these ways (of those the env has). */
  ways?: TransportName[]
}

/** Registers `body` as one subtest per transport (of `ways`, if given). */
export function parity (t: Test, env: Env, name: string, body: (t: Test, transport: Transport) => Promise<void>, options: ParityOptions | TransportName[] = {}): void {
  const { ways, grpcWeb } = Array.isArray(options) ? { ways: options, grpcWeb: false } : options
  for (const transport of grpcWeb === true ? [...env.transports, env.grpcWeb] : env.transports) {
    if (ways !== undefined && !ways.includes(transport.name)) continue
    t.test(`${name} [${transport.name}]`, async t => { await body(t, transport) })
  }
}

// --- promise helpers over stock clients ---------------------------------------

let ids = 0
/** A unique id for handler events. */
export function nextId (): string {
  return `call-${++ids}`
}

export function unary (client: any, request: Request, metadata = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<{ value: Response, status: grpc.StatusObject, headers: grpc.Metadata | null }> {
  return new Promise((resolve, reject) => {
    let headers: grpc.Metadata | null = null
    let result: { value?: Response, error?: grpc.ServiceError } = {}
    const call = client.Unary(request, metadata, options, (error: grpc.ServiceError | null, value: Response) => {
      result = error === null ? { value } : { error }
    })
    call.on('metadata', (md: grpc.Metadata) => { headers = md })
    call.on('status', (status: grpc.StatusObject) => {
      if (result.error !== undefined) reject(result.error)
      else resolve({ value: result.value!, status, headers })
    })
  })
}

export async function unaryError (client: any, request: Request, metadata = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<grpc.ServiceError> {
  try {
    await unary(client, request, metadata, options)
  } catch (err) {
    return err as grpc.ServiceError
  }
  throw new Error('the call succeeded')
}

export interface StreamResult {
  messages: Response[]
  status: grpc.StatusObject
  error: grpc.ServiceError | null
  headers: grpc.Metadata | null
  /** Order of events as seen by the client. */
  order: string[]
}

export async function collect (call: any): Promise<StreamResult> {
  const messages: Response[] = []
  const order: string[] = []
  let error: grpc.ServiceError | null = null
  let headers: grpc.Metadata | null = null
  call.on('metadata', (md: grpc.Metadata) => { headers = md; order.push('metadata') })
  call.on('data', (m: Response) => { messages.push(m); order.push('data') })
  call.on('error', (e: grpc.ServiceError) => { error = e; order.push('error') })
  // Not events.once: it would reject on the 'error' that precedes 'status'.
  const status = await new Promise<grpc.StatusObject>(resolve => call.once('status', resolve))
  order.push('status')
  return { messages, status, error, headers, order }
}

export function clientStream (client: any, requests: Request[], metadata = new grpc.Metadata()): Promise<Response> {
  return new Promise((resolve, reject) => {
    const call = client.ClientStream(metadata, (error: grpc.ServiceError | null, value: Response) => {
      error === null ? resolve(value) : reject(error)
    })
    for (const request of requests) call.write(request)
    call.end()
  })
}

/** Waits for the next event a handler reports under `id`. */
export async function handlerEvent (events: EventEmitter, id: string): Promise<any> {
  return await new Promise(resolve => events.once(id, resolve))
}
