/**
 * The pure codecs of the grpc-websockets route, with raw bytes: the header
 * block (both clients' shapes), grpc-timeout, the gRPC-web frames the server
 * sends, the control byte of client messages, and the reassembly of
 * length-prefixed messages split at every boundary.
 */
import t from 'tap'
import {
  CallError, Control, FrameFlag, MessageReassembler, encodeFrame, encodeHeadersFrame, encodeMessageFrame,
  encodeStatusFrame, parseClientMessage, percentEncode
} from '../../lib/server/grpc-websockets/frames.js'
import {
  HeaderBlockError, decodeBinaryValue, encodeHeaderBlock, parseGrpcTimeout, parseHeaderBlock, requestEntries
} from '../../lib/server/grpc-websockets/header-block.js'

const ascii = (text: string): Uint8Array => Uint8Array.from(text, c => c.charCodeAt(0))
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('latin1')
/** A gRPC length-prefixed message: flag, u32 length, payload. */
function lpm (payload: Uint8Array, flag = 0): Uint8Array {
  const out = new Uint8Array(5 + payload.length)
  out[0] = flag
  new DataView(out.buffer).setUint32(1, payload.length)
  out.set(payload, 5)
  return out
}
function concat (...parts: Uint8Array[]): Uint8Array {
  return Uint8Array.from(parts.flatMap(p => [...p]))
}

// --- header block ----------------------------------------------------------------

t.test('parseHeaderBlock reads the block improbable sends (observed bytes, repeated values joined)', async t => {
  const block = ascii('authorization: Bearer t\r\nx-multi: a, b\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n')
  t.same(parseHeaderBlock(block), [
    ['authorization', 'Bearer t'],
    ['x-multi', 'a, b'],
    ['content-type', 'application/grpc-web+proto'],
    ['x-grpc-web', '1']
  ])
})

t.test('parseHeaderBlock reads the block nice-grpc-web sends (one line a value)', async t => {
  const block = ascii('x-multi: a\r\nx-multi: b\r\nx-id-bin: AAEC/w==\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\n')
  t.same(parseHeaderBlock(block), [
    ['x-multi', 'a'], ['x-multi', 'b'], ['x-id-bin', 'AAEC/w=='],
    ['content-type', 'application/grpc-web+proto'], ['x-grpc-web', '1']
  ])
})

t.test('parseHeaderBlock lower-cases names, trims values, and accepts LF ends, a final blank line and an empty block', async t => {
  t.same(parseHeaderBlock(ascii('X-Key:\t value  \nOther:v\r\n\r\n')), [['x-key', 'value'], ['other', 'v']])
  t.same(parseHeaderBlock(ascii('k: \r\n')), [['k', '']], 'an empty value')
  t.same(parseHeaderBlock(new Uint8Array(0)), [], 'no metadata at all')
})

t.test('parseHeaderBlock refuses what is not a header block, with HeaderBlockError', async t => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['a non-ASCII byte', Uint8Array.of(0x6b, 0x3a, 0x20, 0xc3, 0xa9), /byte 0xc3 at offset 3 is not printable ASCII/],
    ['a NUL', Uint8Array.of(0x6b, 0x3a, 0x00), /byte 0x00/],
    ['a line without a colon', ascii('novalue\r\n'), /is not "name: value"/],
    ['an empty name', ascii(': v\r\n'), /is not "name: value"/],
    ['an illegal name', ascii('bad key: v\r\n'), /illegal characters/],
    ['a stray CR', ascii('k: a\rb\r\n'), /CR that does not end a line/],
    ['line folding', ascii('k: a\r\n b\r\n'), /continuation lines/]
  ]
  for (const [name, block, message] of cases) {
    t.throws(() => parseHeaderBlock(block), { name: 'HeaderBlockError', message }, name)
  }
})

t.test('requestEntries base64-decodes -bin values, one entry each, whichever client joined them', async t => {
  const improbable = requestEntries([['x-bin', 'AAEC, /w==']])
  const nice = requestEntries([['x-bin', 'AAEC'], ['x-bin', '/w==']])
  for (const entries of [improbable, nice]) {
    t.same(entries.map(([k, v]) => [k, hex(v as Uint8Array)]), [['x-bin', '000102'], ['x-bin', 'ff']])
  }
  t.same(requestEntries([['x-bin', 'AAEC_w']]).map(([, v]) => hex(v as Uint8Array)), ['000102ff'], 'URL-safe, unpadded')
  t.same(requestEntries([['x-bin', '']]).map(([, v]) => hex(v as Uint8Array)), [''], 'an empty binary value')
})

