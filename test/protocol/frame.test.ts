import t, { type Test } from 'tap'
import {
  CloseCode, FRAME_HEADER_SIZE, FrameDecoder, FrameFlags, FrameType, ProtocolError, SUBPROTOCOL,
  encodeFrame, frameTypeName, writeFrameHeader, type Frame
} from '../../lib/protocol/frame.js'

function hex (text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '')
  return Uint8Array.from(clean.match(/../g) ?? [], b => parseInt(b, 16))
}
function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

interface Plain { type: number, flags: number, streamId: number, payload: string }
function plain (f: Frame): Plain {
  return { type: f.type, flags: f.flags, streamId: f.streamId, payload: toHex(f.payload) }
}

// Four frames written out by hand: type | flags | stream id | length | payload.
const F1 = '04 02 00000001 00000003 616263' // MESSAGE, MORE, stream 1, "abc"
const F2 = '05 00 01020304 00000000' // HALF_CLOSE, stream 0x01020304, empty
const F3 = '09 01 00000000 00000008 0102030405060708' // PING ACK, 8 bytes
const F4 = '3f ff fffffffe 00000001 ff' // undefined type, all flags, high stream id
const STREAM = hex(F1 + F2 + F3 + F4)
const FRAME_ENDS = [13, 23, 41, 52]
const EXPECTED: Plain[] = [
  { type: 0x04, flags: 0x02, streamId: 1, payload: '616263' },
  { type: 0x05, flags: 0x00, streamId: 0x01020304, payload: '' },
  { type: 0x09, flags: 0x01, streamId: 0, payload: '0102030405060708' },
  { type: 0x3f, flags: 0xff, streamId: 0xfffffffe, payload: 'ff' }
]

/** Feeds `stream` cut at `cuts`; checks `buffered` after each push; returns the frames. */
function feed (t: Test, decoder: FrameDecoder, stream: Uint8Array, cuts: number[]): Plain[] {
  const frames: Plain[] = []
  let from = 0
  for (const to of [...cuts, stream.byteLength]) {
    // A fresh copy per chunk, then scribbled over after push(), as a socket reusing its buffer would.
    const chunk = stream.slice(from, to)
    const got = decoderPush(decoder, chunk)
    frames.push(...got)
    chunk.fill(0xaa)
    const complete = FRAME_ENDS.filter(end => end <= to).pop() ?? 0
    if (decoder.buffered !== to - complete) {
      t.fail(`buffered after ${to} bytes (cuts ${cuts.join(',')}): ${decoder.buffered}, wanted ${to - complete}`)
    }
    from = to
  }
  return frames
}
// Frames are views of the received bytes: take a plain copy before the chunk is reused.
function decoderPush (decoder: FrameDecoder, chunk: Uint8Array): Plain[] {
  return decoder.push(chunk).map(plain)
}

t.test('Frame constants match the protocol', async t => {
  t.equal(FRAME_HEADER_SIZE, 10)
  t.equal(SUBPROTOCOL, 'grpc-ws.v1')
  t.same(FrameType, {
    SETTINGS: 1, CALL: 2, HEADERS: 3, MESSAGE: 4, HALF_CLOSE: 5, TRAILERS: 6, CANCEL: 7, WINDOW_UPDATE: 8, PING: 9, GOAWAY: 10
  })
  t.equal(FrameFlags.MORE, 0x02)
  t.equal(FrameFlags.ACK, 0x01)
  t.same(CloseCode, {
    NORMAL: 1000,
    GOING_AWAY: 1001,
    PROTOCOL_ERROR: 1002,
    UNSUPPORTED_DATA: 1003,
    INVALID_PAYLOAD: 1007,
    POLICY_VIOLATION: 1008,
    MESSAGE_TOO_BIG: 1009,
    INTERNAL_ERROR: 1011
  })
})

t.test('frameTypeName names defined types and prints others as two-digit hex', async t => {
  t.equal(frameTypeName(0x01), 'SETTINGS')
  t.equal(frameTypeName(0x04), 'MESSAGE')
  t.equal(frameTypeName(0x05), 'HALF_CLOSE')
  t.equal(frameTypeName(0x0a), 'GOAWAY')
  t.equal(frameTypeName(0x00), '0x00')
  t.equal(frameTypeName(0x0b), '0x0b')
  t.equal(frameTypeName(0x3f), '0x3f')
  t.equal(frameTypeName(0xff), '0xff')
})

t.test('ProtocolError carries a close code, 1002 by default', async t => {
  const plainErr = new ProtocolError('bad frame')
  t.ok(plainErr instanceof Error)
  t.equal(plainErr.name, 'ProtocolError')
  t.equal(plainErr.message, 'bad frame')
  t.equal(plainErr.closeCode, 1002)
  t.equal(new ProtocolError('too big', CloseCode.MESSAGE_TOO_BIG).closeCode, 1009)
})

