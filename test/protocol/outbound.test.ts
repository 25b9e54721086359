import t from 'tap'
import { FRAME_CHARGE, SendWindow } from '../../lib/protocol/flow-control.js'
import { FrameDecoder, FrameFlags } from '../../lib/protocol/frame.js'
import { buildEmpty, buildTrailers } from '../../lib/protocol/payload.js'
import { OutboundMessages, buildMessageFrame, type FrameSink } from '../../lib/protocol/outbound.js'

function hex (text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '')
  return Uint8Array.from(clean.match(/../g) ?? [], b => parseInt(b, 16))
}
function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
function seq (n: number, from = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff)
}

interface Written { bytes: Uint8Array, done: (() => void) | undefined }
class FakeSink implements FrameSink {
  readonly written: Written[] = []
  writable = true
  /** Called after each write, to change the sink's state from inside a pump. */
  afterWrite: (() => void) | undefined
  constructor (public maxFramePayload: number) {}
  write (frame: Uint8Array, done?: () => void): void {
    this.written.push({ bytes: frame, done })
    this.afterWrite?.()
  }

  writeMessage (streamId: number, flags: number, chunk: Uint8Array, done?: () => void): void {
    this.write(buildMessageFrame(streamId, flags, chunk), done)
  }

  canWrite (): boolean { return this.writable }

  /** The MESSAGE frames written so far, decoded. */
  decoded (): Array<{ type: number, flags: number, streamId: number, payload: string }> {
    const d = new FrameDecoder(1 << 20)
    return this.written.flatMap(w => d.push(w.bytes).map(f => ({ type: f.type, flags: f.flags, streamId: f.streamId, payload: toHex(f.payload) })))
  }
}

t.test('buildMessageFrame writes a MESSAGE frame with the given flags', async t => {
  t.equal(toHex(buildMessageFrame(1, 0, hex('616263'))), '0400' + '00000001' + '00000003' + '616263')
  t.equal(toHex(buildMessageFrame(0x01020304, FrameFlags.MORE, hex('ff'))), '0402' + '01020304' + '00000001' + 'ff')
  t.equal(toHex(buildMessageFrame(7, 0x01, new Uint8Array(0))), '0401' + '00000007' + '00000000')
})

t.test('OutboundMessages sends a small message as one MESSAGE frame with no flags', async t => {
  const sink = new FakeSink(100)
  const out = new OutboundMessages(3, new SendWindow(1000), sink)
  const done = (): void => {}
  out.send(hex('0a0b0c'), done)
  t.equal(sink.written.length, 1)
  t.equal(toHex(sink.written[0]!.bytes), '0400' + '00000003' + '00000003' + '0a0b0c')
  t.equal(sink.written[0]!.done, done)
  t.equal(out.window.available, 1000 - (3 + FRAME_CHARGE))
  out.pump()
  t.equal(sink.written.length, 1, 'nothing was left queued')
})

t.test('OutboundMessages splits a message larger than maxFramePayload, with MORE on all but the last frame', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(1000), sink)
  const done = (): void => {}
  out.send(seq(10), done)
  t.same(sink.written.map(w => toHex(w.bytes)), [
    '0402' + '00000001' + '00000004' + '00010203',
    '0402' + '00000001' + '00000004' + '04050607',
    '0400' + '00000001' + '00000002' + '0809'
  ])
  t.same(sink.written.map(w => w.done), [undefined, undefined, done], 'done only on the last frame')
  t.equal(out.window.available, 1000 - 10 - 3 * FRAME_CHARGE, 'each frame pays its charge')
})

t.test('OutboundMessages sends a message of exactly maxFramePayload bytes as one frame', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(1000), sink)
  out.send(seq(4))
  t.same(sink.decoded(), [{ type: 4, flags: 0, streamId: 1, payload: '00010203' }])
})

t.test('OutboundMessages sends a view of part of a larger buffer correctly', async t => {
  const sink = new FakeSink(3)
  const out = new OutboundMessages(1, new SendWindow(1000), sink)
  out.send(seq(20).subarray(5, 10))
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '050607'], [0, '0809']])
})

t.test('OutboundMessages sends an empty message as one empty frame once it has FRAME_CHARGE of window', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(5, new SendWindow(FRAME_CHARGE - 1), sink)
  let done = 0
  out.send(new Uint8Array(0), () => done++)
  t.equal(sink.written.length, 0, 'an empty message is not free')
  t.equal(out.window.available, FRAME_CHARGE - 1, 'no window taken')
  t.equal(out.grant(1), true)
  t.equal(sink.written.length, 1)
  t.equal(toHex(sink.written[0]!.bytes), '0400' + '00000005' + '00000000')
  t.equal(out.window.available, 0)
  sink.written[0]!.done!()
  t.equal(done, 1)
})