t.test('requestEntries keeps ASCII values as sent, drops x-grpc-web, and refuses bad values', async t => {
  t.same(requestEntries([['x-multi', 'a, b'], ['x-grpc-web', '1'], ['content-type', 'application/grpc-web+proto'], ['grpc-timeout', '1S']]), [
    ['x-multi', 'a, b'], ['content-type', 'application/grpc-web+proto'], ['grpc-timeout', '1S']
  ], 'content-type and grpc-timeout are left for requestMetadata() to strip')
  t.throws(() => requestEntries([['k', 'tab\there']]), HeaderBlockError, 'TAB inside an ASCII value')
  t.throws(() => requestEntries([['x-bin', 'not base64!']]), { message: 'Metadata value for key "x-bin" is not base64' })
  t.throws(() => decodeBinaryValue('x-bin', 'AAAAA'), HeaderBlockError, 'a length no base64 text has')
})

t.test('encodeHeaderBlock writes one CRLF line a value, -bin values in padded base64', async t => {
  t.equal(encodeHeaderBlock([['x-a', 'one'], ['x-a', 'two'], ['x-bin', Uint8Array.of(0, 1, 2, 254, 255)], ['x-bin', Uint8Array.of(9)]]),
    'x-a: one\r\nx-a: two\r\nx-bin: AAEC/v8=\r\nx-bin: CQ==\r\n')
  t.equal(encodeHeaderBlock([]), '')
})

t.test('parseGrpcTimeout reads every unit of the gRPC spec, in ms rounded up', async t => {
  t.equal(parseGrpcTimeout('2H'), 7_200_000)
  t.equal(parseGrpcTimeout('3M'), 180_000)
  t.equal(parseGrpcTimeout('5S'), 5000)
  t.equal(parseGrpcTimeout('250m'), 250)
  t.equal(parseGrpcTimeout('1500u'), 2, '1.5 ms rounds up')
  t.equal(parseGrpcTimeout('3000u'), 3)
  t.equal(parseGrpcTimeout('1n'), 1)
  t.equal(parseGrpcTimeout('0m'), 0)
  t.equal(parseGrpcTimeout('99999999H'), 99_999_999 * 3_600_000, 'the largest value is not truncated to 32 bits (grpc-js truncates it)')
})

t.test('parseGrpcTimeout refuses what the spec does not allow (grpc-js would take some of these)', async t => {
  for (const value of ['', '5', 'S', '5s', '5 S', ' 5S', '123456789S', '-5S', '5.5S', 'x5S', '5S, 3S', '1Sx']) {
    t.equal(parseGrpcTimeout(value), null, JSON.stringify(value))
  }
})

// --- frames, server to client ---------------------------------------------------------

t.test('encodeFrame and encodeMessageFrame write flag, u32 BE length, body', async t => {
  t.equal(hex(encodeMessageFrame(ascii('one'))), '00' + '00000003' + '6f6e65')
  t.equal(hex(encodeMessageFrame(new Uint8Array(0))), '0000000000', 'an empty message')
  t.equal(hex(encodeFrame(FrameFlag.METADATA, new Uint8Array(300)).subarray(0, 5)), '800000012c')
})

t.test('encodeHeadersFrame is a 0x80 frame holding the header block', async t => {
  const frame = encodeHeadersFrame([['x-h', 'v'], ['x-h-bin', Uint8Array.of(1, 2, 3)]])
  t.equal(frame[0], 0x80)
  t.equal(new DataView(frame.buffer).getUint32(1), frame.length - 5)
  t.equal(text(frame.subarray(5)), 'x-h: v\r\nx-h-bin: AQID\r\n')
  t.equal(hex(encodeHeadersFrame([])), '8000000000', 'empty headers: an empty metadata frame')
})

t.test('percentEncode encodes UTF-8 bytes outside printable ASCII and "%", and decodeURIComponent undoes it', async t => {
  t.equal(percentEncode('plain text: ok/?&+'), 'plain text: ok/?&+')
  t.equal(percentEncode('100%'), '100%25')
  t.equal(percentEncode('line\r\nbreak'), 'line%0D%0Abreak', 'no header injection')
  t.equal(percentEncode('né ✓ 🙂'), 'n%C3%A9 %E2%9C%93 %F0%9F%99%82')
  for (const s of ['100%', 'né ✓ 🙂', 'a%2Fb', '\u0000\u007f', '']) t.equal(decodeURIComponent(percentEncode(s)), s)
})

