/**
 * One connection's share of an event-loop turn (lib/server/turn-budget.ts):
 * a connection that has handled its share stops reading and goes on in a
 * later turn, so another connection's call is not handled only after
 * megabytes of the first one's frames; and nothing it sent is lost or
 * reordered by the pause.
 */
import { ServerInterceptingCall } from '@grpc/grpc-js'
import type { Socket } from 'node:net'
import t from 'tap'
import { WebSocket } from 'ws'
import { FrameFlags, FrameType, encodeFrame, type Frame } from '../../lib/protocol/frame.js'
import { NO_TIMEOUT, buildCall, buildEmpty, buildPing } from '../../lib/protocol/payload.js'
import { TurnBudget, UNITS_PER_TURN, measuredCost } from '../../lib/server/turn-budget.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { testDefinition } from '../helpers/test-service.js'

const UNARY = '/test.Test/Unary'
const PING_FRAME_SIZE = 18

t.test('TurnBudget: a share per turn, renewed in the next turn', async t => {
  const budget = new TurnBudget(10)
  const spent: boolean[] = []
  for (let i = 0; i < 10; i++) spent.push(budget.spend(1))
  t.same(spent, [true, true, true, true, true, true, true, true, true, false], 'the tenth unit spends the share')
  t.notOk(budget.spend(1), 'still spent within the same turn')
  await new Promise(resolve => setImmediate(resolve))
  t.ok(budget.spend(9), 'a new turn brings a new share')
  t.notOk(budget.spend(1), 'and it is spent the same way')
  t.ok(new TurnBudget().spend(UNITS_PER_TURN - 1), 'the default share is UNITS_PER_TURN')
})

t.test('measuredCost: 2 units a microsecond of measured work, never below its floor', async t => {
  t.equal(measuredCost(0.001, 16), 16, 'a 1 µs CALL costs its floor')
  t.equal(measuredCost(0.1, 16), 200, 'a 100 µs CALL costs 200 units: five fill a share')
  t.equal(measuredCost(0, 1), 1)
  t.ok(measuredCost(0.6, 16) >= UNITS_PER_TURN, 'a CALL of 0.6 ms spends a whole share alone')
})

function spin (ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) { /* the whole process waits */ }
}

function pingFrame (seq: number): Uint8Array {
  const data = new Uint8Array(8)
  new DataView(data.buffer).setUint32(4, seq)
  return buildPing(0, data)
}

function ackSeq (frame: Frame): number {
  return new DataView(frame.payload.buffer, frame.payload.byteOffset, 8).getUint32(4)
}

function isAck (frame: Frame): boolean {
  return frame.type === FrameType.PING && (frame.flags & FrameFlags.ACK) !== 0
}

function unaryFrames (streamId: number, message: string): Uint8Array[] {
  const body = testDefinition.Unary!.requestSerialize({ mode: 'echo', message })
  return [
    buildCall(streamId, { path: UNARY, timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }),
    encodeFrame(FrameType.MESSAGE, 0, streamId, body),
    buildEmpty(FrameType.HALF_CLOSE, streamId)
  ]
}

t.test('frames past the share are handled in a later turn, every one, in order', async t => {
  const { app, url } = await startPluginApp()
  t.teardown(async () => { await app.close() })
  const peer = await new RawPeer(url).open()
  t.teardown(() => { peer.close() })
  // Several shares in one WebSocket message, then more messages sent at once
  // (read while the connection waits for its next turn), with a call whose
  // frames straddle the pauses.
  const count = 5 * UNITS_PER_TURN
  const first: Uint8Array[] = []
  for (let seq = 1; seq <= count; seq++) first.push(pingFrame(seq))
  peer.send(...first, ...unaryFrames(1, 'straddling'))
  for (let m = 0; m < 4; m++) {
    const more: Uint8Array[] = []
    for (let i = 1; i <= UNITS_PER_TURN; i++) more.push(pingFrame(count + m * UNITS_PER_TURN + i))
    peer.send(...more)
  }
  const total = count + 4 * UNITS_PER_TURN
  t.ok(await peer.until(frames => frames.filter(isAck).length >= total && frames.some(f => f.type === FrameType.TRAILERS), 10_000), 'every PING answered and the call ended')
  const acks = peer.frames.filter(isAck).map(ackSeq)
  t.equal(acks.length, total, 'one answer per PING')
  t.ok(acks.every((seq, i) => seq === i + 1), 'answers in the order the PINGs were sent')
  const trailers = peer.frames.find(f => f.type === FrameType.TRAILERS && f.streamId === 1)
  t.ok(trailers, 'the straddling call got its trailers')
  t.ok(peer.frames.some(f => f.type === FrameType.MESSAGE && f.streamId === 1), 'and its response')
  t.equal(peer.closeCode, null, 'the connection stays open')
})