t.test('OutboundMessages with exactly FRAME_CHARGE of window sends an empty message but not a 1-byte one', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(FRAME_CHARGE), sink)
  out.send(new Uint8Array(0))
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[0, '']])
  t.equal(out.window.available, 0)

  const sink1 = new FakeSink(4)
  const out1 = new OutboundMessages(1, new SendWindow(FRAME_CHARGE), sink1)
  out1.send(seq(1))
  t.equal(sink1.written.length, 0, 'no frame without a byte of payload credit')
  t.equal(out1.window.available, FRAME_CHARGE)
  out1.pump()
  t.equal(sink1.written.length, 0, 'pump() does not send it either')
  t.equal(out1.grant(1), true)
  t.same(sink1.decoded().map(f => [f.flags, f.payload]), [[0, '00']])
  t.equal(out1.window.available, 0)
})

t.test('OutboundMessages with FRAME_CHARGE + 1 of window sends a 1-byte piece of a larger message with MORE', async t => {
  const sink = new FakeSink(100)
  const out = new OutboundMessages(1, new SendWindow(FRAME_CHARGE + 1), sink)
  let done = 0
  out.send(seq(10), () => done++)
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '00']])
  t.equal(sink.written[0]!.done, undefined)
  t.equal(out.window.available, 0)
  t.equal(out.grant(9 + FRAME_CHARGE), true)
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '00'], [0, '010203040506070809']])
  t.equal(out.window.available, 0)
  sink.written[1]!.done!()
  t.equal(done, 1)
})

for (const max of [0, -1, -100]) {
  t.test(`OutboundMessages.pump() with maxFramePayload ${max} returns without sending`, async t => {
    const sink = new FakeSink(max)
    // A bound for the code under test: a loop writing empty frames stops here.
    sink.afterWrite = () => { if (sink.written.length >= 100) sink.writable = false }
    const out = new OutboundMessages(1, new SendWindow(1000), sink)
    out.send(seq(3))
    t.equal(sink.written.length, 0)
    out.pump()
    t.equal(out.grant(100), true)
    t.equal(sink.written.length, 0, 'no frame, empty or not')
    t.equal(out.window.available, 1100, 'no window taken')
    sink.maxFramePayload = 100
    out.pump()
    t.same(sink.decoded().map(f => [f.flags, f.payload]), [[0, '000102']], 'the message waited, whole')
  })
}

t.test('OutboundMessages stops when the window is exhausted and resumes on grant', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(6 + 2 * FRAME_CHARGE), sink)
  let done = 0
  out.send(seq(10), () => done++)
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '00010203'], [2, '0405']], 'as far as 6 bytes and two charges go')
  t.equal(out.window.available, 0)

  t.equal(out.grant(3 + FRAME_CHARGE), true)
  t.same(sink.decoded().slice(2).map(f => [f.flags, f.payload]), [[2, '060708']])
  t.equal(out.window.available, 0)

  t.equal(out.grant(10), true)
  t.same(sink.decoded().slice(3).map(f => [f.flags, f.payload]), [[0, '09']])
  t.equal(out.window.available, 10 - (1 + FRAME_CHARGE))
  out.pump()
  t.equal(sink.written.length, 4, 'nothing was left queued')
  t.equal(sink.written.filter(w => w.done !== undefined).length, 1)
  sink.written[3]!.done!()
  t.equal(done, 1)
})

t.test('OutboundMessages.grant refuses a zero or overflowing increment and sends nothing', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(0), sink)
  out.send(seq(3))
  t.equal(sink.written.length, 0)
  t.equal(out.grant(0), false)
  t.equal(out.grant(0x80000000), false)
  t.equal(sink.written.length, 0)
  t.equal(out.window.available, 0)
  t.equal(out.grant(0x7fffffff), true)
  t.equal(sink.written.length, 1)
})

t.test('OutboundMessages sends queued messages in order, each with its own done on its last frame', async t => {
  const sink = new FakeSink(2)
  const out = new OutboundMessages(9, new SendWindow(3 + 2 * FRAME_CHARGE), sink)
  const calls: string[] = []
  const doneA = (): void => { calls.push('a') }
  const doneB = (): void => { calls.push('b') }
  const doneC = (): void => { calls.push('c') }
  out.send(hex('a1a2a3'), doneA)
  out.send(hex('b1'), doneB)
  out.send(hex('c1c2'), doneC)
  out.grant(100)
  t.same(sink.decoded().map(f => [f.streamId, f.flags, f.payload]), [
    [9, 2, 'a1a2'], [9, 0, 'a3'], [9, 0, 'b1'], [9, 0, 'c1c2']
  ])
  t.same(sink.written.map(w => w.done), [undefined, doneA, doneB, doneC])
  for (const w of sink.written) w.done?.()
  t.same(calls, ['a', 'b', 'c'])
})

