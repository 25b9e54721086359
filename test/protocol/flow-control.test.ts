import t from 'tap'
import { FRAME_CHARGE, MAX_WINDOW, ReceiveWindow, SendWindow } from '../../lib/protocol/flow-control.js'

t.test('MAX_WINDOW is 2^31-1', async t => {
  t.equal(MAX_WINDOW, 2 ** 31 - 1)
  t.equal(MAX_WINDOW, 0x7fffffff)
})

t.test('FRAME_CHARGE is 5, the size of a gRPC message prefix', async t => {
  t.equal(FRAME_CHARGE, 5)
})

t.test('SendWindow.take takes what is wanted while the window allows it', async t => {
  const w = new SendWindow(100)
  t.equal(w.take(30), 30)
  t.equal(w.available, 70)
  t.equal(w.take(70), 70)
  t.equal(w.available, 0)
})

t.test('SendWindow.take takes no more than is available', async t => {
  const w = new SendWindow(10)
  t.equal(w.take(25), 10)
  t.equal(w.available, 0)
  t.equal(w.take(5), 0)
  t.equal(w.available, 0)
})

t.test('SendWindow.take of zero takes nothing', async t => {
  const w = new SendWindow(10)
  t.equal(w.take(0), 0)
  t.equal(w.available, 10)
})

t.test('SendWindow.grant adds credit', async t => {
  const w = new SendWindow(0)
  t.equal(w.grant(5), true)
  t.equal(w.available, 5)
  t.equal(w.take(7), 5)
  t.equal(w.grant(100), true)
  t.equal(w.available, 100)
})

t.test('SendWindow.grant refuses a zero increment and leaves the window alone', async t => {
  const w = new SendWindow(10)
  t.equal(w.grant(0), false)
  t.equal(w.available, 10)
  const empty = new SendWindow(0)
  t.equal(empty.grant(0), false)
  t.equal(empty.available, 0)
})

t.test('SendWindow.grant allows exactly MAX_WINDOW and refuses going past it', async t => {
  const w = new SendWindow(MAX_WINDOW - 10)
  t.equal(w.grant(11), false, 'one past the maximum')
  t.equal(w.available, MAX_WINDOW - 10, 'unchanged after a refused grant')
  t.equal(w.grant(10), true, 'up to the maximum')
  t.equal(w.available, MAX_WINDOW)
  t.equal(w.grant(1), false)
  t.equal(w.available, MAX_WINDOW)
  const fresh = new SendWindow(0)
  t.equal(fresh.grant(MAX_WINDOW), true)
  t.equal(new SendWindow(0).grant(MAX_WINDOW + 1), false)
  t.equal(new SendWindow(1).grant(0xffffffff), false, 'the largest u32 increment')
})

t.test('ReceiveWindow.receive accepts bytes up to the window', async t => {
  const w = new ReceiveWindow(100)
  t.equal(w.size, 100)
  t.equal(w.receive(40), true)
  t.equal(w.receive(60 - FRAME_CHARGE), true)
  t.equal(w.receive(FRAME_CHARGE), true, 'an empty message takes exactly its charge')
  t.equal(w.receive(FRAME_CHARGE), false, 'and no further empty message fits')
})

t.test('ReceiveWindow.available follows what the sender may still send', async t => {
  const w = new ReceiveWindow(100)
  t.equal(w.available, 100)
  t.equal(w.receive(10 + FRAME_CHARGE), true)
  t.equal(w.available, 100 - (10 + FRAME_CHARGE))
  t.equal(w.receive(100), false)
  t.equal(w.available, 100 - (10 + FRAME_CHARGE), 'a refused receive takes nothing')
  t.equal(w.receive(40), true)
  t.equal(w.available, 100 - (10 + FRAME_CHARGE) - 40)
  t.equal(w.release(10 + FRAME_CHARGE), 0, 'under half: batched')
  t.equal(w.available, 100 - (10 + FRAME_CHARGE) - 40, 'batched credit is not available yet')
  t.equal(w.release(40), 40 + 10 + FRAME_CHARGE)
  t.equal(w.available, 100, 'returned credit is available again')
})

t.test('ReceiveWindow.receive refuses bytes beyond the window and counts nothing for them', async t => {
  const w = new ReceiveWindow(100)
  t.equal(w.receive(101), false)
  t.equal(w.receive(100), true, 'the refused bytes took nothing')
  t.equal(w.receive(1), false)
  const partly = new ReceiveWindow(10)
  t.equal(partly.receive(6), true)
  t.equal(partly.receive(5), false)
  t.equal(partly.receive(4), true)
})

t.test('ReceiveWindow.release batches credit until half the window is released', async t => {
  const w = new ReceiveWindow(100)
  t.equal(w.receive(50), true)
  t.equal(w.release(20), 0)
  t.equal(w.release(29), 0, '49 released: still under half')
  t.equal(w.release(1), 50, 'half released: all of it goes back at once')
  t.equal(w.release(0), 0)
  // The window is whole again.
  t.equal(w.receive(100), true)
  t.equal(w.receive(1), false)
})

t.test('ReceiveWindow.release returns credit at once when the window is exhausted', async t => {
  const w = new ReceiveWindow(100)
  t.equal(w.receive(100), true)
  t.equal(w.release(10), 10, 'the sender is stalled: no batching')
  t.equal(w.receive(10), true)
  t.equal(w.receive(1), false)
  t.equal(w.release(1), 1)
  t.equal(w.receive(1), true)
})

t.test('ReceiveWindow.release after credit goes back starts a new batch', async t => {
  const w = new ReceiveWindow(10)
  t.equal(w.receive(10), true)
  t.equal(w.release(5), 5)
  t.equal(w.release(2), 0)
  t.equal(w.release(2), 0)
  t.equal(w.release(1), 5)
})

t.test('ReceiveWindow.release with an odd window needs at least half, rounded up', async t => {
  const w = new ReceiveWindow(5)
  t.equal(w.receive(3), true)
  t.equal(w.release(2), 0, '2 < 2.5')
  t.equal(w.release(1), 3, '3 >= 2.5')
})

t.test('ReceiveWindow.release holds a small batch back until the window runs out again', async t => {
  const w = new ReceiveWindow(8)
  t.equal(w.receive(8), true)
  const increments: number[] = []
  for (let i = 0; i < 8; i++) increments.push(w.release(1))
  // Exhausted: the first byte goes back alone; then batching until half (4).
  t.same(increments, [1, 0, 0, 0, 4, 0, 0, 0])
  t.equal(w.receive(5), true, 'the sender got 5 bytes of credit back')
  t.equal(w.receive(1), false, 'and no more')
  t.equal(w.release(0), 3, 'the window is exhausted: the 3 held bytes go back')
  t.equal(w.receive(3), true)
  t.equal(w.receive(1), false)
})
