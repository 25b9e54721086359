import t from 'tap'
import { ByteReader, ByteWriter, TruncatedError } from '../../lib/protocol/bytes.js'
import {
  MetadataError, checkKey, checkValue, encodeMetadata, isBinaryKey, metadataSize, readCallMetadata, readMetadata as readPlain,
  validateMetadata, writeMetadata, type MetadataEntry
} from '../../lib/protocol/metadata.js'

/**
 * Every case reads through both readers, readMetadata (what the clients use)
 * and readCallMetadata (the server's for CALLs, which reuses repeated
 * entries): they must give the same entries and end at the same offset, or
 * throw the same error; that result is returned or thrown.
 */
function readMetadata (r: ByteReader): MetadataEntry[] {
  const outcomes = [readPlain, readCallMetadata].map(reader => {
    const copy = new ByteReader(r.bytes)
    copy.offset = r.offset
    try {
      return { entries: reader(copy), offset: copy.offset, error: null }
    } catch (error) {
      return { entries: null, offset: copy.offset, error: error as Error }
    }
  })
  const [a, b] = outcomes as [typeof outcomes[0], typeof outcomes[0]]
  const same = a.error === null
    ? b.error === null && a.offset === b.offset && JSON.stringify(plain(a.entries!)) === JSON.stringify(plain(b.entries!))
    : b.error !== null && a.error.constructor === b.error.constructor && a.error.message === b.error.message
  if (!same) throw new Error(`readMetadata and readCallMetadata disagree: ${JSON.stringify(a.error?.message ?? plain(a.entries!))} against ${JSON.stringify(b.error?.message ?? plain(b.entries!))}`)
  if (a.error !== null) throw a.error
  r.offset = a.offset
  return b.entries!
}

function hex (text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '')
  return Uint8Array.from(clean.match(/../g) ?? [], b => parseInt(b, 16))
}
function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}
function read (text: string): MetadataEntry[] {
  return readMetadata(new ByteReader(hex(text)))
}
function plain (entries: MetadataEntry[]): Array<[string, string | number[]]> {
  return entries.map(([k, v]) => [k, typeof v === 'string' ? v : [...v]])
}

t.test('MetadataError is a named Error', async t => {
  const err = new MetadataError('bad')
  t.ok(err instanceof Error)
  t.equal(err.name, 'MetadataError')
  t.equal(err.message, 'bad')
})

t.test('isBinaryKey is true only for keys ending in -bin', async t => {
  t.equal(isBinaryKey('x-bin'), true)
  t.equal(isBinaryKey('grpc-status-details-bin'), true)
  t.equal(isBinaryKey('-bin'), true)
  t.equal(isBinaryKey('x-bin-not'), false)
  t.equal(isBinaryKey('xbin'), false)
  t.equal(isBinaryKey('x-BIN'), false)
  t.equal(isBinaryKey(''), false)
})

t.test('checkKey accepts lower-case letters, digits, _ . and -', async t => {
  for (const key of ['a', 'abc', 'x-request-id', 'a_b.c-d', '0123456789', 'abcdefghijklmnopqrstuvwxyz', 'x-bin', '-', '.', '_']) {
    t.equal(checkKey(key), null, key)
  }
})

t.test('checkKey refuses an empty key', async t => {
  t.equal(checkKey(''), 'Metadata key is empty')
})

t.test('checkKey refuses upper case, spaces, colons, slashes, control and non-ASCII characters', async t => {
  for (const key of ['A', 'x-Request-Id', 'a b', ':authority', 'a:b', 'a/b', 'a\u0000', 'a\n', 'é', 'ключ', 'a~', 'a+b', 'a`', 'a{']) {
    t.equal(checkKey(key), `Metadata key "${key}" contains illegal characters`, JSON.stringify(key))
  }
})

t.test('checkValue accepts printable ASCII strings, including empty, space and tilde', async t => {
  t.equal(checkValue('k', ''), null)
  t.equal(checkValue('k', ' '), null)
  t.equal(checkValue('k', '~'), null)
  let all = ''
  for (let c = 0x20; c <= 0x7e; c++) all += String.fromCharCode(c)
  t.equal(checkValue('k', all), null)
})

t.test('checkValue refuses control characters, DEL and non-ASCII in a string value', async t => {
  for (const value of ['\t', 'a\nb', '\u0000', '\u001f', '\u007f', 'é', '☺', '😈']) {
    t.equal(checkValue('k', value), 'Metadata value for key "k" contains characters other than printable ASCII', JSON.stringify(value))
  }
})

t.test('checkValue needs bytes for -bin keys and a string for the others', async t => {
  t.equal(checkValue('k-bin', new Uint8Array([0, 255])), null)
  t.equal(checkValue('k-bin', new Uint8Array(0)), null)
  t.equal(checkValue('k-bin', 'text'), 'Metadata key "k-bin" ends with "-bin" and needs a binary value')
  t.equal(checkValue('k', new Uint8Array([0x61])), 'Metadata key "k" needs a string value')
})

