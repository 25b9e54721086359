import t, { type Test } from 'tap'
import { TruncatedError } from '../../lib/protocol/bytes.js'
import { FRAME_HEADER_SIZE, FrameDecoder, FrameFlags, FrameType, type Frame } from '../../lib/protocol/frame.js'
import { MetadataError, type MetadataEntry } from '../../lib/protocol/metadata.js'
import {
  NO_TIMEOUT, PING_PAYLOAD_SIZE, SettingId, buildCall, buildEmpty, buildGoAway, buildHeaders, buildPing,
  buildSettings, buildTrailers, buildWindowUpdate, parseCall, parseGoAway, parseHeaders, parseSettings,
  parseTrailers, parseWindowUpdate, type Settings
} from '../../lib/protocol/payload.js'

function hex (text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '')
  return Uint8Array.from(clean.match(/../g) ?? [], b => parseInt(b, 16))
}
function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
function h (text: string): string {
  return text.replace(/\s+/g, '')
}
/** The one frame in `bytes`, through the decoder. */
function decodeOne (t: Test, bytes: Uint8Array): Frame {
  const frames = new FrameDecoder(1 << 20).push(bytes)
  t.equal(frames.length, 1, 'one whole frame')
  return frames[0]!
}
function plain (entries: MetadataEntry[]): Array<[string, string | number[]]> {
  return entries.map(([k, v]) => [k, typeof v === 'string' ? v : [...v]])
}

const defaults: Settings = {
  maxConcurrentStreams: 1,
  initialWindowSize: 2,
  maxFrameSize: 3,
  maxMessageSize: 4,
  maxMetadataSize: 5
}

t.test('Payload constants match the protocol', async t => {
  t.equal(NO_TIMEOUT, 0xffffffff)
  t.equal(PING_PAYLOAD_SIZE, 8)
  t.same(SettingId, { MAX_CONCURRENT_STREAMS: 1, INITIAL_WINDOW_SIZE: 2, MAX_FRAME_SIZE: 3, MAX_MESSAGE_SIZE: 4, MAX_METADATA_SIZE: 5 })
})

// SETTINGS ---------------------------------------------------------------

t.test('buildSettings writes every setting as id u16 and value u32, in id order, on stream 0', async t => {
  const frame = buildSettings({
    maxConcurrentStreams: 100,
    initialWindowSize: 65535,
    maxFrameSize: 1048576,
    maxMessageSize: 4194304,
    maxMetadataSize: 16384
  })
  t.equal(toHex(frame), h(`
    01 00 00000000 0000001e
    0001 00000064
    0002 0000ffff
    0003 00100000
    0004 00400000
    0005 00004000`))
})

t.test('parseSettings reads a hand-written SETTINGS payload', async t => {
  const s = parseSettings(hex('0001 00000064 0002 0000ffff 0003 00100000 0004 00400000 0005 00004000'), defaults)
  t.same(s, { maxConcurrentStreams: 100, initialWindowSize: 65535, maxFrameSize: 1048576, maxMessageSize: 4194304, maxMetadataSize: 16384 })
})

t.test('parseSettings round-trips buildSettings, including the largest u32', async t => {
  const settings: Settings = { maxConcurrentStreams: 0, initialWindowSize: 0x7fffffff, maxFrameSize: 0xffffffff, maxMessageSize: 1, maxMetadataSize: 12345 }
  const f = decodeOne(t, buildSettings(settings))
  t.equal(f.type, FrameType.SETTINGS)
  t.equal(f.streamId, 0)
  t.same(parseSettings(f.payload, defaults), settings)
})

t.test('parseSettings keeps defaults for settings not sent, ignores unknown ids, and takes the last of repeats', async t => {
  t.same(parseSettings(new Uint8Array(0), defaults), defaults)
  t.same(parseSettings(hex('0003 00000300 0063 ffffffff 0000 00000007'), defaults), { ...defaults, maxFrameSize: 0x300 })
  t.same(parseSettings(hex('0001 0000000a 0001 0000000b'), defaults), { ...defaults, maxConcurrentStreams: 11 })
})

t.test('parseSettings does not change the defaults object', async t => {
  const mine = { ...defaults }
  const s = parseSettings(hex('0001 00000009'), mine)
  t.not(s, mine)
  t.same(mine, defaults)
})

