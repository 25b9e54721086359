// A slow client reading a 100 MiB upstream stream through the forwarder:
// the plugin (in a process of its own, measured after full collections)
// holds back the upstream rather than the bytes. Bounded: 1600 messages,
// 8 pauses.
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { handlerEvent, nextId } from '../helpers/parity.js'
import { ServerProcess } from '../helpers/server-process.js'
import { TestClient } from '../helpers/test-service.js'
import { UpstreamProcess } from '../helpers/upstream-process.js'

const MiB = 1024 * 1024

t.test('Should grow the plugin by less than 16 MiB while a slow client reads a 100 MiB upstream stream', async t => {
  const upstream = await UpstreamProcess.start()
  t.teardown(async () => { await upstream.close() })
  const server = await ServerProcess.start({
    localService: false,
    upstreams: [{ target: upstream.address, services: [{ name: 'test.Test', methods: ['ServerStream'] }] }]
  })
  t.teardown(async () => { await server.close() })
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(server.wsUrl) })
  t.teardown(() => { client.close() })
  await server.baseline()

  const count = 1600
  const size = 64 * 1024
  const id = nextId()
  const flood = handlerEvent(upstream.events, `${id}:flood`)
  const call = client.ServerStream({ mode: 'flood', count, size, id })
  let received = 0
  let bytes = 0
  const peaks: number[] = []
  const status = new Promise<grpc.StatusObject>(resolve => call.once('status', resolve))
  call.on('error', () => {})
  await new Promise<void>(resolve => {
    call.on('data', (m: { payload: Buffer }) => {
      received++
      bytes += m.payload.length
      if (received % 200 !== 0) return
      // The client stops reading for a while: what does the plugin hold?
      call.pause()
      setTimeout(() => {
        server.heldAboveBaseline().then(({ bytes: held }) => {
          peaks.push(held)
          call.resume()
        }, (err: Error) => { t.fail(err.message); call.resume() })
      }, 300)
    })
    call.on('end', resolve)
  })
  t.equal((await status).code, grpc.status.OK)
  t.equal(received, count)
  t.equal(bytes, count * size, '100 MiB arrived whole')
  t.equal(peaks.length, count / 200)
  const max = Math.max(...peaks)
  t.ok(max < 16 * MiB, `the plugin held at most ${(max / MiB).toFixed(1)} MiB above its baseline while the client paused`)
  t.ok((await flood).refusals > 0, 'the upstream itself was held back (its write() returned false)')
  const sample = await server.measure()
  t.same(sample.uncaught, [])
})
