import t from 'tap'
import { ByteReader, ByteWriter, TruncatedError, utf8Decode, utf8Encode } from '../../lib/protocol/bytes.js'

function hex (text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '')
  return Uint8Array.from(clean.match(/../g) ?? [], b => parseInt(b, 16))
}
function toHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

t.test('utf8Encode writes ASCII, BMP and non-BMP characters as UTF-8 bytes', async t => {
  t.equal(toHex(utf8Encode('')), '')
  t.equal(toHex(utf8Encode('A~')), '417e')
  t.equal(toHex(utf8Encode('é')), 'c3a9')
  t.equal(toHex(utf8Encode('☺')), 'e298ba')
  t.equal(toHex(utf8Encode('😈')), 'f09f9888')
  t.ok(utf8Encode('x') instanceof Uint8Array)
})

t.test('utf8Decode reads UTF-8 bytes back into the same text', async t => {
  t.equal(utf8Decode(hex('')), '')
  t.equal(utf8Decode(hex('417e')), 'A~')
  t.equal(utf8Decode(hex('c3a9 e298ba f09f9888')), 'é☺😈')
  const text = '\t\nwhitespace\r\nand BMP ☺ and non-BMP 😈 %41 100%'
  t.equal(utf8Decode(utf8Encode(text)), text)
})

t.test('utf8Decode replaces invalid UTF-8 with U+FFFD instead of throwing', async t => {
  t.equal(utf8Decode(hex('ff')), '\ufffd')
  t.equal(utf8Decode(hex('61 c3')), 'a\ufffd')
  t.equal(utf8Decode(hex('61 80 62')), 'a\ufffdb')
})

t.test('utf8Decode reads only the bytes of a subarray', async t => {
  const all = hex('78 6869 79')
  t.equal(utf8Decode(all.subarray(1, 3)), 'hi')
})

t.test('TruncatedError names the missing field', async t => {
  const err = new TruncatedError('path length')
  t.ok(err instanceof Error)
  t.equal(err.name, 'TruncatedError')
  t.equal(err.message, 'truncated path length')
})

t.test('ByteReader reads big-endian u16, u32 and i32 in sequence', async t => {
  const r = new ByteReader(hex('0102 01020304 fffffffe 80000000 7fffffff ffff'))
  t.equal(r.remaining, 20)
  t.equal(r.u16('a'), 0x0102)
  t.equal(r.offset, 2)
  t.equal(r.u32('b'), 0x01020304)
  t.equal(r.i32('c'), -2)
  t.equal(r.i32('d'), -2147483648)
  t.equal(r.u32('e'), 0x7fffffff)
  t.equal(r.u16('f'), 0xffff)
  t.equal(r.remaining, 0)
  t.equal(r.offset, 20)
})

t.test('ByteReader.u32 reads the high bit as unsigned', async t => {
  t.equal(new ByteReader(hex('ffffffff')).u32('x'), 0xffffffff)
  t.equal(new ByteReader(hex('80000000')).u32('x'), 0x80000000)
})

t.test('ByteReader honours the byteOffset of a subarray', async t => {
  const backing = hex('aa bb 0001 00000002 ffffffff 636465 cc')
  const r = new ByteReader(backing.subarray(2, 15))
  t.equal(r.remaining, 13)
  t.equal(r.u16('a'), 1)
  t.equal(r.u32('b'), 2)
  t.equal(r.i32('c'), -1)
  t.equal(toHex(r.take(3, 'd')), '636465')
  t.equal(r.remaining, 0)
  t.throws(() => r.u16('next'), new TruncatedError('next'))
})

t.test('ByteReader.take returns a view of the next bytes, not a copy', async t => {
  const bytes = hex('01 02 03 04 05')
  const r = new ByteReader(bytes)
  r.take(1, 'skip')
  const v = r.take(3, 'three')
  t.equal(toHex(v), '020304')
  t.equal(v.buffer, bytes.buffer)
  bytes[2] = 0xee
  t.equal(v[1], 0xee)
  t.equal(r.offset, 4)
  t.equal(toHex(r.take(0, 'nothing')), '')
  t.equal(r.offset, 4)
})

t.test('ByteReader.rest returns everything left and moves to the end', async t => {
  const r = new ByteReader(hex('01 02 03'))
  r.take(1, 'x')
  t.equal(toHex(r.rest()), '0203')
  t.equal(r.remaining, 0)
  t.equal(r.offset, 3)
  t.equal(toHex(r.rest()), '')
})

t.test('ByteReader throws TruncatedError naming the field when bytes run out', async t => {
  t.throws(() => new ByteReader(hex('01')).u16('key length'), { name: 'TruncatedError', message: 'truncated key length' })
  t.throws(() => new ByteReader(hex('010203')).u32('window'), { name: 'TruncatedError', message: 'truncated window' })
  t.throws(() => new ByteReader(hex('010203')).i32('status code'), { name: 'TruncatedError', message: 'truncated status code' })
  t.throws(() => new ByteReader(hex('0102')).take(3, 'path'), { name: 'TruncatedError', message: 'truncated path' })
  t.throws(() => new ByteReader(new Uint8Array(0)).u16('count'), TruncatedError)
})

t.test('ByteReader does not advance on a truncated read', async t => {
  const r = new ByteReader(hex('0102 03'))
  t.equal(r.u16('a'), 0x0102)
  t.throws(() => r.u16('b'), TruncatedError)
  t.equal(r.offset, 2)
  t.equal(r.remaining, 1)
})

t.test('ByteWriter writes big-endian u8, u16, u32, i32 and raw bytes in sequence', async t => {
  const out = new Uint8Array(1 + 2 + 4 + 4 + 4 + 3)
  const w = new ByteWriter(out)
  w.u8(0xab)
  w.u16(0x0102)
  w.u32(0xfffffffe)
  w.i32(-1)
  w.i32(-2147483648)
  w.put(hex('636465'))
  t.equal(w.offset, out.byteLength)
  t.equal(toHex(out), 'ab 0102 fffffffe ffffffff 80000000 636465'.replace(/ /g, ''))
})

t.test('ByteWriter honours the byteOffset of a subarray and leaves the rest alone', async t => {
  const backing = new Uint8Array(10).fill(0xee)
  const w = new ByteWriter(backing.subarray(3, 9))
  w.u16(0x0a0b)
  w.u32(0x01020304)
  t.equal(w.offset, 6)
  t.equal(toHex(backing), 'eeeeee0a0b01020304ee')
})

t.test('ByteWriter starts at a chosen offset', async t => {
  const out = new Uint8Array(4)
  const w = new ByteWriter(out)
  w.offset = 2
  w.u16(0xbeef)
  t.equal(toHex(out), '0000beef')
  t.throws(() => w.u8(1), RangeError)
})
