import t from 'tap'
import { TurnQueue } from '../../lib/protocol/turn-queue.js'

/** A scheduler that runs callbacks only when told to. */
function manual (): { schedule: (callback: () => void) => void, scheduled: Array<() => void>, runAll: () => void } {
  const scheduled: Array<() => void> = []
  return {
    scheduled,
    schedule: callback => { scheduled.push(callback) },
    runAll: () => { while (scheduled.length > 0) scheduled.shift()!() }
  }
}

t.test('items added in one turn are handled together, in order, from one scheduled callback', async t => {
  const s = manual()
  const seen: number[] = []
  const q = new TurnQueue<number>(s.schedule, n => { seen.push(n) })
  q.add(1)
  q.add(2)
  q.add(3)
  t.equal(s.scheduled.length, 1, 'one callback scheduled for three items')
  t.same(seen, [], 'nothing handled before the callback runs')
  s.runAll()
  t.same(seen, [1, 2, 3])
})

t.test('an item added while the queue is being handled waits for the next callback', async t => {
  const s = manual()
  const seen: number[] = []
  const q = new TurnQueue<number>(s.schedule, n => {
    seen.push(n)
    if (n === 1) q.add(10)
  })
  q.add(1)
  q.add(2)
  s.scheduled.shift()!()
  t.same(seen, [1, 2])
  t.equal(s.scheduled.length, 1, 'a new callback for the item added meanwhile')
  s.runAll()
  t.same(seen, [1, 2, 10])
})

t.test('an item that throws does not keep the ones after it from being handled', async t => {
  const s = manual()
  const seen: number[] = []
  const q = new TurnQueue<number>(s.schedule, n => {
    if (n === 2) throw new Error('bad item')
    seen.push(n)
  })
  q.add(1)
  q.add(2)
  q.add(3)
  t.throws(() => { s.scheduled.shift()!() }, /bad item/)
  t.same(seen, [1])
  s.runAll()
  t.same(seen, [1, 3], 'the rest were queued again and handled')
})

t.test('works with queueMicrotask and process.nextTick', async t => {
  for (const schedule of [queueMicrotask, process.nextTick]) {
    const seen: string[] = []
    const q = new TurnQueue<string>(schedule, x => { seen.push(x) })
    q.add('a')
    q.add('b')
    await new Promise(resolve => setImmediate(resolve))
    t.same(seen, ['a', 'b'])
  }
})

t.test('calls the scheduler unbound, as browsers require of queueMicrotask', async t => {
  const receivers: unknown[] = []
  const q = new TurnQueue<number>(function (this: unknown, callback) { receivers.push(this); callback() }, () => {})
  q.add(1)
  t.same(receivers, [undefined])
})
