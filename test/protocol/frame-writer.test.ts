import t from 'tap'
import { FrameWriter, sendBatchesDueFromNow } from '../../lib/protocol/frame-writer.js'

function bytes (...values: number[]): Uint8Array {
  return Uint8Array.from(values)
}
function frameOf (size: number, fill: number): Uint8Array {
  return new Uint8Array(size).fill(fill)
}
/** Lets every queued microtask run. */
function settle (): Promise<void> {
  return new Promise(resolve => setImmediate(resolve))
}

function recorder (): { sent: Uint8Array[], log: string[], send: (m: Uint8Array) => void } {
  const sent: Uint8Array[] = []
  const log: string[] = []
  return { sent, log, send: m => { sent.push(m); log.push(`send ${m.byteLength}`) } }
}

t.test('FrameWriter sends nothing synchronously from write()', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 1000)
  w.write(bytes(1, 2))
  t.equal(r.sent.length, 0)
  await settle()
  t.equal(r.sent.length, 1)
})

t.test('FrameWriter batches frames written in the same tick into one message, in order', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 1000)
  w.write(bytes(1, 2, 3))
  w.write(bytes(4))
  w.write(bytes(5, 6))
  await settle()
  t.equal(r.sent.length, 1)
  t.same([...r.sent[0]!], [1, 2, 3, 4, 5, 6])
})

t.test('FrameWriter sends a lone frame as it is, without copying', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 1000)
  const frame = bytes(7, 8, 9)
  w.write(frame)
  await settle()
  t.equal(r.sent.length, 1)
  t.equal(r.sent[0], frame)
})

t.test('FrameWriter sends the frames of different ticks as different messages', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 1000)
  w.write(bytes(1))
  await settle()
  w.write(bytes(2))
  w.write(bytes(3))
  await settle()
  t.same(r.sent.map(m => [...m]), [[1], [2, 3]])
})

t.test('FrameWriter flushes the batch before a frame that would take it past maxMessageSize', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 25)
  w.write(frameOf(10, 1))
  w.write(frameOf(10, 2))
  t.equal(r.sent.length, 0, '20 bytes fit')
  w.write(frameOf(10, 3))
  t.equal(r.sent.length, 1, 'the first two left at once, before the third joined')
  t.same([...r.sent[0]!], [...frameOf(10, 1), ...frameOf(10, 2)])
  await settle()
  t.equal(r.sent.length, 2)
  t.same([...r.sent[1]!], [...frameOf(10, 3)])
  t.ok(r.sent.every(m => m.byteLength <= 25))
})

t.test('FrameWriter fills a message up to exactly maxMessageSize', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 25)
  w.write(frameOf(10, 1))
  w.write(frameOf(15, 2))
  await settle()
  t.equal(r.sent.length, 1)
  t.equal(r.sent[0]!.byteLength, 25)
})

t.test('FrameWriter sends a frame larger than maxMessageSize on its own', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 8)
  w.write(frameOf(3, 1))
  w.write(frameOf(12, 2))
  w.write(frameOf(2, 3))
  await settle()
  t.same(r.sent.map(m => m.byteLength), [3, 12, 2])
})

t.test('FrameWriter uses a changed maxMessageSize for later writes', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  w.maxMessageSize = 4
  w.write(frameOf(3, 1))
  w.write(frameOf(3, 2))
  await settle()
  t.same(r.sent.map(m => m.byteLength), [3, 3])
})

t.test('FrameWriter.flush sends the batch at once and the tick then sends nothing more', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  w.write(bytes(1))
  w.write(bytes(2))
  w.flush()
  t.same(r.sent.map(m => [...m]), [[1, 2]])
  w.flush()
  t.equal(r.sent.length, 1, 'flushing an empty batch sends nothing')
  await settle()
  t.equal(r.sent.length, 1)
})

t.test('FrameWriter runs done callbacks asynchronously, in order, just before the batch is sent', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  w.write(bytes(1), () => r.log.push('done 1'))
  w.write(bytes(2))
  w.write(bytes(3), () => r.log.push('done 3'))
  t.same(r.log, [])
  await settle()
  t.same(r.log, ['done 1', 'done 3', 'send 3'])
})