t.test('parseSettings throws TruncatedError on a cut setting', async t => {
  t.throws(() => parseSettings(hex('00'), defaults), { name: 'TruncatedError', message: 'truncated setting id' })
  t.throws(() => parseSettings(hex('0001'), defaults), { name: 'TruncatedError', message: 'truncated setting value' })
  t.throws(() => parseSettings(hex('0001 000000'), defaults), { name: 'TruncatedError', message: 'truncated setting value' })
  t.throws(() => parseSettings(hex('0001 00000001 0002 00'), defaults), TruncatedError)
})

// CALL -------------------------------------------------------------------

t.test('buildCall writes timeout, window, path and metadata', async t => {
  const frame = buildCall(3, { path: '/a.B/C', timeoutMs: 1000, initialWindowSize: 65536, metadata: [['k', 'v']] })
  t.equal(toHex(frame), h(`
    02 00 00000003 0000001a
    000003e8
    00010000
    0006 2f612e422f43
    0001 0001 6b 00000001 76`))
})

t.test('buildCall writes NO_TIMEOUT as ffffffff and an empty metadata block as a zero count', async t => {
  const frame = buildCall(0x7fffffff, { path: '/s/m', timeoutMs: NO_TIMEOUT, initialWindowSize: 0, metadata: [] })
  t.equal(toHex(frame), h(`
    02 00 7fffffff 00000010
    ffffffff
    00000000
    0004 2f732f6d
    0000`))
})

t.test('parseCall reads a hand-written CALL payload', async t => {
  const call = parseCall(hex('000003e8 00010000 0006 2f612e422f43 0001 0001 6b 00000001 76'))
  t.same({ ...call, metadata: plain(call.metadata), pathBytes: [...call.pathBytes] }, {
    path: '/a.B/C', timeoutMs: 1000, initialWindowSize: 65536, metadata: [['k', 'v']], metadataSize: 10, pathBytes: [...Buffer.from('/a.B/C')]
  })
})

t.test('parseCall round-trips buildCall with a non-ASCII UTF-8 path', async t => {
  const path = '/pkg.Ünïcødé/Méthod☺😈'
  const metadata: MetadataEntry[] = [['a', 'x'], ['a', 'y'], ['t-bin', new Uint8Array([0, 255])]]
  const f = decodeOne(t, buildCall(9, { path, timeoutMs: NO_TIMEOUT, initialWindowSize: 123456, metadata }))
  t.equal(f.type, FrameType.CALL)
  t.equal(f.flags, 0)
  t.equal(f.streamId, 9)
  const call = parseCall(f.payload)
  t.equal(call.path, path)
  t.equal(call.timeoutMs, NO_TIMEOUT)
  t.equal(call.initialWindowSize, 123456)
  t.same(plain(call.metadata), plain(metadata))
  t.equal(call.metadataSize, 2 + (2 + 1 + 4 + 1) * 2 + (2 + 5 + 4 + 2))
  // The path's length is in UTF-8 bytes.
  t.equal(toHex(f.payload.subarray(8, 10)), Buffer.byteLength(path).toString(16).padStart(4, '0'))
})

t.test('parseCall throws TruncatedError naming the field that is cut short', async t => {
  const whole = hex('000003e8 00010000 0006 2f612e422f43 0001 0001 6b 00000001 76')
  const fieldAt: Array<[number, string]> = [
    [0, 'timeout'], [3, 'timeout'],
    [4, 'window'], [7, 'window'],
    [8, 'path length'], [9, 'path length'],
    [10, 'path'], [15, 'path'],
    [16, 'metadata count'], [17, 'metadata count'],
    [18, 'metadata key length'],
    [20, 'metadata key'],
    [21, 'metadata value length'],
    [25, 'metadata value']
  ]
  for (const [length, field] of fieldAt) {
    t.throws(() => parseCall(whole.subarray(0, length)), { name: 'TruncatedError', message: `truncated ${field}` }, `${length} bytes`)
  }
  t.doesNotThrow(() => parseCall(whole))
})

t.test('parseCall passes on a MetadataError from a bad metadata block', async t => {
  t.throws(() => parseCall(hex('00000000 00000000 0002 2f61 0001 0001 41 00000000')), MetadataError)
})

// HEADERS ----------------------------------------------------------------

