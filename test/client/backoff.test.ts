import t from 'tap'
import { Backoff } from '../../lib/client/backoff.js'

t.test('Should grow delays by the multiplier up to the cap, and start over after reset()', async t => {
  const backoff = new Backoff({ initialMs: 100, multiplier: 2, maxMs: 500, jitter: 0 })
  t.same([backoff.fail(), backoff.fail(), backoff.fail(), backoff.fail(), backoff.fail()], [100, 200, 400, 500, 500])
  backoff.reset()
  t.equal(backoff.fail(), 100)
})

t.test('Should move each delay by at most the jitter fraction, either way', async t => {
  const low = new Backoff({ initialMs: 1000, jitter: 0.2 }, () => 0)
  const high = new Backoff({ initialMs: 1000, jitter: 0.2 }, () => 1)
  const middle = new Backoff({ initialMs: 1000, jitter: 0.2 }, () => 0.5)
  t.same([low.fail(), middle.fail(), high.fail()], [800, 1000, 1200])
  const random = new Backoff({ initialMs: 1000, jitter: 0.2 })
  for (let i = 0; i < 100; i++) {
    random.reset()
    const delay = random.fail()
    t.ok(delay >= 800 && delay <= 1200, `${delay} ms`)
  }
  t.equal(new Backoff({ initialMs: 100, jitter: 5 }, () => 0).fail(), 0, 'jitter is capped at 1')
})

t.test('Should default to retrying at once', async t => {
  const backoff = new Backoff()
  t.same([backoff.fail(), backoff.fail()], [0, 0])
})