t.test('FrameWriter does not run done callbacks synchronously from an explicit flush', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  let called = 0
  w.write(bytes(1), () => called++)
  w.flush()
  t.equal(r.sent.length, 1)
  t.equal(called, 0, 'not yet')
  await settle()
  t.equal(called, 1)
})

t.test('FrameWriter runs the done callback of an early-flushed frame asynchronously, in write order', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 10)
  w.write(frameOf(8, 1), () => r.log.push('done a'))
  w.write(frameOf(8, 2), () => r.log.push('done b'))
  t.same(r.log, ['send 8'], 'first batch sent, its callback still pending')
  await settle()
  // Both callbacks in write order, in the tick, before the second batch goes.
  t.same(r.log, ['send 8', 'done a', 'done b', 'send 8'])
  t.equal(r.sent.length, 2)
})

t.test('FrameWriter lets what a done callback writes join the same batch', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  w.write(bytes(1), () => {
    w.write(bytes(2), () => r.log.push('done 2'))
    r.log.push('done 1')
  })
  await settle()
  t.same(r.sent.map(m => [...m]), [[1, 2]], 'one message')
  t.same(r.log, ['done 1', 'done 2', 'send 2'])
})

// Rounds of write callbacks run into one batch (PROTOCOL.md §2).
const CALLBACK_ROUNDS = 32

t.test('FrameWriter lets a chain of callbacks join the batch for 32 rounds, then sends it', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 1000)
  const total = CALLBACK_ROUNDS + 8
  // Each frame's callback writes the next, as a grpc-js stream writes its messages.
  const writeFrom = (n: number): void => {
    w.write(bytes(n), () => {
      r.log.push(`done ${n}`)
      if (n < total) writeFrom(n + 1)
    })
  }
  writeFrom(1)
  await settle()
  const first = Array.from({ length: CALLBACK_ROUNDS + 1 }, (_, i) => i + 1)
  const second = Array.from({ length: total - CALLBACK_ROUNDS - 1 }, (_, i) => i + CALLBACK_ROUNDS + 2)
  t.same(r.sent.map(m => [...m]), [first, second], 'the rounds\' writes in one message, the rest in the next')
  // The last round's callback waits for the send.
  const sendAt = r.log.indexOf(`send ${CALLBACK_ROUNDS + 1}`)
  t.equal(r.log[sendAt - 1], `done ${CALLBACK_ROUNDS}`)
  t.equal(r.log[sendAt + 1], `done ${CALLBACK_ROUNDS + 1}`)
})

t.test('FrameWriter stops running callbacks into a batch once it is full', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 4)
  const writeFrom = (n: number): void => {
    w.write(bytes(n), () => { if (n < 10) writeFrom(n + 1) })
  }
  writeFrom(1)
  await settle()
  t.same(r.sent.map(m => [...m]), [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]])
})

t.test('FrameWriter.discard drops the batch and its callbacks', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  let called = 0
  w.write(bytes(1), () => called++)
  w.write(bytes(2), () => called++)
  w.discard()
  await settle()
  t.equal(r.sent.length, 0, 'nothing sent')
  t.equal(called, 0, 'no callback ran')
  w.write(bytes(3), () => called++)
  await settle()
  t.same(r.sent.map(m => [...m]), [[3]], 'the writer still works afterwards')
  t.equal(called, 1)
})

t.test('FrameWriter.discard does not cancel callbacks of a batch already sent', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  let called = 0
  w.write(bytes(1), () => called++)
  w.flush()
  w.discard()
  await settle()
  t.equal(called, 1)
})

t.test('FrameWriter: writers written to in the same turn each send their own batch', async t => {
  const a = recorder()
  const b = recorder()
  const wa = new FrameWriter({ sendBatch: a.send }, 100)
  const wb = new FrameWriter({ sendBatch: b.send }, 100)
  wa.write(bytes(1))
  wb.write(bytes(2))
  wa.write(bytes(3))
  // What a callback writes to another writer goes out too.
  wb.write(bytes(4), () => { wa.write(bytes(5)) })
  await settle()
  t.same(a.sent.map(m => [...m]), [[1, 3], [5]])
  t.same(b.sent.map(m => [...m]), [[2, 4]])
})