t.test('buildHeaders writes a metadata block as the payload', async t => {
  const frame = buildHeaders(5, [['a', '1'], ['b-bin', new Uint8Array([0x00, 0xff])]])
  t.equal(toHex(frame), h(`
    03 00 00000005 00000017
    0002
    0001 61 00000001 31
    0005 622d62696e 00000002 00ff`))
  t.equal(toHex(buildHeaders(5, [])), h('03 00 00000005 00000002 0000'))
})

t.test('parseHeaders round-trips buildHeaders', async t => {
  const metadata: MetadataEntry[] = [['content-type', 'application/grpc'], ['x', ''], ['x', 'again'], ['b-bin', new Uint8Array([1, 2, 3])]]
  const f = decodeOne(t, buildHeaders(77, metadata))
  t.equal(f.type, FrameType.HEADERS)
  t.equal(f.streamId, 77)
  t.same(plain(parseHeaders(f.payload)), plain(metadata))
  t.same(parseHeaders(hex('0000')), [])
})

t.test('parseHeaders throws TruncatedError on a cut block', async t => {
  t.throws(() => parseHeaders(new Uint8Array(0)), { name: 'TruncatedError', message: 'truncated metadata count' })
  t.throws(() => parseHeaders(hex('0001 0001 61 00000005 31')), { name: 'TruncatedError', message: 'truncated metadata value' })
})

// TRAILERS ---------------------------------------------------------------

t.test('buildTrailers writes status code i32, details length and UTF-8 details, then metadata', async t => {
  t.equal(toHex(buildTrailers(7, { code: 5, details: 'no', metadata: [] })), h(`
    06 00 00000007 0000000c
    00000005
    00000002 6e6f
    0000`))
  t.equal(toHex(buildTrailers(1, { code: 0, details: '', metadata: [['k', 'v']] })), h(`
    06 00 00000001 00000012
    00000000
    00000000
    0001 0001 6b 00000001 76`))
})

t.test('buildTrailers writes negative and out-of-range status codes as two\'s complement i32', async t => {
  t.equal(toHex(buildTrailers(2, { code: -1, details: '', metadata: [] })), h('06 00 00000002 0000000a ffffffff 00000000 0000'))
  t.equal(toHex(buildTrailers(2, { code: 17, details: '', metadata: [] })), h('06 00 00000002 0000000a 00000011 00000000 0000'))
  t.equal(toHex(buildTrailers(2, { code: 99, details: '', metadata: [] })), h('06 00 00000002 0000000a 00000063 00000000 0000'))
  t.equal(toHex(buildTrailers(2, { code: -2147483648, details: '', metadata: [] })), h('06 00 00000002 0000000a 80000000 00000000 0000'))
})

t.test('parseTrailers reads negative and >16 status codes back', async t => {
  for (const code of [-1, -2147483648, 17, 99, 2147483647, 0, 16]) {
    const f = decodeOne(t, buildTrailers(3, { code, details: 'd', metadata: [] }))
    t.equal(parseTrailers(f.payload).code, code, `code ${code}`)
  }
  t.equal(parseTrailers(hex('fffffffe 00000000 0000')).code, -2)
  t.equal(parseTrailers(hex('00000063 00000000 0000')).code, 99)
})

t.test('parseTrailers round-trips non-ASCII UTF-8 details and metadata', async t => {
  const details = '\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n%41 100% é'
  const metadata: MetadataEntry[] = [['x-error-text', 'error value'], ['x-error-bin', new Uint8Array([9, 8, 7])]]
  const frame = buildTrailers(11, { code: 13, details, metadata })
  // The details length counts UTF-8 bytes, not characters.
  t.equal(toHex(frame.subarray(14, 18)), Buffer.byteLength(details).toString(16).padStart(8, '0'))
  const f = decodeOne(t, frame)
  t.equal(f.type, FrameType.TRAILERS)
  t.equal(f.streamId, 11)
  const status = parseTrailers(f.payload)
  t.equal(status.code, 13)
  t.equal(status.details, details)
  t.same(plain(status.metadata), plain(metadata))
})

t.test('parseTrailers reads hand-written UTF-8 details', async t => {
  t.same(parseTrailers(hex('0000000d 00000009 c3a9 e298ba f09f9888 0000')), { code: 13, details: 'é☺😈', metadata: [] })
})