t.test('OutboundMessages.finish writes the closing frame at once when nothing is queued', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(0), sink)
  const close = buildEmpty(5, 1)
  const done = (): void => {}
  out.finish(close, done)
  t.equal(sink.written.length, 1)
  t.equal(sink.written[0]!.bytes, close)
  t.equal(sink.written[0]!.done, done)
})

t.test('OutboundMessages.finish writes the closing frame only after every queued message', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(5 + 2 * FRAME_CHARGE), sink)
  out.send(seq(4))
  out.send(seq(4, 4))
  const trailers = buildTrailers(1, { code: 0, details: '', metadata: [] })
  let closed = 0
  out.finish(trailers, () => closed++)
  t.same(sink.decoded().map(f => [f.type, f.flags, f.payload]), [[4, 0, '00010203'], [4, 2, '04']])
  t.notOk(sink.written.some(w => w.bytes === trailers), 'trailers held back')

  out.grant(2 + FRAME_CHARGE)
  t.notOk(sink.written.some(w => w.bytes === trailers), 'still held back while a message is unfinished')

  out.grant(FRAME_CHARGE)
  t.notOk(sink.written.some(w => w.bytes === trailers), 'a charge alone sends no byte')
  t.equal(sink.written.length, 3)
  out.grant(1)
  const last = sink.written[sink.written.length - 1]!
  t.equal(last.bytes, trailers)
  t.same(sink.decoded().map(f => f.type), [4, 4, 4, 4, 6])
  last.done!()
  t.equal(closed, 1)
  out.grant(10)
  t.equal(sink.written.length, 5, 'the closing frame is written once')
})

t.test('OutboundMessages sends a message queued after finish() before the closing frame', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(0), sink)
  out.send(seq(2))
  out.finish(buildEmpty(5, 1))
  out.send(seq(2, 2))
  out.grant(2 * (2 + FRAME_CHARGE))
  t.same(sink.decoded().map(f => [f.type, f.payload]), [[4, '0001'], [4, '0203'], [5, '']])
})

t.test('OutboundMessages sends nothing while canWrite() is false, and resumes on pump()', async t => {
  const sink = new FakeSink(4)
  sink.writable = false
  const out = new OutboundMessages(1, new SendWindow(100), sink)
  out.send(seq(6))
  out.send(seq(2))
  t.equal(sink.written.length, 0)
  t.equal(out.window.available, 100, 'no window taken')
  sink.writable = true
  out.pump()
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '00010203'], [0, '0405'], [0, '0001']])
  t.equal(out.window.available, 100 - 8 - 3 * FRAME_CHARGE)
})

t.test('OutboundMessages stops part way through a message when canWrite() turns false', async t => {
  const sink = new FakeSink(2)
  const out = new OutboundMessages(1, new SendWindow(100), sink)
  sink.afterWrite = () => { sink.writable = false }
  out.send(seq(6))
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '0001']])
  t.equal(out.window.available, 100 - (2 + FRAME_CHARGE))
  sink.afterWrite = undefined
  sink.writable = true
  out.grant(1)
  t.same(sink.decoded().map(f => [f.flags, f.payload]), [[2, '0001'], [2, '0203'], [0, '0405']])
})

t.test('OutboundMessages.clear forgets queued messages and the closing frame; no callback runs', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(2 + FRAME_CHARGE), sink)
  let called = 0
  out.send(seq(6), () => called++)
  out.send(seq(3), () => called++)
  out.finish(buildEmpty(5, 1), () => called++)
  t.equal(sink.written.length, 1)
  out.clear()
  out.grant(100)
  out.pump()
  t.equal(sink.written.length, 1, 'nothing more written')
  t.equal(sink.written[0]!.done, undefined)
  t.equal(called, 0)
  t.equal(out.window.available, 100, 'the credit was not used')
})

t.test('OutboundMessages can be used again after clear()', async t => {
  const sink = new FakeSink(4)
  const out = new OutboundMessages(1, new SendWindow(0), sink)
  out.send(seq(3))
  out.clear()
  out.grant(10)
  out.send(seq(2))
  t.same(sink.decoded().map(f => f.payload), ['0001'])
})
