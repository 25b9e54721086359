/**
 * An upstream gRPC server in a process of its own (started by
 * upstream-process.ts): a grpc-js Server on 127.0.0.1 with the test service
 * and, unless UPSTREAM_REFLECTION is 'off', the reflection service (v1 and
 * v1alpha). What the handlers report through their events is sent to the
 * parent over IPC.
 *
 * A call whose metadata carries `x-upstream: slow` gets a ClientStream or
 * Bidi handler that takes one request every 50 ms (or `x-upstream-delay-ms`:
 * an upstream slow to accept requests), reporting `<id>:taken` with the count at the end.
 * A call with `x-upstream: metadata` is answered with the request metadata
 * it saw, as JSON.
 * A ClientStream call with `x-upstream: held` and `x-upstream-id: ID` reads
 * nothing (reporting `ID:held`) until the parent releases it, then takes
 * every request and answers with their messages joined with ','.
 *
 * IPC: sends `{ type: 'ready', port }` and `{ type: 'event', id, payload }`;
 * `{ type: 'release', id }` releases a held call; `{ type: 'close' }` shuts
 * down and exits.
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { ReflectionService } from '@grpc/reflection'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createTestService, testDefinition } from './test-service.js'

const send = (message: unknown): void => { process.send?.(message) }

const events = new EventEmitter()
const emit = events.emit.bind(events)
events.emit = (id: string | symbol, payload?: unknown): boolean => {
  send({ type: 'event', id, payload })
  return emit(id, payload)
}
const service = createTestService(events)

const mode = (call: { metadata: grpc.Metadata }): unknown => call.metadata.get('x-upstream')[0]

function takeSlowly (call: grpc.ServerReadableStream<any, any> | grpc.ServerDuplexStream<any, any>, done: (taken: number) => void): void {
  const delay = Number(call.metadata.get('x-upstream-delay-ms')[0] ?? 50)
  let taken = 0
  let id = ''
  const timers = new Set<NodeJS.Timeout>()
  call.on('data', (request: { id?: string }) => {
    taken++
    if (id === '' && typeof request.id === 'string') id = request.id
    call.pause()
    const timer = setTimeout(() => { timers.delete(timer); call.resume() }, delay)
    timers.add(timer)
  })
  call.on('end', () => {
    events.emit(`${id}:taken`, { taken })
    done(taken)
  })
  call.on('cancelled', () => { for (const timer of timers) clearTimeout(timer) })
}

// Held calls' resume(), by x-upstream-id.
const held = new Map<string, () => void>()

function takeWhenReleased (call: grpc.ServerReadableStream<any, any>, callback: grpc.sendUnaryData<any>): void {
  const id = String(call.metadata.get('x-upstream-id')[0] ?? '')
  const received: string[] = []
  call.pause()
  call.on('data', (request: { message?: string }) => { received.push(request.message ?? '') })
  call.on('end', () => { callback(null, { message: received.join(',') }) })
  call.on('cancelled', () => { held.delete(id) })
  held.set(id, () => { held.delete(id); call.resume() })
  events.emit(`${id}:held`, {})
}

function seenMetadata (call: { metadata: grpc.Metadata }): string {
  const seen: Record<string, unknown[]> = {}
  for (const [key, values] of Object.entries(call.metadata.toJSON())) {
    seen[key] = values.map(v => Buffer.isBuffer(v) ? { bin: v.toString('hex') } : v)
  }
  return JSON.stringify(seen)
}

const implementation: grpc.UntypedServiceImplementation = {
  ...service,
  Unary (call: any, callback: any) {
    if (mode(call) === 'metadata') { callback(null, { message: seenMetadata(call) }); return }
    service.Unary(call, callback)
  },
  ClientStream (call: any, callback: any) {
    if (mode(call) === 'slow') { takeSlowly(call, taken => callback(null, { message: `took ${taken}` })); return }
    if (mode(call) === 'held') { takeWhenReleased(call, callback); return }
    service.ClientStream(call, callback)
  },
  Bidi (call: any) {
    if (mode(call) === 'slow') { takeSlowly(call, () => call.end()); return }
    service.Bidi(call)
  }
}

const server = new grpc.Server()
server.addService(testDefinition, implementation)
if (process.env.UPSTREAM_REFLECTION !== 'off') {
  const protoPath = fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))
  new ReflectionService(loader.loadSync(protoPath)).addToServer(server)
}
const port = await new Promise<number>((resolve, reject) => {
  const at = process.env.UPSTREAM_PORT ?? '0'
  server.bindAsync(`127.0.0.1:${at}`, grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
})

process.on('message', (message: { type: string, id?: string }) => {
  if (message.type === 'release') held.get(message.id ?? '')?.()
  if (message.type === 'close') {
    server.forceShutdown()
    process.exit(0)
  }
})
// The parent leaving ends this process too: it is never left behind.
process.on('disconnect', () => { process.exit(0) })
send({ type: 'ready', port })