t.test('encodeStatusFrame writes grpc-status, grpc-message, then trailing metadata', async t => {
  const frame = encodeStatusFrame({ code: 5, details: 'nöt found', metadata: [['x-t', 'v'], ['x-t-bin', Uint8Array.of(9, 8, 7)]] })
  t.equal(frame[0], 0x80)
  t.equal(text(frame.subarray(5)), 'grpc-status: 5\r\ngrpc-message: n%C3%B6t found\r\nx-t: v\r\nx-t-bin: CQgH\r\n')
  t.equal(text(encodeStatusFrame({ code: 0, details: '', metadata: [] }).subarray(5)), 'grpc-status: 0\r\n', 'no grpc-message for empty details')
  t.equal(text(encodeStatusFrame({ code: 2, details: 'x', metadata: [['grpc-status', '0'], ['grpc-message', 'fake']] }).subarray(5)),
    'grpc-status: 2\r\ngrpc-message: x\r\n', 'metadata cannot shadow the status')
})

// --- client to server ------------------------------------------------------------------

t.test('parseClientMessage reads the control byte', async t => {
  const data = parseClientMessage(Uint8Array.of(Control.DATA, 0, 0, 0, 0, 3, 0x6f, 0x6e, 0x65))
  t.equal(data.kind, 'data')
  t.equal(data.kind === 'data' ? hex(data.bytes) : '', '00000000036f6e65', 'the bytes after the control byte')
  t.same(parseClientMessage(Uint8Array.of(Control.END)), { kind: 'end' })
  t.equal(parseClientMessage(Uint8Array.of(0)).kind, 'data', 'a data message may carry no bytes')
})

t.test('parseClientMessage refuses other messages with INTERNAL', async t => {
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty', new Uint8Array(0), /empty WebSocket message/],
    ['end with a payload', Uint8Array.of(1, 0), /end-of-stream message with a payload/],
    ['unknown control byte', Uint8Array.of(2), /unknown control byte 0x02/],
    ['a gRPC-web metadata flag', Uint8Array.of(0x80), /unknown control byte 0x80/]
  ]
  for (const [name, bytes, message] of cases) {
    t.throws(() => parseClientMessage(bytes), { name: 'CallError', code: 13, message }, name)
  }
})

t.test('MessageReassembler returns every message of a stream split at every boundary', async t => {
  const messages = [ascii('one'), new Uint8Array(0), ascii('three!'), Uint8Array.from({ length: 40 }, (_, i) => i)]
  const stream = concat(...messages.map(m => lpm(m)))
  const expected = messages.map(hex)
  for (let a = 0; a <= stream.length; a++) {
    for (let b = a; b <= stream.length; b++) {
      const r = new MessageReassembler(1000)
      const got = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)].flatMap(part => r.push(part)).map(hex)
      if (got.join() !== expected.join()) {
        t.fail(`split at ${a} and ${b}: ${got.join()}`)
        return
      }
      if (r.buffered !== 0) {
        t.fail(`split at ${a} and ${b}: ${r.buffered} bytes left`)
        return
      }
    }
  }
  t.pass(`${(stream.length + 1) * (stream.length + 2) / 2} ways of splitting the stream in three give the same messages`)
})

t.test('MessageReassembler also takes a stream one byte at a time, and reports what it holds', async t => {
  const r = new MessageReassembler(-1)
  const stream = lpm(ascii('abc'))
  const got: string[] = []
  const held: number[] = []
  for (const byte of stream) {
    got.push(...r.push(Uint8Array.of(byte)).map(text))
    held.push(r.buffered)
  }
  t.same(got, ['abc'])
  t.same(held, [1, 2, 3, 4, 5, 6, 7, 0])
})

t.test('MessageReassembler keeps its own copy of a message split across chunks', async t => {
  const r = new MessageReassembler(100)
  const first = lpm(ascii('abcdef')).slice(0, 8)
  t.same(r.push(first), [])
  first.fill(0xee) // the socket's buffer is reused
  t.same(r.push(ascii('def')).map(text), ['abcdef'])
})

t.test('MessageReassembler refuses a message over the limit from its prefix alone, with RESOURCE_EXHAUSTED', async t => {
  const r = new MessageReassembler(10)
  t.same(r.push(lpm(new Uint8Array(10))).map(m => m.length), [10], 'exactly the limit is accepted')
  const prefix = Uint8Array.of(0, 0, 0, 0, 11)
  t.throws(() => r.push(prefix), { name: 'CallError', code: 8, message: 'Received message larger than max (11 vs 10)' })
  const huge = new MessageReassembler(4 * 1024 * 1024)
  t.throws(() => huge.push(Uint8Array.of(0, 0xff, 0xff, 0xff, 0xff)), { code: 8, message: /4294967295 vs 4194304/ }, 'before any body byte is buffered')
})

