import t from 'tap'
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
