import t from 'tap'
import fc from 'fast-check'
import { ByteQueue, MessageQueue } from '../../lib/protocol/byte-queue.js'

// The queue's block size; pushes around it cross blocks.
const BLOCK = 16 * 1024

function seq (n: number, from = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff)
}
function same (a: Uint8Array, b: ArrayLike<number>): boolean {
  if (a.byteLength !== b.length) return false
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false
  return true
}

t.test('ByteQueue starts empty', async t => {
  const q = new ByteQueue()
  t.equal(q.length, 0)
  t.equal(q.shift(0).byteLength, 0)
  t.throws(() => q.shift(1), RangeError)
})

t.test('ByteQueue gives bytes back first in, first out, in any split', async t => {
  const q = new ByteQueue()
  q.push(Uint8Array.of(1, 2, 3))
  q.push(Uint8Array.of(4, 5))
  q.push(new Uint8Array(0))
  t.equal(q.length, 5)
  t.same([...q.shift(2)], [1, 2])
  t.equal(q.length, 3)
  t.same([...q.shift(3)], [3, 4, 5])
  t.equal(q.length, 0)
  q.push(Uint8Array.of(6))
  t.same([...q.shift(1)], [6])
})

t.test('ByteQueue copies what is pushed', async t => {
  const q = new ByteQueue()
  const b = seq(4)
  q.push(b)
  b.fill(0xee)
  t.same([...q.shift(4)], [0, 1, 2, 3])
})

t.test('ByteQueue.push takes a view of a larger buffer correctly', async t => {
  const q = new ByteQueue()
  q.push(seq(20).subarray(5, 9))
  t.same([...q.shift(4)], [5, 6, 7, 8])
})

t.test('ByteQueue.shift refuses more than is held and takes nothing then', async t => {
  const q = new ByteQueue()
  q.push(seq(3))
  t.throws(() => q.shift(4), new RangeError('ByteQueue: shift past the end'))
  t.equal(q.length, 3)
  t.same([...q.shift(3)], [0, 1, 2])
})

t.test('ByteQueue carries bytes across blocks', async t => {
  const q = new ByteQueue()
  q.push(seq(BLOCK - 1))
  q.push(seq(3, BLOCK - 1)) // straddles the end of the first block
  t.equal(q.length, BLOCK + 2)
  t.ok(same(q.shift(BLOCK + 2), seq(BLOCK + 2)))
  t.equal(q.length, 0)
})

t.test('ByteQueue holds a push larger than a block whole', async t => {
  const q = new ByteQueue()
  q.push(seq(10))
  const big = seq(3 * BLOCK + 17, 10)
  q.push(big)
  t.equal(q.length, 3 * BLOCK + 27)
  t.ok(same(q.shift(3 * BLOCK + 27), seq(3 * BLOCK + 27)))
})

t.test('ByteQueue.shift within one block is a view; across blocks a copy; both survive later pushes', async t => {
  const q = new ByteQueue()
  q.push(seq(100))
  const view = q.shift(10)
  t.ok(same(view, seq(10)))
  t.equal(view.buffer.byteLength, 256, 'a view of its block (a queue starts with a 256-byte one)')
  q.push(new Uint8Array(BLOCK * 2).fill(0xff))
  t.ok(same(view, seq(10)), 'a view is not overwritten by later pushes')
  const cross = q.shift(BLOCK + 1) // the rest of the first block and 11 bytes of the next
  t.equal(cross.buffer.byteLength, BLOCK + 1, 'a copy')
  t.ok(same(cross.subarray(0, 90), seq(90, 10)))
  t.ok(cross.subarray(90).every(b => b === 0xff))
  q.push(new Uint8Array(BLOCK).fill(0x11))
  t.ok(same(view, seq(10)))
  t.ok(same(cross.subarray(0, 90), seq(90, 10)), 'a copy is not overwritten either')
  t.ok(cross.subarray(90).every(b => b === 0xff))
  t.equal(q.length, 90 + 2 * BLOCK - BLOCK - 1 + BLOCK)
})

t.test('ByteQueue does not reuse a drained block for later pushes', async t => {
  const q = new ByteQueue()
  q.push(seq(5))
  const view = q.shift(5) // drains the only block
  t.equal(q.length, 0)
  q.push(Uint8Array.of(9, 9, 9, 9, 9))
  t.same([...view], [0, 1, 2, 3, 4])
  t.same([...q.shift(5)], [9, 9, 9, 9, 9])
})

t.test('ByteQueue.clear drops everything and the queue works on', async t => {
  const q = new ByteQueue()
  q.push(seq(BLOCK + 5))
  q.shift(3)
  const view = q.shift(2)
  q.clear()
  t.equal(q.length, 0)
  t.throws(() => q.shift(1), RangeError)
  q.push(Uint8Array.of(7, 8))
  t.equal(q.length, 2)
  t.same([...q.shift(2)], [7, 8])
  t.same([...view], [3, 4], 'a view taken before clear() is kept')
})

t.test('MessageQueue keeps whole messages in order, empty ones too', async t => {
  const q = new MessageQueue()
  t.equal(q.size, 0)
  t.equal(q.byteLength, 0)
  t.equal(q.shift(), undefined)
  q.push(seq(3))
  q.push(new Uint8Array(0))
  q.push(seq(2, 10))
  t.equal(q.size, 3)
  t.equal(q.byteLength, 5, 'the bytes alone (lengths are kept apart)')
  t.same([...q.shift()!], [0, 1, 2])
  t.same([...q.shift()!], [])
  t.same([...q.shift()!], [10, 11])
  t.equal(q.shift(), undefined)
  t.equal(q.size, 0)
  t.equal(q.byteLength, 0)
})