t.test('MessageReassembler refuses the compressed flag and unknown flags with INTERNAL', async t => {
  t.throws(() => new MessageReassembler(100).push(lpm(ascii('x'), 1)), { name: 'CallError', code: 13, message: /compressed message/ })
  t.throws(() => new MessageReassembler(100).push(lpm(ascii('x'), 0x80)), { code: 13, message: 'Protocol error: message flags 0x80' })
  t.ok(new CallError(13, 'x') instanceof Error)
})

t.test('MessageReassembler holds one buffer of the message\'s length, whatever the pieces (no per-piece parts)', async t => {
  const length = 20_000
  const stream = lpm(Uint8Array.from({ length }, (_, i) => i & 0xff))
  const r = new MessageReassembler(-1)
  let most = 0
  let got: Uint8Array[] = []
  for (let i = 0; i < stream.length; i++) {
    got = r.push(stream.slice(i, i + 1)) // a fresh piece each time, as from the socket
    most = Math.max(most, r.held)
  }
  t.equal(most, length + 5, 'never more than the prefix and the message itself')
  t.equal(got.length, 1)
  t.equal(got[0]!.byteLength, length)
  t.equal(got[0]!.buffer.byteLength, length, 'the message is its own buffer, not a join of pieces')
  t.equal(hex(got[0]!), hex(stream.subarray(5)))
  t.equal(r.held, 5, 'nothing held once it is complete')
})

t.test('MessageReassembler.read stops after each message, so a caller can stop parsing between messages', async t => {
  const chunk = concat(lpm(ascii('a')), lpm(new Uint8Array(0)), lpm(ascii('bc')))
  const r = new MessageReassembler(-1)
  const stops: Array<[number, string | null]> = []
  for (let at = 0; at < chunk.length;) {
    at = r.read(chunk, at)
    stops.push([at, r.message === null ? null : text(r.message)])
  }
  t.same(stops, [[6, 'a'], [11, ''], [18, 'bc']])
  const alone = lpm(ascii('whole'))
  t.equal(r.read(alone, 0), alone.length)
  t.equal(r.message!.buffer, alone.buffer, 'a chunk that is one message alone is not copied')
})

t.test('parseHeaderBlock and requestEntries are linear: one entry per line, each byte of the block in at most one key or value', async t => {
  const blocks = {
    'one key repeated (5,461 "a:" lines)': 'a:\n'.repeat(5461),
    'one key repeated, with values': 'a: 1\r\n'.repeat(2730),
    'distinct keys': Array.from({ length: 1600 }, (_, i) => `k${i}: v${i}`).join('\r\n'),
    'long runs of blanks': `a: ${' \t'.repeat(4000)}x${' '.repeat(8000)}\r\n`,
    'improbable-joined values': `x: ${Array.from({ length: 3000 }, () => 'ab').join(', ')}\r\n`
  }
  for (const [name, block] of Object.entries(blocks)) {
    const bytes = ascii(block)
    const lines = block.split('\n').filter(l => l.replace('\r', '') !== '').length
    const entries = requestEntries(parseHeaderBlock(bytes))
    t.equal(entries.length, lines, `${name}: one entry per line`)
    const held = entries.reduce((sum, [key, value]) => sum + key.length + (value as string).length, 0)
    t.ok(held <= bytes.length, `${name}: ${held} characters of keys and values from ${bytes.length} bytes`)
  }
  t.same(parseHeaderBlock(ascii(`a: ${' \t'.repeat(4000)}x y${' '.repeat(8000)}\r\n`)), [['a', 'x y']], 'blanks trimmed at both ends only')
})

t.test('parseHeaderBlock and requestEntries read repeated lines (a name looked at once) as sent, and still check what changes', async t => {
  t.same(parseHeaderBlock(ascii('a:\na:\nA: x\nab: y\na: z\r\n')), [['a', ''], ['a', ''], ['a', 'x'], ['ab', 'y'], ['a', 'z']])
  t.same(requestEntries(parseHeaderBlock(ascii('k: v\r\nk: v\r\nk: w\r\nx-grpc-web: 1\r\nx-grpc-web: 1\r\n'))), [['k', 'v'], ['k', 'v'], ['k', 'w']])
  t.throws(() => parseHeaderBlock(ascii('a:\na:\na b: v\n')), { name: 'HeaderBlockError' }, 'a name that differs from the repeated one is checked')
  t.throws(() => parseHeaderBlock(ascii('a: v\r\na: v\r\r\n')), { name: 'HeaderBlockError', message: /CR that does not end a line/ })
  t.same(parseHeaderBlock(ascii('a: v\r')), [['a', 'v']], 'a CR ending the block ends its last line')
})