t.test('validateMetadata passes good entries and throws a MetadataError naming the first bad one', async t => {
  t.doesNotThrow(() => validateMetadata([]))
  t.doesNotThrow(() => validateMetadata([['a', 'b'], ['a', ''], ['c-bin', new Uint8Array([0])]]))
  t.throws(() => validateMetadata([['ok', 'x'], ['Bad', 'y'], ['also bad', 'z']]), {
    name: 'MetadataError', message: 'Metadata key "Bad" contains illegal characters'
  })
  t.throws(() => validateMetadata([['ok', 'x'], ['v', 'tab\t']]), {
    name: 'MetadataError', message: 'Metadata value for key "v" contains characters other than printable ASCII'
  })
  t.throws(() => validateMetadata([['b-bin', 'str']]), MetadataError)
  t.throws(() => validateMetadata([['', 'x']]), { message: 'Metadata key is empty' })
})

t.test('metadataSize counts the count, each key and value with their lengths', async t => {
  t.equal(metadataSize([]), 2)
  t.equal(metadataSize([['a', '1']]), 2 + 2 + 1 + 4 + 1)
  t.equal(metadataSize([['ab', ''], ['c-bin', new Uint8Array(7)]]), 2 + (2 + 2 + 4 + 0) + (2 + 5 + 4 + 7))
})

t.test('encodeMetadata writes count, key length, key, value length, value in order', async t => {
  t.equal(toHex(encodeMetadata([])), '0000')
  t.equal(toHex(encodeMetadata([['a', '1']])), '0001' + '0001' + '61' + '00000001' + '31')
  t.equal(
    toHex(encodeMetadata([['x-id', 'v1'], ['x-id', ''], ['b-bin', new Uint8Array([0x00, 0x7f, 0x80, 0xff])]])),
    '0003' +
    '0004' + '782d6964' + '00000002' + '7631' +
    '0004' + '782d6964' + '00000000' +
    '0005' + '622d62696e' + '00000004' + '007f80ff'
  )
})

t.test('writeMetadata writes at the writer\'s offset', async t => {
  const out = new Uint8Array(3 + metadataSize([['k', 'v']])).fill(0xee)
  const w = new ByteWriter(out)
  w.offset = 3
  writeMetadata(w, [['k', 'v']])
  t.equal(w.offset, out.byteLength)
  t.equal(toHex(out), 'eeeeee' + '0001' + '0001' + '6b' + '00000001' + '76')
})

t.test('writeMetadata refuses more than 65535 entries', async t => {
  const entries: MetadataEntry[] = new Array(0x10000).fill(['a', ''])
  const w = new ByteWriter(new Uint8Array(16))
  t.throws(() => writeMetadata(w, entries), { name: 'MetadataError', message: 'too many metadata entries (65536)' })
  t.equal(w.offset, 0, 'nothing written')
  const most: MetadataEntry[] = new Array(0xffff).fill(['a', ''])
  const block = encodeMetadata(most)
  t.equal(toHex(block.subarray(0, 2)), 'ffff')
  t.equal(readMetadata(new ByteReader(block)).length, 0xffff)
})

t.test('readMetadata reads hand-written blocks', async t => {
  t.same(read('0000'), [])
  t.same(plain(read('0001 0001 61 00000001 31')), [['a', '1']])
  t.same(plain(read('0002 0004 782d6964 00000002 7631 0005 622d62696e 00000003 00ff10')), [['x-id', 'v1'], ['b-bin', [0, 255, 16]]])
})

t.test('readMetadata keeps repeated keys as separate entries, in order', async t => {
  const entries: MetadataEntry[] = [['k', 'one'], ['other', 'x'], ['k', 'two'], ['k', 'three'], ['k-bin', new Uint8Array([1])], ['k-bin', new Uint8Array([2])]]
  const back = readMetadata(new ByteReader(encodeMetadata(entries)))
  t.same(plain(back), [['k', 'one'], ['other', 'x'], ['k', 'two'], ['k', 'three'], ['k-bin', [1]], ['k-bin', [2]]])
})

t.test('readMetadata round-trips empty values, string and binary', async t => {
  const back = readMetadata(new ByteReader(encodeMetadata([['e', ''], ['e-bin', new Uint8Array(0)]])))
  t.equal(back.length, 2)
  t.equal(back[0]![1], '')
  t.ok(back[1]![1] instanceof Uint8Array)
  t.equal((back[1]![1] as Uint8Array).byteLength, 0)
  t.same(plain(read('0002 0001 65 00000000 0005 652d62696e 00000000')), [['e', ''], ['e-bin', []]])
})

t.test('readMetadata returns -bin values as raw bytes, any byte 0..255', async t => {
  const all = new Uint8Array(256)
  for (let i = 0; i < 256; i++) all[i] = i
  const block = encodeMetadata([['all-bin', all]])
  t.equal(toHex(block.subarray(0, 2 + 2 + 7 + 4)), '0001' + '0007' + '616c6c2d62696e' + '00000100')
  const [[key, value]] = readMetadata(new ByteReader(block)) as [MetadataEntry]
  t.equal(key, 'all-bin')
  t.ok(value instanceof Uint8Array)
  t.same([...(value as Uint8Array)], [...all])
})

