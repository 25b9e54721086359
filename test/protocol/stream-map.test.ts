import t from 'tap'
import fc from 'fast-check'
import { StreamMap } from '../../lib/protocol/stream-map.js'

t.test('set, get and size', async t => {
  const m = new StreamMap<string>()
  t.equal(m.size, 0)
  t.equal(m.get(1), undefined)
  m.set(1, 'a')
  m.set(3, 'b')
  t.equal(m.size, 2)
  t.equal(m.get(1), 'a')
  t.equal(m.get(3), 'b')
  t.equal(m.get(5), undefined)
})

t.test('setting an id again replaces its value without counting it twice', async t => {
  const m = new StreamMap<string>()
  m.set(7, 'a')
  m.set(7, 'b')
  t.equal(m.size, 1)
  t.equal(m.get(7), 'b')
})

t.test('delete removes a stream and says whether there was one', async t => {
  const m = new StreamMap<string>()
  m.set(1, 'a')
  t.equal(m.delete(1), true)
  t.equal(m.delete(1), false)
  t.equal(m.delete(9), false)
  t.equal(m.size, 0)
  t.equal(m.get(1), undefined)
})

t.test('values come in ascending id order, whatever the insertion order', async t => {
  const m = new StreamMap<number>()
  for (const id of [9, 1, 2 ** 31 - 1, 5, 3]) m.set(id, id)
  t.same([...m.values()], [1, 3, 5, 9, 2 ** 31 - 1])
})

t.test('a stream deleted during iteration, not yet reached, is skipped', async t => {
  const m = new StreamMap<number>()
  for (const id of [1, 3, 5, 7]) m.set(id, id)
  const seen: number[] = []
  for (const v of m.values()) {
    seen.push(v)
    if (v === 1) { m.delete(3); m.delete(1) }
  }
  t.same(seen, [1, 5, 7])
  t.same([...m.values()], [5, 7])
})

t.test('clear during iteration ends it', async t => {
  const m = new StreamMap<number>()
  for (const id of [1, 3, 5]) m.set(id, id)
  const seen: number[] = []
  for (const v of m.values()) {
    seen.push(v)
    m.clear()
  }
  t.same(seen, [1])
  t.equal(m.size, 0)
  t.same([...m.values()], [])
})

t.test('one insert and one delete per call, for many calls, keeps only the open streams', async t => {
  const m = new StreamMap<number>()
  const open = 64
  let next = 1
  for (let i = 0; i < open; i++) { m.set(next, next); next += 2 }
  let missing = 0
  for (let i = 0; i < 100_000; i++) {
    if (!m.delete(next - 2 * open)) missing++
    m.set(next, next)
    next += 2
  }
  t.equal(missing, 0, 'every delete found its stream')
  t.equal(m.size, open)
  const values = [...m.values()]
  t.equal(values.length, open)
  t.equal(values[0], next - 2 * open)
  t.equal(values[open - 1], next - 2)
})

t.test('a stream whose slot is taken by an older one is still found, and takes the slot once it is free', async t => {
  const m = new StreamMap<string>()
  // Ids 1, 17 and 33 pick the same slot of the first 8.
  m.set(1, 'a')
  m.set(17, 'b')
  m.set(33, 'c')
  t.equal(m.get(1), 'a')
  t.equal(m.get(17), 'b')
  t.equal(m.get(33), 'c')
  t.equal(m.delete(1), true)
  t.equal(m.get(17), 'b')
  m.set(49, 'd')
  t.equal(m.get(49), 'd')
  t.equal(m.delete(17), true)
  t.equal(m.delete(17), false)
  t.same([...m.values()], ['c', 'd'])
  t.equal(m.size, 2)
})

t.test('grows past its first slots and keeps every stream', async t => {
  const m = new StreamMap<number>()
  const ids = Array.from({ length: 300 }, (_, i) => 2 * i + 1)
  for (const id of ids) m.set(id, id)
  t.equal(m.size, 300)
  t.equal(ids.filter(id => m.get(id) !== id).length, 0, 'all found')
  t.same([...m.values()], ids)
})

t.test('a long-lived stream among many short ones', async t => {
  const m = new StreamMap<number>()
  m.set(1, 1)
  let lost = 0
  for (let id = 3; id < 20_000; id += 2) {
    m.set(id, id)
    if (m.get(1) !== 1 || m.get(id) !== id) lost++
    m.delete(id)
  }
  t.equal(lost, 0)
  t.equal(m.size, 1)
  t.same([...m.values()], [1])
})

t.test('behaves as a Map under any sequence of sets, deletes and clears', async t => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('set' as const), id: fc.integer({ min: 1, max: 400 }) }),
    fc.record({ kind: fc.constant('delete' as const), id: fc.integer({ min: 1, max: 400 }) }),
    fc.record({ kind: fc.constant('clear' as const), id: fc.constant(0) })
  )
  let runs = 0
  fc.assert(fc.property(fc.array(op, { maxLength: 300 }), ops => {
    runs++
    const m = new StreamMap<number>()
    const ref = new Map<number, number>()
    for (const [n, o] of ops.entries()) {
      if (o.kind === 'set') { m.set(o.id, n); ref.set(o.id, n) }
      if (o.kind === 'delete' && m.delete(o.id) !== ref.delete(o.id)) return false
      if (o.kind === 'clear') { m.clear(); ref.clear() }
      if (m.size !== ref.size) return false
    }
    for (let id = 1; id <= 400; id++) if (m.get(id) !== ref.get(id)) return false
    const sorted = [...ref.entries()].sort((a, b) => a[0] - b[0]).map(e => e[1])
    return JSON.stringify([...m.values()]) === JSON.stringify(sorted)
  }), { numRuns: 300 })
  t.equal(runs, 300)
})

t.test('refuses stream id 0', async t => {
  t.throws(() => { new StreamMap<number>().set(0, 1) }, RangeError)
})
