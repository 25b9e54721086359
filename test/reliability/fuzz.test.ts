/**
 * Property tests of the frame codec (fast-check) and a bounded live fuzz:
 * mutated frames against a running server while a well-behaved client's
 * calls keep succeeding.
 */
import * as grpc from '@grpc/grpc-js'
import fc from 'fast-check'
import t from 'tap'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { TruncatedError } from '../../lib/protocol/bytes.js'
import { FRAME_HEADER_SIZE, FrameDecoder, FrameType, ProtocolError, encodeFrame } from '../../lib/protocol/frame.js'
import { MetadataError } from '../../lib/protocol/metadata.js'
import {
  buildCall, buildEmpty, buildHeaders, buildPing, buildTrailers, buildWindowUpdate, NO_TIMEOUT,
  parseCall, parseGoAway, parseHeaders, parseTrailers
} from '../../lib/protocol/payload.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { unary } from '../helpers/parity.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { TestClient, testDefinition } from '../helpers/test-service.js'

const frameArb = fc.record({
  type: fc.integer({ min: 0, max: 255 }),
  flags: fc.integer({ min: 0, max: 255 }),
  streamId: fc.integer({ min: 0, max: 0xffffffff }),
  payload: fc.uint8Array({ maxLength: 300 })
})

t.test('Should decode any frames encoded, however the bytes are split', async t => {
  fc.assert(fc.property(fc.array(frameArb, { maxLength: 8 }), fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 20 }), (frames, cuts) => {
    const bytes = Buffer.concat(frames.map(f => encodeFrame(f.type, f.flags, f.streamId, f.payload)))
    const decoder = new FrameDecoder(1024)
    const out: Array<{ type: number, flags: number, streamId: number, payload: number[] }> = []
    let at = 0
    for (const cut of [...cuts, bytes.length]) {
      const end = Math.min(bytes.length, at + cut)
      for (const f of decoder.push(bytes.subarray(at, end))) out.push({ type: f.type, flags: f.flags, streamId: f.streamId, payload: [...f.payload] })
      at = end
      if (at === bytes.length) break
    }
    if (at < bytes.length) for (const f of decoder.push(bytes.subarray(at))) out.push({ type: f.type, flags: f.flags, streamId: f.streamId, payload: [...f.payload] })
    return decoder.buffered === 0 && JSON.stringify(out) === JSON.stringify(frames.map(f => ({ ...f, payload: [...f.payload] })))
  }), { numRuns: 500 })
  t.pass('500 random frame sequences round-trip at random split points')
})

t.test('Should fail on arbitrary bytes only with a ProtocolError, never anything else', async t => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), bytes => {
    try {
      new FrameDecoder(64).push(bytes)
      return true
    } catch (err) {
      return err instanceof ProtocolError && (err.closeCode === 1009)
    }
  }), { numRuns: 1000 })
  t.pass('1,000 random inputs')
})

t.test('Should parse arbitrary payloads or refuse them with a parse error, never crash', async t => {
  const parsers = [parseCall, parseHeaders, parseTrailers, parseGoAway]
  fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: parsers.length - 1 }), (bytes, which) => {
    try {
      parsers[which]!(bytes)
      return true
    } catch (err) {
      return err instanceof TruncatedError || err instanceof MetadataError
    }
  }), { numRuns: 2000 })
  t.pass('2,000 random payloads')
})

t.test('Should keep serving a well-behaved client through 100,000 mutated frames', async t => {
  const { app, url } = await startPluginApp({ initialWindowSize: 16384 })
  t.teardown(async () => await app.close())
  const good = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => good.close())
  const rejected: unknown[] = []
  const onRejection = (reason: unknown): void => { rejected.push(reason) }
  process.on('unhandledRejection', onRejection)
  t.teardown(() => { process.off('unhandledRejection', onRejection) })

  // Valid frames of every kind, to be mutated.
  const request = testDefinition.Unary!.requestSerialize({ mode: 'echo', message: 'fuzz' })
  const seeds = (id: number): Uint8Array[] => [
    buildCall(id, { path: '/test.Test/Unary', timeoutMs: 1000, initialWindowSize: 65536, metadata: [['x-a', 'b'], ['x-c-bin', new Uint8Array([1, 2])]] }),
    buildCall(id, { path: '/test.Test/Bidi', timeoutMs: NO_TIMEOUT, initialWindowSize: 1024, metadata: [] }),
    buildMessageFrame(id, 0, request),
    buildMessageFrame(id, 2, request),
    buildEmpty(FrameType.HALF_CLOSE, id),
    buildEmpty(FrameType.CANCEL, id),
    buildWindowUpdate(id, 1000),
    buildPing(0, new Uint8Array(8)),
    buildHeaders(id, [['x', 'y']]),
    buildTrailers(id, { code: 0, details: 'OK', metadata: [] })
  ]
  let seed = 1
  const random = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n }
  const mutate = (frame: Uint8Array): Uint8Array => {
    const copy = frame.slice()
    switch (random(5)) {
      case 0: copy[random(copy.length)] ^= 1 << random(8); return copy // flip a bit
      case 1: return copy.subarray(0, random(copy.length + 1)) // truncate
      case 2: copy[random(Math.min(copy.length, FRAME_HEADER_SIZE))] = random(256); return copy // a header byte
      case 3: copy[0] = random(16); return copy // another type
      default: return copy // unchanged: a valid frame in a hostile sequence
    }
  }

  const target = 100_000
  const deadline = Date.now() + 60_000
  let sent = 0
  let goodCalls = 0
  let goodFailures = 0
  const goodLoop = (async () => {
    while (sent < target && Date.now() < deadline) {
      try {
        const { value } = await unary(good, { mode: 'echo', message: `ok ${goodCalls}` })
        if (value.message === `ok ${goodCalls}`) goodCalls++
        else goodFailures++
      } catch {
        goodFailures++
      }
    }
  })()
  const fuzzer = async (): Promise<void> => {
    while (sent < target && Date.now() < deadline) {
      const peer = await new RawPeer(url).open()
      let id = 1
      // Up to 200 mutated frames per connection, a few per WebSocket message,
      // until the server closes it on a protocol error.
      for (let i = 0; i < 40 && peer.socket.readyState === peer.socket.OPEN && sent < target; i++) {
        const frames = Array.from({ length: 5 }, () => {
          const all = seeds(id)
          id += 2
          return mutate(all[random(all.length)]!)
        })
        sent += frames.length
        peer.send(...frames)
        if (i % 10 === 9) await new Promise(resolve => setImmediate(resolve))
      }
      await peer.until(() => false, 5)
      peer.close()
    }
  }
  await Promise.all([fuzzer(), fuzzer(), fuzzer(), goodLoop])
  t.ok(sent >= target, `${sent} mutated frames sent`)
  t.ok(goodCalls > 0, `${goodCalls} calls of the well-behaved client succeeded meanwhile`)
  t.equal(goodFailures, 0, 'none of them failed')
  t.equal(rejected.length, 0, 'no unhandled rejection')
  await new Promise(resolve => setTimeout(resolve, 1200))
  t.equal(app.grpc.connectionCount, 1, 'only the well-behaved connection is left')
})