t.test('readMetadata copies -bin values out of the frame', async t => {
  const block = hex('0001 0005 622d62696e 00000002 0102')
  const [[, value]] = readMetadata(new ByteReader(block)) as [MetadataEntry]
  block.fill(0)
  t.same([...(value as Uint8Array)], [1, 2])
  t.not((value as Uint8Array).buffer, block.buffer)
})

t.test('readMetadata accepts every printable ASCII byte in a string value', async t => {
  let all = ''
  for (let c = 0x20; c <= 0x7e; c++) all += String.fromCharCode(c)
  const back = readMetadata(new ByteReader(encodeMetadata([['p', all]])))
  t.same(plain(back), [['p', all]])
})

t.test('readMetadata refuses non-printable bytes in a string value with a MetadataError', async t => {
  for (const b of [0x00, 0x09, 0x0a, 0x1f, 0x7f, 0x80, 0xc3, 0xff]) {
    const byte = b.toString(16).padStart(2, '0')
    t.throws(() => read('0001 0001 6b 00000003 61' + byte + '62'), {
      name: 'MetadataError',
      message: 'Metadata value for key "k" contains characters other than printable ASCII'
    }, `byte 0x${byte}`)
  }
})

t.test('readMetadata refuses illegal keys on the wire with a MetadataError', async t => {
  t.throws(() => read('0001 0000 00000000'), { name: 'MetadataError', message: 'Metadata key is empty' })
  t.throws(() => read('0001 0001 41 00000000'), { name: 'MetadataError', message: 'Metadata key "A" contains illegal characters' })
  t.throws(() => read('0001 0005 3a70617468 00000000'), { name: 'MetadataError', message: 'Metadata key ":path" contains illegal characters' })
  t.throws(() => read('0001 0002 c3a9 00000000'), MetadataError)
  t.throws(() => read('0001 0001 ff 00000000'), MetadataError)
})

t.test('readMetadata throws TruncatedError naming the field that is cut short', async t => {
  const cases: Array<[string, string]> = [
    ['', 'metadata count'],
    ['00', 'metadata count'],
    ['0001', 'metadata key length'],
    ['0001 00', 'metadata key length'],
    ['0001 0002 61', 'metadata key'],
    ['0001 0001 61', 'metadata value length'],
    ['0001 0001 61 000000', 'metadata value length'],
    ['0001 0001 61 00000002 31', 'metadata value'],
    ['0002 0001 61 00000001 31', 'metadata key length'],
    ['0001 0005 622d62696e 00000004 010203', 'metadata value']
  ]
  for (const [bytes, field] of cases) {
    t.throws(() => read(bytes), { name: 'TruncatedError', message: `truncated ${field}` }, JSON.stringify(bytes))
  }
  t.throws(() => read('0001 0001 61 00000002 31'), TruncatedError)
})

t.test('readMetadata stops at the end of its block', async t => {
  const r = new ByteReader(hex('0001 0001 61 00000001 31 eeff'))
  t.same(plain(readMetadata(r)), [['a', '1']])
  t.equal(r.remaining, 2)
  t.equal(r.offset, 10)
})

t.test('encodeMetadata and readMetadata round-trip a mixed block', async t => {
  const entries: MetadataEntry[] = [
    ['user-agent', 'grpc-ws/1.0 (test)'],
    ['x-trace-bin', new Uint8Array([0xde, 0xad, 0xbe, 0xef])],
    ['x', 'a'.repeat(1000)],
    ['x', ''],
    ['big-bin', new Uint8Array(70000).fill(0x5a)]
  ]
  const block = encodeMetadata(entries)
  t.equal(block.byteLength, metadataSize(entries))
  t.same(plain(readMetadata(new ByteReader(block))), plain(entries))
})

t.test('readCallMetadata reads a key repeated in a row (decoded once) with every value as sent, and still checks each new value', async t => {
  const entries: MetadataEntry[] = [['x-r', 'a'], ['x-r', 'a'], ['x-r', 'b'], ['x-r', 'a'], ['y', 'a'], ['x-r-bin', Uint8Array.of(1)], ['x-r-bin', Uint8Array.of(1)], ['x-r', 'a']]
  const read = readMetadata(new ByteReader(encodeMetadata(entries)))
  t.same(plain(read), plain(entries), 'same entries, in order')
  t.not(read[5]![1], read[6]![1], 'repeated -bin values are separate copies')
  const bad = encodeMetadata([['x-r', 'a'], ['x-r', 'a'], ['x-r', 'b']])
  bad[bad.length - 1] = 0x07
  t.throws(() => readMetadata(new ByteReader(bad)), MetadataError, 'a bad value after repeated good ones is refused')
  const badKey = encodeMetadata([['x-r', 'a'], ['x-r', 'a'], ['x-s', 'a']])
  badKey[2 + 2 * 10 + 2 + 2] = 0x41
  t.throws(() => readMetadata(new ByteReader(badKey)), MetadataError, 'a key that differs from the repeated one by a byte is checked')
})