t.test('parseTrailers throws TruncatedError naming the field that is cut short', async t => {
  const whole = hex('00000005 00000002 6e6f 0000')
  const fieldAt: Array<[number, string]> = [
    [0, 'status code'], [3, 'status code'],
    [4, 'details length'], [7, 'details length'],
    [8, 'details'], [9, 'details'],
    [10, 'metadata count'], [11, 'metadata count']
  ]
  for (const [length, field] of fieldAt) {
    t.throws(() => parseTrailers(whole.subarray(0, length)), { name: 'TruncatedError', message: `truncated ${field}` }, `${length} bytes`)
  }
  t.same(parseTrailers(whole), { code: 5, details: 'no', metadata: [] })
})

// WINDOW_UPDATE ----------------------------------------------------------

t.test('buildWindowUpdate writes the increment as u32', async t => {
  t.equal(toHex(buildWindowUpdate(9, 0x7fffffff)), h('08 00 00000009 00000004 7fffffff'))
  t.equal(toHex(buildWindowUpdate(0, 1)), h('08 00 00000000 00000004 00000001'))
  t.equal(toHex(buildWindowUpdate(1, 65536)), h('08 00 00000001 00000004 00010000'))
})

t.test('parseWindowUpdate reads the increment back, unsigned', async t => {
  t.equal(parseWindowUpdate(decodeOne(t, buildWindowUpdate(9, 0x7fffffff)).payload), 0x7fffffff)
  t.equal(parseWindowUpdate(hex('00010000')), 65536)
  t.equal(parseWindowUpdate(hex('ffffffff')), 0xffffffff)
  t.equal(parseWindowUpdate(hex('00000000')), 0)
})

t.test('parseWindowUpdate throws TruncatedError on a short payload', async t => {
  t.throws(() => parseWindowUpdate(new Uint8Array(0)), { name: 'TruncatedError', message: 'truncated window increment' })
  t.throws(() => parseWindowUpdate(hex('000100')), { name: 'TruncatedError', message: 'truncated window increment' })
})

// PING -------------------------------------------------------------------

t.test('buildPing writes 8 bytes of data on stream 0 with the given flags', async t => {
  const data = hex('0102030405060708')
  t.equal(toHex(buildPing(0, data)), h('09 00 00000000 00000008 0102030405060708'))
  t.equal(toHex(buildPing(FrameFlags.ACK, data)), h('09 01 00000000 00000008 0102030405060708'))
})

t.test('buildPing cuts longer data to 8 bytes and pads shorter data with zeros', async t => {
  t.equal(toHex(buildPing(0, hex('0102030405060708090a'))), h('09 00 00000000 00000008 0102030405060708'))
  t.equal(toHex(buildPing(0, hex('aabb'))), h('09 00 00000000 00000008 aabb000000000000'))
  t.equal(toHex(buildPing(0, new Uint8Array(0))), h('09 00 00000000 00000008 0000000000000000'))
})

t.test('buildPing echoes a received PING payload taken from inside a larger buffer', async t => {
  const received = decodeOne(t, hex('09 00 00000000 00000008 f0e1d2c3b4a59687'))
  const ack = decodeOne(t, buildPing(FrameFlags.ACK, received.payload))
  t.equal(ack.type, FrameType.PING)
  t.equal(ack.flags, FrameFlags.ACK)
  t.equal(ack.streamId, 0)
  t.equal(toHex(ack.payload), 'f0e1d2c3b4a59687')
})

// GOAWAY -----------------------------------------------------------------

t.test('buildGoAway writes the last stream id and the UTF-8 reason on stream 0', async t => {
  t.equal(toHex(buildGoAway({ lastStreamId: 11, reason: 'bye' })), h('0a 00 00000000 00000007 0000000b 627965'))
  t.equal(toHex(buildGoAway({ lastStreamId: 0, reason: '' })), h('0a 00 00000000 00000004 00000000'))
  t.equal(toHex(buildGoAway({ lastStreamId: 0xffffffff, reason: 'é' })), h('0a 00 00000000 00000006 ffffffff c3a9'))
})

t.test('parseGoAway round-trips the last stream id and a non-ASCII reason', async t => {
  const reason = 'server shutting down — à bientôt ☺ 😈'
  const f = decodeOne(t, buildGoAway({ lastStreamId: 0x80000001, reason }))
  t.equal(f.type, FrameType.GOAWAY)
  t.same(parseGoAway(f.payload), { lastStreamId: 0x80000001, reason })
  t.same(parseGoAway(hex('00000003')), { lastStreamId: 3, reason: '' })
  t.same(parseGoAway(hex('00000003 c3a9')), { lastStreamId: 3, reason: 'é' })
})

