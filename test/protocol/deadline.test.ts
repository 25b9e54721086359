import t from 'tap'
import { whenDeadlinePasses } from '../../lib/protocol/deadline.js'

t.test('Should fire at the deadline, not before', async t => {
  const start = Date.now()
  await new Promise<void>(resolve => { whenDeadlinePasses(start + 40, resolve) })
  t.ok(Date.now() - start >= 39, `fired after ${Date.now() - start} ms`)
})

t.test('Should not fire once stopped', async t => {
  let fired = false
  const stop = whenDeadlinePasses(Date.now() + 10, () => { fired = true })
  stop()
  await new Promise(resolve => setTimeout(resolve, 40))
  t.equal(fired, false)
})

t.test('Should re-arm, not fire at once, for a deadline beyond setTimeout\'s range', async t => {
  let fired = false
  // 30 days: setTimeout alone would overflow and fire immediately.
  const stop = whenDeadlinePasses(Date.now() + 30 * 24 * 3600 * 1000, () => { fired = true })
  await new Promise(resolve => setTimeout(resolve, 30))
  t.equal(fired, false)
  stop()
})
