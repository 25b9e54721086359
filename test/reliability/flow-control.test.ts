import { EventEmitter } from 'node:events'
import t from 'tap'
import { FrameType } from '../../lib/protocol/frame.js'
import { FRAME_CHARGE } from '../../lib/protocol/flow-control.js'
import { buildCall, buildEmpty, NO_TIMEOUT, parseTrailers } from '../../lib/protocol/payload.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { testDefinition } from '../helpers/test-service.js'

const events = new EventEmitter()
events.setMaxListeners(0)
const { app, url } = await startPluginApp({}, { events })
t.teardown(async () => await app.close())

const request = (fields: object): Uint8Array => testDefinition.ServerStream!.requestSerialize(fields)

t.test('Should send a client that never grants credit no more than window x streams', async t => {
  const streams = 50
  const window = 16 * 1024
  const messageSize = 1024
  const peer = await new RawPeer(url).open()
  t.teardown(() => peer.close())
  const before = process.memoryUsage()
  for (let i = 0; i < streams; i++) {
    const id = 1 + 2 * i
    // Each handler tries to write 4 MB; this client announces a 16 KiB window and never sends WINDOW_UPDATE.
    peer.send(
      buildCall(id, { path: '/test.Test/ServerStream', timeoutMs: NO_TIMEOUT, initialWindowSize: window, metadata: [] }),
      buildMessageFrame(id, 0, request({ mode: 'flood', count: 4096, size: messageSize, id: `never-reads-${i}` })),
      buildEmpty(FrameType.HALF_CLOSE, id)
    )
  }
  // Window used: each MESSAGE frame costs its payload plus FRAME_CHARGE.
  const windowBytes = (frames: typeof peer.frames): number => frames.filter(f => f.type === FrameType.MESSAGE).reduce((n, f) => n + f.payload.byteLength + FRAME_CHARGE, 0)
  await peer.until(frames => windowBytes(frames) >= streams * window, 5000)
  // Give the server time to send more, if it were going to.
  await new Promise(resolve => setTimeout(resolve, 300))
  const received = windowBytes(peer.frames)
  const after = process.memoryUsage()
  const grown = after.heapUsed + after.arrayBuffers - before.heapUsed - before.arrayBuffers
  t.equal(received, streams * window, `exactly ${streams} x ${window} bytes of window used, then nothing`)
  t.notOk(peer.frames.some(f => f.type === FrameType.TRAILERS), 'no call finished: every writer is held back')
  // Each handler holds at most grpc-js's 16 queued writes of 1 KiB plus its window.
  t.ok(grown < 32 * 1024 * 1024, `server memory grew by ${(grown / 1024 / 1024).toFixed(1)} MB for 200 MB of attempted writes`)
})

t.test('Should reset a stream whose client sends beyond its credit, and keep the connection', async t => {
  const small = await startPluginApp({ initialWindowSize: 4096 }, { events })
  t.teardown(async () => await small.app.close())
  const peer = await new RawPeer(small.url).open()
  t.teardown(() => peer.close())
  peer.send(
    buildCall(1, { path: '/test.Test/ClientStream', timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }),
    // One frame larger than the 4 KiB window the server announced.
    buildMessageFrame(1, 0, new Uint8Array(5000))
  )
  await peer.until(frames => frames.some(f => f.type === FrameType.TRAILERS))
  const trailers = parseTrailers(peer.frames.find(f => f.type === FrameType.TRAILERS)!.payload)
  t.equal(trailers.code, 8, 'RESOURCE_EXHAUSTED')
  t.match(trailers.details, /Flow control window exceeded/)
  t.equal(peer.closeCode, null, 'the connection stays open')
})