t.test('parseGoAway throws TruncatedError on a short payload', async t => {
  t.throws(() => parseGoAway(new Uint8Array(0)), { name: 'TruncatedError', message: 'truncated last stream id' })
  t.throws(() => parseGoAway(hex('000000')), { name: 'TruncatedError', message: 'truncated last stream id' })
})

// Empty frames -----------------------------------------------------------

t.test('buildEmpty writes a header with no payload', async t => {
  t.equal(toHex(buildEmpty(FrameType.HALF_CLOSE, 1)), h('05 00 00000001 00000000'))
  t.equal(toHex(buildEmpty(FrameType.CANCEL, 0xffffffff)), h('07 00 ffffffff 00000000'))
  t.equal(buildEmpty(FrameType.CANCEL, 3).byteLength, FRAME_HEADER_SIZE)
})

// All together -----------------------------------------------------------

t.test('Every builder\'s frame decodes in one stream, split byte by byte', async t => {
  const built = [
    buildSettings({ maxConcurrentStreams: 100, initialWindowSize: 65535, maxFrameSize: 1 << 20, maxMessageSize: 4 << 20, maxMetadataSize: 16384 }),
    buildCall(1, { path: '/p.S/M', timeoutMs: 50, initialWindowSize: 1000, metadata: [['k', 'v']] }),
    buildHeaders(1, [['h', 'x']]),
    buildWindowUpdate(1, 500),
    buildPing(0, hex('0102030405060708')),
    buildTrailers(1, { code: -7, details: 'fin ☺', metadata: [] }),
    buildEmpty(FrameType.HALF_CLOSE, 1),
    buildEmpty(FrameType.CANCEL, 3),
    buildGoAway({ lastStreamId: 1, reason: 'done' })
  ]
  const stream = Buffer.concat(built)
  const d = new FrameDecoder(1024)
  const frames: Frame[] = []
  for (let i = 0; i < stream.byteLength; i++) {
    // Copy each frame out: payloads are views of the decoder's buffer.
    for (const f of d.push(stream.subarray(i, i + 1))) frames.push({ ...f, payload: f.payload.slice() })
  }
  t.equal(d.buffered, 0)
  t.same(frames.map(f => [f.type, f.streamId]), [[1, 0], [2, 1], [3, 1], [8, 1], [9, 0], [6, 1], [5, 1], [7, 3], [10, 0]])
  t.equal(parseSettings(frames[0]!.payload, defaults).maxMetadataSize, 16384)
  t.equal(parseCall(frames[1]!.payload).path, '/p.S/M')
  t.same(plain(parseHeaders(frames[2]!.payload)), [['h', 'x']])
  t.equal(parseWindowUpdate(frames[3]!.payload), 500)
  t.equal(toHex(frames[4]!.payload), '0102030405060708')
  t.same(parseTrailers(frames[5]!.payload), { code: -7, details: 'fin ☺', metadata: [] })
  t.equal(frames[6]!.payload.byteLength, 0)
  t.equal(frames[7]!.payload.byteLength, 0)
  t.same(parseGoAway(frames[8]!.payload), { lastStreamId: 1, reason: 'done' })
})

// Leniencies documented in PROTOCOL.md -----------------------------------

t.test('parseCall ignores bytes after the metadata block but counts them in metadataSize', async t => {
  const call = parseCall(hex('00000001 00000002 0002 2f61 0001 0001 6b 00000001 76 eeeeee'))
  t.same(plain(call.metadata), [['k', 'v']])
  t.equal(call.metadataSize, 10 + 3)
})

t.test('parseCall decodes invalid UTF-8 in the path with U+FFFD', async t => {
  t.equal(parseCall(hex('00000000 00000000 0003 2fff61 0000')).path, '/\ufffda')
})

t.test('parseTrailers decodes invalid UTF-8 details with U+FFFD and ignores bytes after the metadata', async t => {
  t.same(parseTrailers(hex('00000002 00000002 61c3 0000 ffff')), { code: 2, details: 'a\ufffd', metadata: [] })
})

t.test('parseSettings reads a MAX_MESSAGE_SIZE of 0xFFFFFFFF (no limit) as an unsigned number', async t => {
  t.equal(parseSettings(hex('0004 ffffffff'), defaults).maxMessageSize, 0xffffffff)
})