t.test('MessageQueue copies a message in', async t => {
  const q = new MessageQueue()
  const m = seq(4)
  q.push(m)
  m.fill(0)
  t.same([...q.shift()!], [0, 1, 2, 3])
})

t.test('MessageQueue holds messages larger than a block and many small ones across blocks', async t => {
  const q = new MessageQueue()
  q.push(seq(BLOCK * 2 + 1))
  for (let i = 0; i < 10_000; i++) q.push(Uint8Array.of(i & 0xff))
  t.equal(q.size, 10_001)
  t.equal(q.byteLength, BLOCK * 2 + 1 + 10_000)
  t.ok(same(q.shift()!, seq(BLOCK * 2 + 1)))
  let wrong = 0
  for (let i = 0; i < 10_000; i++) {
    const m = q.shift()!
    if (m.byteLength !== 1 || m[0] !== (i & 0xff)) wrong++
  }
  t.equal(wrong, 0)
  t.equal(q.size, 0)
})

t.test('MessageQueue.clear drops every message', async t => {
  const q = new MessageQueue()
  q.push(seq(5))
  q.push(seq(5))
  q.clear()
  t.equal(q.size, 0)
  t.equal(q.byteLength, 0)
  t.equal(q.shift(), undefined)
  q.push(Uint8Array.of(1))
  t.same([...q.shift()!], [1])
})

type Op =
  | { kind: 'push', size: number, fill: number }
  | { kind: 'shift', size: number }
  | { kind: 'clear' }

// Sizes around the block size are likelier than uniform 0…40,000 alone would make them.
const size = fc.oneof(
  fc.integer({ min: 0, max: 40_000 }),
  fc.integer({ min: 0, max: 16 }),
  fc.integer({ min: BLOCK - 8, max: BLOCK + 8 })
)
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('push' as const), size, fill: fc.integer({ min: 0, max: 255 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('shift' as const), size }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('clear' as const) }) }
)

// Each pushed buffer holds distinct bytes, so a shift from the wrong place shows.
function pattern (n: number, fill: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (fill + i * 7) & 0xff)
}

t.test('ByteQueue matches an array of bytes under random push, shift and clear', async t => {
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), ops => {
    const q = new ByteQueue()
    let model: number[] = []
    // Every shifted result with what it held then, to check none is altered later.
    const taken: Array<{ bytes: Uint8Array, expected: number[] }> = []
    for (const o of ops) {
      if (o.kind === 'push') {
        const b = pattern(o.size, o.fill)
        q.push(b)
        for (const x of b) model.push(x)
      } else if (o.kind === 'shift') {
        // Shift at most what is held, so most shifts succeed.
        const n = model.length === 0 ? 0 : o.size % (model.length + 1)
        const got = q.shift(n)
        const expected = model.slice(0, n)
        model = model.slice(n)
        if (!same(got, expected)) return false
        taken.push({ bytes: got, expected })
      } else {
        q.clear()
        model = []
      }
      if (q.length !== model.length) return false
      for (const s of taken) if (!same(s.bytes, s.expected)) return false
    }
    // Too much is refused and leaves the queue as it was.
    try { q.shift(model.length + 1); return false } catch (err) { if (!(err instanceof RangeError)) throw err }
    return same(q.shift(model.length), model) && q.length === 0
  }), { numRuns: 200 })
  t.pass('200 random runs agree with the model')
})

t.test('MessageQueue matches an array of messages under random push, shift and clear', async t => {
  fc.assert(fc.property(fc.array(op, { maxLength: 60 }), ops => {
    const q = new MessageQueue()
    let model: Uint8Array[] = []
    const taken: Array<{ bytes: Uint8Array, expected: Uint8Array }> = []
    for (const o of ops) {
      if (o.kind === 'push') {
        const m = pattern(o.size, o.fill)
        q.push(m)
        model.push(m.slice())
        m.fill(0) // the queue holds its own copy
      } else if (o.kind === 'shift') {
        const got = q.shift()
        const expected = model.shift()
        if (expected === undefined) {
          if (got !== undefined) return false
        } else {
          if (got === undefined || !same(got, expected)) return false
          taken.push({ bytes: got, expected })
        }
      } else {
        q.clear()
        model = []
      }
      if (q.size !== model.length) return false
      if (q.byteLength !== model.reduce((n, m) => n + m.byteLength, 0)) return false
      for (const s of taken) if (!same(s.bytes, s.expected)) return false
    }
    for (const m of model) {
      const got = q.shift()
      if (got === undefined || !same(got, m)) return false
    }
    return q.shift() === undefined && q.size === 0 && q.byteLength === 0
  }), { numRuns: 200 })
  t.pass('200 random runs agree with the model')
})

t.test('ByteQueue starts with small blocks and doubles them up to 16 KiB, afresh once drained', async t => {
  const q = new ByteQueue()
  const expected = [256, 512, 1024, 2048, 4096, 8192, 16384, 16384]
  // Each push exactly fills a block of the size expected next.
  for (const size of expected) q.push(new Uint8Array(size))
  const sizes = expected.map(size => q.shift(size).buffer.byteLength)
  t.same(sizes, expected)
  q.clear()
  q.push(new Uint8Array(1))
  t.equal(q.shift(1).buffer.byteLength, 256, 'small again after clear()')
  q.push(new Uint8Array(40000))
  t.equal(q.shift(40000).buffer.byteLength, 40000, 'a push larger than a block gets a block of its size')
})