t.test('FrameWriter: one writer throwing does not keep the others from sending', async t => {
  const b = recorder()
  const wa = new FrameWriter({ sendBatch: () => { throw new Error('socket gone') } }, 100)
  const wb = new FrameWriter({ sendBatch: b.send }, 100)
  const thrown: unknown[] = []
  const listeners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  process.on('uncaughtException', err => { thrown.push(err) })
  try {
    wa.write(bytes(1))
    wb.write(bytes(2))
    await settle()
  } finally {
    process.removeAllListeners('uncaughtException')
    for (const l of listeners) process.on('uncaughtException', l)
  }
  t.equal(thrown.length, 1, 'the error surfaced')
  t.same(b.sent.map(m => [...m]), [[2]], 'the other writer sent its batch')
})

t.test('FrameWriter.writeMessage batches a MESSAGE frame: header, then the chunk as it is', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 100)
  let done = 0
  w.write(bytes(9))
  w.writeMessage(0x01020304, 0x02, bytes(0xaa, 0xbb), () => done++)
  await settle()
  t.same(r.sent.map(m => [...m]), [[9, 0x04, 0x02, 1, 2, 3, 4, 0, 0, 0, 2, 0xaa, 0xbb]])
  t.equal(done, 1)
})

t.test('FrameWriter.writeMessage never splits a header from its chunk across messages', async t => {
  const r = recorder()
  // Room for the first frame (10 + 5) and the header of the second, not its chunk.
  const w = new FrameWriter({ sendBatch: r.send }, 25)
  w.writeMessage(1, 0, frameOf(5, 1))
  w.writeMessage(3, 0, frameOf(5, 2))
  await settle()
  t.same(r.sent.map(m => m.byteLength), [15, 15])
  t.same([...r.sent[1]!.subarray(0, 6)], [0x04, 0, 0, 0, 0, 3])
})

t.test('FrameWriter with maxBatchFrames sends a batch once it holds that many frames, the rest at the end of the turn', async t => {
  const r = recorder()
  const w = new FrameWriter({ sendBatch: r.send }, 1000, 3)
  w.write(bytes(1))
  w.writeMessage(1, 0, bytes(2))
  w.write(bytes(3))
  t.equal(r.sent.length, 0, 'three frames: nothing sent yet')
  w.write(bytes(4))
  t.same(r.sent.map(m => m.byteLength), [1 + 11 + 1], 'the fourth frame sent the first three')
  w.write(bytes(5))
  await settle()
  t.same(r.sent.map(m => [...m]), [[1, 4, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3], [4, 5]])
})

t.test('sendBatchesDueFromNow sends, at once, the writers that became due since; the rest and the callbacks wait for the tick', async t => {
  const [early, before, late] = [recorder(), recorder(), recorder()]
  const wEarly = new FrameWriter({ sendBatch: early.send }, 1000)
  const wBefore = new FrameWriter({ sendBatch: before.send }, 1000)
  const wLate = new FrameWriter({ sendBatch: late.send }, 1000)
  const done: string[] = []
  wBefore.write(bytes(9)) // due before the run starts: left to the tick
  const sendEarly = sendBatchesDueFromNow()
  wEarly.write(bytes(1, 2), () => { done.push('early 1') })
  wEarly.write(bytes(3))
  sendEarly()
  t.same(early.sent.map(m => [...m]), [[1, 2, 3]], 'a writer due since the call: its batch went at once')
  t.same(done, [], 'its callback waits for the tick, as if it had not been sent yet')
  t.same(before.sent, [], 'a writer due before the call waits for the tick')
  wEarly.write(bytes(4), () => { done.push('early 4') })
  wLate.write(bytes(5))
  sendEarly()
  t.same(early.sent.length, 1, 'a writer already sent once is not sent again: its later frames wait for the tick')
  t.same(late.sent.map(m => [...m]), [[5]], 'a writer that became due later is sent by the next call')
  await settle()
  t.same(early.sent.map(m => [...m]), [[1, 2, 3], [4]], 'what came after the early send left at the tick')
  t.same(before.sent.map(m => [...m]), [[9]])
  t.same(done, ['early 1', 'early 4'], 'callbacks ran in write order, once')
  sendBatchesDueFromNow()()
  t.same([early.sent.length, before.sent.length, late.sent.length], [2, 1, 1], 'nothing is due after the tick: nothing is sent')
})