t.test('writeFrameHeader writes the 10-byte header at an offset, big-endian', async t => {
  const out = new Uint8Array(14).fill(0xee)
  writeFrameHeader(out, 2, 0x04, 0x03, 0x01020304, 0x0a0b0c0d)
  t.equal(toHex(out), 'eeee' + '0403' + '01020304' + '0a0b0c0d' + 'eeee')
})

t.test('writeFrameHeader honours the byteOffset of a subarray target', async t => {
  const backing = new Uint8Array(16).fill(0xee)
  writeFrameHeader(backing.subarray(3, 13), 0, 0x08, 0x00, 0xffffffff, 4)
  t.equal(toHex(backing), 'eeeeee' + '0800' + 'ffffffff' + '00000004' + 'eeeeee')
})

t.test('encodeFrame builds one whole frame', async t => {
  t.equal(toHex(encodeFrame(0x04, 0x02, 1, hex('616263'))), toHex(hex(F1)))
  t.equal(toHex(encodeFrame(0x05, 0x00, 0x01020304)), toHex(hex(F2)))
  t.equal(toHex(encodeFrame(0x07, 0x00, 9, new Uint8Array(0))), '0700' + '00000009' + '00000000')
  t.equal(toHex(encodeFrame(0x09, 0x01, 0, hex('0102030405060708'))), toHex(hex(F3)))
})

t.test('FrameDecoder decodes several frames from one chunk', async t => {
  const d = new FrameDecoder(1024)
  t.same(d.push(STREAM).map(plain), EXPECTED)
  t.equal(d.buffered, 0)
})

t.test('FrameDecoder returns payloads as views of the chunk when nothing was pending', async t => {
  const d = new FrameDecoder(1024)
  const chunk = hex(F1)
  const [frame] = d.push(chunk)
  t.equal(frame!.payload.buffer, chunk.buffer)
  t.equal(frame!.payload.byteOffset, 10)
  t.equal(frame!.payload.byteLength, 3)
})

t.test('FrameDecoder decodes an empty chunk to nothing', async t => {
  const d = new FrameDecoder(1024)
  t.same(d.push(new Uint8Array(0)), [])
  t.equal(d.buffered, 0)
  d.push(hex('04 02 0000'))
  t.same(d.push(new Uint8Array(0)), [])
  t.equal(d.buffered, 4)
})

t.test('FrameDecoder decodes the same frames with the stream split at every single point', async t => {
  for (let cut = 0; cut <= STREAM.byteLength; cut++) {
    const d = new FrameDecoder(1024)
    t.same(feed(t, d, STREAM, [cut]), EXPECTED, `cut at ${cut}`)
    t.equal(d.buffered, 0)
  }
})

t.test('FrameDecoder decodes the same frames with the stream split at every pair of points', async t => {
  let failures = 0
  let runs = 0
  for (let a = 0; a <= STREAM.byteLength; a++) {
    for (let b = a; b <= STREAM.byteLength; b++) {
      const d = new FrameDecoder(1024)
      const got = feed(t, d, STREAM, [a, b])
      runs++
      if (JSON.stringify(got) !== JSON.stringify(EXPECTED) || d.buffered !== 0) {
        failures++
        t.fail(`cuts at ${a} and ${b}`, { got, expected: EXPECTED })
      }
    }
  }
  t.equal(runs, (53 * 54) / 2)
  t.equal(failures, 0, 'every split gives the same frames')
})

for (const size of [1, 3, 7]) {
  t.test(`FrameDecoder decodes the same frames from chunks of ${size} bytes`, async t => {
    const d = new FrameDecoder(1024)
    const cuts: number[] = []
    for (let at = size; at < STREAM.byteLength; at += size) cuts.push(at)
    t.same(feed(t, d, STREAM, cuts), EXPECTED)
    t.equal(d.buffered, 0)
  })
}

t.test('FrameDecoder returns each frame from the push that completes it', async t => {
  const d = new FrameDecoder(1024)
  // The rest of F1 and all of F2 and the first byte of F3.
  t.same(d.push(hex('04 02 00000001 000000')).map(plain), [])
  t.equal(d.buffered, 9)
  t.same(d.push(hex('03 6162')).map(plain), [])
  t.equal(d.buffered, 12)
  t.same(d.push(hex('63' + F2 + '09')).map(plain), EXPECTED.slice(0, 2))
  t.equal(d.buffered, 1)
  t.same(d.push(hex('01 00000000 00000008 0102030405060708' + F4)).map(plain), EXPECTED.slice(2))
  t.equal(d.buffered, 0)
})

