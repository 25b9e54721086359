import * as grpc from '@grpc/grpc-js'
import { EventEmitter } from 'node:events'
import t, { type Test } from 'tap'
import v8 from 'node:v8'
import vm from 'node:vm'
import { FrameType } from '../../lib/protocol/frame.js'
import { buildCall, buildEmpty, NO_TIMEOUT, parseTrailers } from '../../lib/protocol/payload.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { parity, startEnv, unary, unaryError } from '../helpers/parity.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { testDefinition } from '../helpers/test-service.js'

// A real collection before each heap reading.
v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

const events = new EventEmitter()
events.setMaxListeners(0)
const { app, url } = await startPluginApp({}, { events })
t.teardown(async () => await app.close())

const unaryRequest = (fields: object): Uint8Array => testDefinition.Unary!.requestSerialize(fields)

function startCall (peer: RawPeer, id: number, fields: object, timeoutMs = NO_TIMEOUT): void {
  peer.send(
    buildCall(id, { path: '/test.Test/Unary', timeoutMs, initialWindowSize: 65536, metadata: [] }),
    buildMessageFrame(id, 0, unaryRequest(fields)),
    buildEmpty(FrameType.HALF_CLOSE, id)
  )
}

function resourceCount (): number {
  return process.getActiveResourcesInfo().filter(r => r !== 'TTYWrap').length
}

/** 1,000 clients each start a call that never answers, with a deadline (a server timer), then vanish. */
async function dropRound (t: Test, clients: number, round: string): Promise<void> {
  let cancelled = 0
  const allCancelled = new Promise<void>(resolve => {
    for (let i = 0; i < clients; i++) {
      events.once(`${round}-${i}`, (e: { event: string }) => {
        if (e.event === 'cancelled' && ++cancelled === clients) resolve()
      })
    }
  })
  let peers: RawPeer[] = []
  for (let i = 0; i < clients; i += 100) {
    peers.push(...await Promise.all(Array.from({ length: 100 }, async () => await new RawPeer(url).open())))
  }
  peers.forEach((peer, i) => { startCall(peer, 1, { mode: 'never', id: `${round}-${i}` }, 60_000) })
  await new Promise(resolve => setTimeout(resolve, 200))
  t.equal(app.grpc.connectionCount, clients, `${round}: ${clients} connections with a call each`)
  for (const peer of peers) peer.close()
  // The test's own client sockets live in this process too: drop them.
  peers = []
  let timer: ReturnType<typeof setTimeout> | undefined
  await Promise.race([allCancelled, new Promise(resolve => { timer = setTimeout(resolve, 10_000) })])
  clearTimeout(timer)
  t.equal(cancelled, clients, `${round}: every handler saw cancelled`)
  await new Promise(resolve => setTimeout(resolve, 300))
  t.equal(app.grpc.connectionCount, 0, `${round}: no connection is left`)
}

t.test('Should cancel every call of 1,000 clients that drop mid-call, and leave nothing behind', async t => {
  // A first round of the same size warms up what is allocated once (pools,
  // compiled code), so the second round measures what a round leaves behind.
  await dropRound(t, 1000, 'warm-up')
  gc()
  const baseHandles = resourceCount()
  const baseHeap = process.memoryUsage().heapUsed
  await dropRound(t, 1000, 'measured')
  gc()
  const handles = resourceCount()
  const heapGrowth = process.memoryUsage().heapUsed - baseHeap
  t.ok(handles <= baseHandles, `active handles: ${handles} after, ${baseHandles} before: no timer or socket left (${process.getActiveResourcesInfo().join(', ')})`)
  t.ok(heapGrowth < 4 * 1024 * 1024, `heap ${(heapGrowth / 1024 / 1024).toFixed(2)} MB above the baseline after 1,000 dropped clients`)
})

t.test('Should refuse new calls on a connection that was sent GOAWAY, while its calls finish', async t => {
  const { app: local, url: localUrl } = await startPluginApp({ closeGracePeriod: 2000 }, { events })
  const peer = await new RawPeer(localUrl).open()
  t.teardown(() => peer.close())
  startCall(peer, 1, { mode: 'delay', delayMs: 300, message: 'in flight' })
  await new Promise(resolve => setTimeout(resolve, 50))
  const closing = local.close()
  await peer.until(f => f.some(x => x.type === FrameType.GOAWAY))
  startCall(peer, 3, { mode: 'echo' })
  await peer.until(f => f.filter(x => x.type === FrameType.TRAILERS).length === 2)
  const trailers = peer.frames.filter(f => f.type === FrameType.TRAILERS).map(f => ({ id: f.streamId, ...parseTrailers(f.payload) }))
  t.same(trailers.find(x => x.id === 3)?.code, grpc.status.UNAVAILABLE, 'a call after GOAWAY is refused with UNAVAILABLE')
  t.same(trailers.find(x => x.id === 1)?.code, grpc.status.OK, 'the call in flight finished')
  await closing
  t.equal(await peer.closed(), 1001)
})

const env = await startEnv(t)

parity(t, env, 'Should let a handler that rejects or never answers harm only its own call', async (t, { client }) => {
  const rejected: unknown[] = []
  const onRejection = (reason: unknown): void => { rejected.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })
  const stuck = unaryError(client, { mode: 'never' }, new grpc.Metadata(), { deadline: Date.now() + 200 })
  const rejecting = unaryError(client, { mode: 'reject' }, new grpc.Metadata(), { deadline: Date.now() + 200 })
  const others = await Promise.all(Array.from({ length: 20 }, async (_, i) => await unary(client, { mode: 'echo', message: String(i) })))
  t.same(others.map(r => r.value.message), Array.from({ length: 20 }, (_, i) => String(i)), 'other calls are served meanwhile')
  const err = await stuck
  t.equal(err.code, grpc.status.DEADLINE_EXCEEDED, 'the deadline still ends the silent call')
  t.equal((await rejecting).code, grpc.status.DEADLINE_EXCEEDED, 'and the call whose handler rejected')
  t.equal(rejected.length, 1, 'the rejection reached unhandledRejection, as with grpc-js alone')
})
