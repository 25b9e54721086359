import * as grpc from '@grpc/grpc-js'
import v8 from 'node:v8'
import vm from 'node:vm'
import t from 'tap'
import { GRPC_JS, collect, handlerEvent, nextId, parity, startEnv, unary } from '../helpers/parity.js'

v8.setFlagsFromString('--expose-gc')
const gc = vm.runInNewContext('gc') as () => void

const env = await startEnv(t, { connect: true })

parity(t, env, 'Should run 1,000 concurrent calls on one channel', async (t, { newClient }) => {
  const client = newClient()
  const calls = Array.from({ length: 1000 }, async (_, i) => await unary(client, { mode: 'echo', message: `m${i}` }))
  const results = await Promise.all(calls)
  t.equal(results.length, 1000)
  t.ok(results.every((r, i) => r.value.message === `m${i}`), 'each call got its own answer')
  t.equal(client.getChannel().getConnectivityState(false), grpc.connectivityState.READY, 'one channel served them all')
}, GRPC_JS) // The other clients' one-socket case: test/client/connect-calls.test.ts, test/browser/client.test.ts.

parity(t, env, 'Should mix the four kinds concurrently on one channel', async (t, { client }) => {
  const streams = Array.from({ length: 20 }, async () => await collect(client.ServerStream({ mode: 'count', count: 50, size: 100 })))
  const unaries = Array.from({ length: 50 }, async (_, i) => await unary(client, { mode: 'echo', message: String(i) }))
  const [streamResults, unaryResults] = await Promise.all([Promise.all(streams), Promise.all(unaries)])
  t.ok(streamResults.every(r => r.messages.length === 50 && r.status.code === grpc.status.OK))
  t.ok(unaryResults.every((r, i) => r.value.message === String(i)))
})

parity(t, env, 'Should make a writer wait for a reader that does not read: write() returns false, then drain', async (t, { client, events }) => {
  const id = nextId()
  const flooded = handlerEvent(events, `${id}:flood`)
  const call = client.ServerStream({ mode: 'flood', id, count: 200, size: 64 * 1024 })
  call.pause()
  // Let the server run into the window before reading anything.
  await new Promise(resolve => setTimeout(resolve, 200))
  call.resume()
  const result = await collect(call)
  t.equal(result.messages.length, 200)
  t.equal(result.status.code, grpc.status.OK)
  const { refusals } = await flooded
  t.ok(refusals > 0, `write() returned false ${refusals as number} times`)
})

parity(t, env, 'Should stream 100 MB to a slow reader with under 64 MB of memory growth', async (t, { newClient, events }) => {
  const client = newClient()
  const id = nextId()
  const size = 64 * 1024
  const count = Math.ceil(100e6 / size)
  const flooded = handlerEvent(events, `${id}:flood`)
  // Memory held, not garbage not yet collected: a few samples, each after a
  // full collection (more would make the test slow under coverage). Client
  // and server share this process, so this bounds both.
  gc()
  const before = process.memoryUsage()
  const base = before.heapUsed + before.arrayBuffers
  let peak = 0
  let received = 0
  let pauses = 0
  const sample = (): void => {
    gc()
    const m = process.memoryUsage()
    peak = Math.max(peak, m.heapUsed + m.arrayBuffers - base)
  }
  const call = client.ServerStream({ mode: 'flood', id, count, size })
  call.on('data', (m: { payload: Buffer }) => {
    received += m.payload.length
    // A slow reader: a pause every 20 messages.
    if (received % (20 * size) === 0) {
      // Mid-stream, with the writer held back: every 10th pause, a sample.
      if (++pauses % 10 === 0) sample()
      call.pause()
      setTimeout(() => call.resume(), 2)
    }
  })
  const [status] = await Promise.all([
    new Promise<grpc.StatusObject>(resolve => call.once('status', resolve)),
    // 'status' may come while read data is still buffered: wait for 'end' too.
    new Promise(resolve => call.once('end', resolve))
  ])
  t.ok(pauses >= 50, `${pauses} pauses, ${Math.floor(pauses / 10)} samples`)
  t.equal(status.code, grpc.status.OK)
  t.equal(received, count * size, 'every byte arrived')
  t.ok((await flooded).refusals > 0, 'the writer was held back')
  t.ok(peak < 64 * 1024 * 1024, `memory grew by ${(peak / 1024 / 1024).toFixed(1)} MB at most`)
})