t.test("a connection's frames do not hold back another connection's call for more than a share", async t => {
  // What the server has written (PING answers, mostly) when the other call
  // reaches its handler: how many of the busy connection's frames came first.
  let writtenAtCall = -1
  const written = (): number => {
    let n = 0
    for (const client of app.websocketServer.clients) n += (client as unknown as { _socket: Socket })._socket.bytesWritten
    return n
  }
  const { app, url } = await startPluginApp({
    interceptors: [(_method, call) => {
      if (writtenAtCall === -1) writtenAtCall = written()
      return new ServerInterceptingCall(call)
    }]
  })
  t.teardown(async () => { await app.close() })
  const busy = await new RawPeer(url).open()
  const other = await new RawPeer(url).open()
  t.teardown(() => { busy.close(); other.close() })
  // Both greeted (SETTINGS) before anything is counted.
  await busy.until(frames => frames.length > 0)
  await other.until(frames => frames.length > 0)
  const before = written()

  const pings = 200_000
  // Small messages: what the kernel holds for the server before it reads
  // (its receive buffer, some 100 KiB at first) is many whole messages.
  const perMessage = Math.floor(4096 / PING_FRAME_SIZE)
  for (let seq = 1; seq <= pings;) {
    const frames: Uint8Array[] = []
    for (let i = 0; i < perMessage && seq <= pings; i++) frames.push(pingFrame(seq++))
    busy.send(...frames)
  }
  // This process (server and both clients) stands still while the kernel
  // queues the busy connection's bytes for the server, then the other's
  // call: both are readable in the same turn, the busy one first and with
  // far more than one share.
  spin(200)
  other.send(...unaryFrames(1, 'waiting'))
  spin(100)

  t.ok(await other.until(frames => frames.some(f => f.type === FrameType.TRAILERS), 20_000), "the other connection's call ended")
  t.ok(await busy.until(frames => frames.filter(isAck).length >= pings, 20_000), 'every PING of the busy connection was answered too')
  const answeredFirst = Math.round((writtenAtCall - before) / PING_FRAME_SIZE)
  t.comment(`PINGs answered before the other call started: about ${answeredFirst} of ${pings}`)
  // Unfair, the server would handle a whole socket read first (libuv reads
  // up to 32 × 64 KiB in a row): tens of thousands of PINGs.
  t.ok(answeredFirst >= 0 && answeredFirst <= 2 * UNITS_PER_TURN, `the other call waited for at most a few shares of the busy connection's frames (about ${answeredFirst})`)
})

t.test("grpc-websockets: a socket's messages do not hold back another connection's call for more than a share", async t => {
  // How many of the busy call's messages the server had taken when the other call started.
  let received = 0
  let receivedAtCall = -1
  const { app, url } = await startPluginApp({
    interceptors: [(method, call) => {
      if (method.path === UNARY) {
        if (receivedAtCall === -1) receivedAtCall = received
        return new ServerInterceptingCall(call)
      }
      return new ServerInterceptingCall(call, {
        start: next => { next({ onReceiveMessage: (message, pass) => { received++; pass(message) } }) }
      })
    }]
  })
  t.teardown(async () => { await app.close() })
  const busy = new WebSocket(`${url}/test.Test/Bidi`, ['grpc-websockets'])
  busy.on('error', () => {})
  await new Promise(resolve => busy.once('open', resolve))
  const other = await new RawPeer(url).open()
  t.teardown(() => { busy.terminate(); other.close() })
  await other.until(frames => frames.length > 0)

  busy.send(Buffer.from('content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n', 'latin1'))
  const body = testDefinition.Bidi!.requestSerialize({ message: 'x' })
  const piece = Buffer.alloc(6 + body.length)
  piece[0] = 0 // a data message …
  piece.writeUInt32BE(body.length, 2) // … holding one whole gRPC message
  piece.set(body, 6)
  const messages = 20_000
  for (let i = 0; i < messages; i++) busy.send(piece)
  spin(200)
  other.send(...unaryFrames(1, 'waiting'))
  spin(100)

  t.ok(await other.until(frames => frames.some(f => f.type === FrameType.TRAILERS), 20_000), "the other connection's call ended")
  const deadline = Date.now() + 20_000
  while (received < messages && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(received, messages, 'every message of the busy call reached its handler')
  t.comment(`messages taken before the other call started: ${receivedAtCall} of ${messages}`)
  t.ok(receivedAtCall >= 0 && receivedAtCall <= 2 * UNITS_PER_TURN, `the other call waited for at most a few shares of the busy socket's messages (${receivedAtCall})`)
})