t.test('FrameDecoder handles a header split across chunks', async t => {
  const d = new FrameDecoder(1024)
  t.same(d.push(hex('04 02 0000')), [])
  t.equal(d.buffered, 4)
  t.same(d.push(hex('0001 0000')), [])
  t.equal(d.buffered, 8)
  // The header is whole now; the payload is still due.
  t.same(d.push(hex('0003')), [])
  t.equal(d.buffered, 10)
  t.same(d.push(hex('6162')), [])
  t.equal(d.buffered, 12)
  t.same(d.push(hex('63')).map(plain), [EXPECTED[0]])
  t.equal(d.buffered, 0)
})

t.test('FrameDecoder decodes a zero-length payload as soon as its header is whole', async t => {
  const d = new FrameDecoder(0)
  t.same(d.push(hex('07 00 00000005 000000')), [])
  t.equal(d.buffered, 9)
  t.same(d.push(hex('00')).map(plain), [{ type: 7, flags: 0, streamId: 5, payload: '' }])
  t.equal(d.buffered, 0)
  t.same(d.push(hex('05 00 00000001 00000000 05 00 00000003 00000000')).map(plain), [
    { type: 5, flags: 0, streamId: 1, payload: '' },
    { type: 5, flags: 0, streamId: 3, payload: '' }
  ])
})

t.test('FrameDecoder keeps its own copy of a partial frame when the caller reuses the chunk', async t => {
  const d = new FrameDecoder(1024)
  const chunk = hex('04 00 00000002 00000004 6162')
  t.same(d.push(chunk), [])
  chunk.fill(0)
  t.same(d.push(hex('6364')).map(plain), [{ type: 4, flags: 0, streamId: 2, payload: '61626364' }])
})

t.test('FrameDecoder accepts a payload of exactly maxPayload bytes', async t => {
  const d = new FrameDecoder(4)
  t.same(d.push(hex('04 00 00000001 00000004 01020304')).map(plain), [
    { type: 4, flags: 0, streamId: 1, payload: '01020304' }
  ])
})

t.test('FrameDecoder refuses an oversized frame with 1009 as soon as its header arrives', async t => {
  const d = new FrameDecoder(4)
  // Only the header: no payload byte has arrived yet.
  let caught: unknown
  try {
    d.push(hex('04 00 00000001 00000005'))
  } catch (err) {
    caught = err
  }
  t.ok(caught instanceof ProtocolError, 'a ProtocolError')
  t.equal((caught as ProtocolError).closeCode, 1009)
  t.equal((caught as ProtocolError).closeCode, CloseCode.MESSAGE_TOO_BIG)
  t.equal((caught as Error).message, 'frame payload of 5 bytes exceeds the limit of 4')
})

t.test('FrameDecoder refuses an oversized frame whose header is split, on its last header byte', async t => {
  const d = new FrameDecoder(4)
  const header = hex('04 00 00000001 00000005')
  for (let i = 0; i < 9; i++) {
    t.same(d.push(header.subarray(i, i + 1)), [], `header byte ${i}`)
  }
  t.equal(d.buffered, 9)
  t.throws(() => d.push(header.subarray(9)), { name: 'ProtocolError', closeCode: 1009 })
})

t.test('FrameDecoder refuses an oversized frame that follows good frames in the same chunk', async t => {
  const d = new FrameDecoder(8)
  t.throws(() => d.push(hex(F1 + F2 + '04 00 00000001 00000009')), { name: 'ProtocolError', closeCode: 1009 })
})

t.test('FrameDecoder reads the payload length as unsigned', async t => {
  const d = new FrameDecoder(1024)
  t.throws(() => d.push(hex('04 00 00000001 ffffffff')), {
    name: 'ProtocolError',
    closeCode: 1009,
    message: 'frame payload of 4294967295 bytes exceeds the limit of 1024'
  })
  const d2 = new FrameDecoder(1024)
  t.throws(() => d2.push(hex('04 00 00000001 80000000')), {
    message: 'frame payload of 2147483648 bytes exceeds the limit of 1024'
  })
})

t.test('FrameDecoder reads the stream id as unsigned', async t => {
  const d = new FrameDecoder(1024)
  t.same(d.push(hex('04 00 ffffffff 00000000 04 00 80000000 00000000')).map(f => f.streamId), [0xffffffff, 0x80000000])
})

t.test('FrameDecoder decodes what encodeFrame builds', async t => {
  const frames = [
    encodeFrame(FrameType.CALL, 0, 1, hex('00')),
    encodeFrame(FrameType.MESSAGE, 0x01, 1, new Uint8Array(300).fill(7)),
    encodeFrame(FrameType.CANCEL, 0, 1)
  ]
  const d = new FrameDecoder(300)
  const joined = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0))
  let at = 0
  for (const f of frames) { joined.set(f, at); at += f.byteLength }
  const got = d.push(joined)
  t.same(got.map(f => [f.type, f.flags, f.streamId, f.payload.byteLength]), [[2, 0, 1, 1], [4, 1, 1, 300], [7, 0, 1, 0]])
  t.ok(got[1]!.payload.every(b => b === 7))
})
