/**
 * The server side of the attack runs, in a process of its own so that what it
 * holds can be measured alone (started by server-process.ts with
 * `--expose-gc`): the plugin serving the test service on 127.0.0.1 with the
 * options it is given, and a grpc-js Server (HTTP/2) with the same handlers.
 *
 * The test service is wrapped, not changed: a call whose metadata carries
 * `x-attack: stall` gets a streaming handler that never reads (Bidi,
 * ClientStream), `x-attack: slow` one that reads a message every 50 ms, and
 * `x-attack: throw` meets an interceptor that throws on its first message.
 * Every other call gets the test service's own handler.
 *
 * IPC: sends `{ type: 'ready', wsPort, http2Port }`; answers
 * `{ type: 'measure', id, collect? }` with a {@link MemorySample} after two
 * full collections (none with `collect: false`), and `{ type: 'close' }` by closing and exiting.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { EventEmitter } from 'node:events'
import fastifyGrpcWs from '../../index.js'
import { createTestService, testDefinition } from './test-service.js'

export interface MemorySample {
  heapUsed: number
  arrayBuffers: number
  /** Includes arrayBuffers (Node counts ArrayBuffer contents as external). */
  external: number
  rss: number
  /** process.cpuUsage() of the server process, µs. */
  cpuUser: number
  cpuSystem: number
  /** Calls whose handler started since the process began (all routes). */
  handlerStarts: number
  /** Exceptions that reached process level (a crash, had they not been caught here). */
  uncaught: string[]
}

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('server-child needs --expose-gc')
const send = (message: unknown): void => { process.send?.(message) }

// `localService: false`: no in-process test service (the plugin forwards it to an upstream instead).
const { localService, ...options } = JSON.parse(process.env.ATTACK_SERVER_OPTIONS ?? '{}') as Record<string, unknown>
const uncaught: string[] = []
// Counted and reported instead of crashing: a test asserts there were none.
process.on('uncaughtException', err => { if (uncaught.length < 100) uncaught.push(String(err?.stack ?? err)) })
process.on('unhandledRejection', err => { if (uncaught.length < 100) uncaught.push(`unhandled rejection: ${String((err as Error)?.stack ?? err)}`) })

const events = new EventEmitter()
events.setMaxListeners(0)
const service = createTestService(events)
let handlerStarts = 0

const attackMode = (call: { metadata: grpc.Metadata }): string | undefined => {
  const value = call.metadata.get('x-attack')[0]
  return typeof value === 'string' ? value : undefined
}

/** Reads one message every 50 ms: a slow consumer that still makes progress. */
function readSlowly (call: grpc.ServerReadableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, done: () => void): void {
  const timers = new Set<NodeJS.Timeout>()
  call.on('data', () => {
    call.pause()
    const timer = setTimeout(() => { timers.delete(timer); call.resume() }, 50)
    timers.add(timer)
  })
  call.on('end', done)
  call.on('cancelled', () => { for (const timer of timers) clearTimeout(timer) })
}

const implementation: grpc.UntypedServiceImplementation = {
  ...service,
  Unary (call: any, callback: any) {
    handlerStarts++
    service.Unary(call, callback)
  },
  ServerStream (call: any) {
    handlerStarts++
    service.ServerStream(call)
  },
  ClientStream (call: any, callback: any) {
    handlerStarts++
    const mode = attackMode(call)
    // 'stall': never reads; only a cancel (or the peer leaving) ends it.
    if (mode === 'stall') return
    if (mode === 'slow') { readSlowly(call, () => callback(null, { message: 'read slowly' })); return }
    service.ClientStream(call, callback)
  },
  Bidi (call: any) {
    handlerStarts++
    const mode = attackMode(call)
    if (mode === 'stall') return
    if (mode === 'slow') { readSlowly(call, () => call.end()); return }
    service.Bidi(call)
  }
}

const throwOnMessage: grpc.ServerInterceptor = (_method, call) => {
  let armed = false
  return new grpc.ServerInterceptingCall(call, {
    start: next => {
      next({
        onReceiveMetadata: (metadata, nextMetadata) => {
          armed = metadata.get('x-attack')[0] === 'throw'
          nextMetadata(metadata)
        },
        onReceiveMessage: (message, nextMessage) => {
          if (armed) throw new Error('interceptor throws on this call\'s message')
          nextMessage(message)
        },
        onReceiveHalfClose: next => { next() },
        onCancel: () => {}
      })
    }
  })
}

const grpcServer = new grpc.Server({ interceptors: [throwOnMessage] })
const app = Fastify()
await app.register(fastifyGrpcWs, {
  ...options,
  interceptors: [throwOnMessage],
  services: localService === false ? [] : [{ definition: testDefinition, implementation }],
  grpcServer
} as Parameters<typeof fastifyGrpcWs>[1])
await app.listen({ port: 0, host: '127.0.0.1' })
const http2Port = await new Promise<number>((resolve, reject) => {
  grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => { err === null ? resolve(port) : reject(err) })
})
const wsPort = (app.server.address() as { port: number }).port

function measure (collect: boolean): MemorySample {
  // Two full collections: the first may only queue finalizers and weak callbacks.
  if (collect) {
    gc!()
    gc!()
  }
  const m = process.memoryUsage()
  const cpu = process.cpuUsage()
  return { heapUsed: m.heapUsed, arrayBuffers: m.arrayBuffers, external: m.external, rss: m.rss, cpuUser: cpu.user, cpuSystem: cpu.system, handlerStarts, uncaught: [...uncaught] }
}

process.on('message', (message: { type: string, id?: number, collect?: boolean }) => {
  if (message.type === 'measure') {
    send({ type: 'measured', id: message.id, sample: measure(message.collect !== false) })
  } else if (message.type === 'close') {
    grpcServer.forceShutdown()
    app.close().finally(() => { process.exit(0) })
    setTimeout(() => { process.exit(0) }, 2000).unref()
  }
})
// The parent leaving ends this process too: it is never left behind.
process.on('disconnect', () => { process.exit(0) })
send({ type: 'ready', wsPort, http2Port })
