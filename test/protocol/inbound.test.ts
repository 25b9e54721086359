import t from 'tap'
import { FRAME_CHARGE, ReceiveWindow } from '../../lib/protocol/flow-control.js'
import { ProtocolError } from '../../lib/protocol/frame.js'
import { InboundMessages, type InboundError } from '../../lib/protocol/inbound.js'

function seq (n: number, from = 0): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (from + i) & 0xff)
}
function isError (v: unknown): v is InboundError {
  return v !== null && !(v instanceof Uint8Array)
}
function setup (windowSize: number, maxMessageSize: number): { inbound: InboundMessages, credit: number[] } {
  const credit: number[] = []
  return { inbound: new InboundMessages(windowSize, maxMessageSize, n => credit.push(n)), credit }
}

t.test('InboundMessages returns a message that arrives in one frame', async t => {
  const { inbound, credit } = setup(100, 1000)
  const chunk = seq(5)
  const got = inbound.receive(chunk, false)
  t.ok(got instanceof Uint8Array)
  t.same([...(got as Uint8Array)], [0, 1, 2, 3, 4])
  t.same(credit, [], 'no credit until the message is consumed')
  t.equal(inbound.window.size, 100)
})

t.test('InboundMessages joins MORE pieces back into one message', async t => {
  const { inbound } = setup(100, 1000)
  t.equal(inbound.receive(Uint8Array.of(0x61, 0x62), true), null)
  t.equal(inbound.receive(Uint8Array.of(0x63, 0x64), true), null)
  const got = inbound.receive(Uint8Array.of(0x65, 0x66), false)
  t.ok(got instanceof Uint8Array)
  t.equal(Buffer.from(got as Uint8Array).toString(), 'abcdef')
})

t.test('InboundMessages joins pieces ending in an empty last piece', async t => {
  const { inbound } = setup(100, 1000)
  t.equal(inbound.receive(seq(3), true), null)
  const got = inbound.receive(new Uint8Array(0), false)
  t.same([...(got as Uint8Array)], [0, 1, 2])
})

t.test('InboundMessages keeps its own copy of MORE pieces', async t => {
  const { inbound } = setup(100, 1000)
  const buffer = seq(3)
  t.equal(inbound.receive(buffer, true), null)
  buffer.fill(0xee) // the socket reuses its buffer
  const got = inbound.receive(Uint8Array.of(9), false)
  t.same([...(got as Uint8Array)], [0, 1, 2, 9])
})

t.test('InboundMessages starts a new message after a whole one', async t => {
  const { inbound } = setup(100, 1000)
  inbound.receive(seq(2), true)
  t.same([...(inbound.receive(seq(1, 2), false) as Uint8Array)], [0, 1, 2])
  t.equal(inbound.receive(seq(1, 7), true), null)
  t.same([...(inbound.receive(seq(1, 8), false) as Uint8Array)], [7, 8])
})

t.test('InboundMessages refuses bytes beyond the window with code 8 and details', async t => {
  const window = 10 + FRAME_CHARGE
  const { inbound, credit } = setup(window, 1000)
  const got = inbound.receive(seq(11), false)
  t.ok(isError(got))
  t.same(got, { code: 8, details: `Flow control window exceeded: a MESSAGE frame of 11 bytes counts ${11 + FRAME_CHARGE} with ${window} left of a ${window}-byte window`, peerFault: true })
  t.same(credit, [])
  t.ok(setup(window, 1000).inbound.receive(seq(10), false) instanceof Uint8Array, '10 bytes and the charge fit exactly')
})

t.test('InboundMessages charges FRAME_CHARGE on top of the payload: a window of n bytes refuses an n-byte message', async t => {
  const { inbound } = setup(10, 1000)
  t.same(inbound.receive(seq(10), false), { code: 8, details: `Flow control window exceeded: a MESSAGE frame of 10 bytes counts ${10 + FRAME_CHARGE} with 10 left of a 10-byte window`, peerFault: true })
  t.ok(setup(10, 1000).inbound.receive(seq(10 - FRAME_CHARGE), false) instanceof Uint8Array)
})

t.test('InboundMessages reports what is left of a window partly taken', async t => {
  const window = 3 * (10 + FRAME_CHARGE)
  const { inbound } = setup(window, 1000)
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.equal(inbound.window.available, 10 + FRAME_CHARGE)
  t.same(inbound.receive(seq(11), false), { code: 8, details: `Flow control window exceeded: a MESSAGE frame of 11 bytes counts ${11 + FRAME_CHARGE} with ${10 + FRAME_CHARGE} left of a ${window}-byte window`, peerFault: true })
})

t.test('InboundMessages refuses a message that overruns a window still held by unconsumed messages', async t => {
  const { inbound } = setup(100, 1000)
  t.ok(inbound.receive(seq(60), false) instanceof Uint8Array)
  const got = inbound.receive(seq(60), false)
  t.ok(isError(got))
  t.equal((got as InboundError).code, 8)
  t.match((got as InboundError).details, /^Flow control window exceeded/)
})

t.test('InboundMessages accepts a message once the one before it was consumed', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.ok(inbound.receive(seq(60), false) instanceof Uint8Array)
  inbound.consumed()
  t.same(credit, [60 + FRAME_CHARGE])
  t.ok(inbound.receive(seq(100 - FRAME_CHARGE), false) instanceof Uint8Array, 'the whole window is open again')
})

t.test('InboundMessages refuses a message larger than maxMessageSize with code 8', async t => {
  const { inbound } = setup(100, 5)
  t.equal(inbound.receive(seq(3), true), null)
  const got = inbound.receive(seq(3), false)
  t.same(got, { code: 8, details: 'Received message larger than max (6 vs 5)' })
  const single = setup(100, 5).inbound.receive(seq(6), false)
  t.same(single, { code: 8, details: 'Received message larger than max (6 vs 5)' })
  const piece = setup(100, 5).inbound.receive(seq(6), true)
  t.same(piece, { code: 8, details: 'Received message larger than max (at least 6 vs 5)' }, 'also for a MORE piece, whose message is at least that large')
})

t.test('InboundMessages accepts a message of exactly maxMessageSize', async t => {
  const { inbound } = setup(100, 5)
  t.equal(inbound.receive(seq(2), true), null)
  t.same([...(inbound.receive(seq(3, 2), false) as Uint8Array)], [0, 1, 2, 3, 4])
})

t.test('InboundMessages with maxMessageSize 0 accepts only empty messages', async t => {
  const { inbound } = setup(100, 0)
  t.same([...(inbound.receive(new Uint8Array(0), false) as Uint8Array)], [])
  t.same(inbound.receive(seq(1), false), { code: 8, details: 'Received message larger than max (1 vs 0)' })
})

t.test('InboundMessages with a negative maxMessageSize has no size limit', async t => {
  const { inbound } = setup(10 + FRAME_CHARGE, -1)
  for (let i = 0; i < 20; i++) t.equal(inbound.receive(seq(10), true), null)
  const got = inbound.receive(seq(10), false)
  t.ok(got instanceof Uint8Array)
  t.equal((got as Uint8Array).byteLength, 210)
})

t.test('InboundMessages returns credit for MORE pieces at once, batched by the window', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.equal(inbound.receive(seq(30), true), null)
  t.same(credit, [], '30 and the charge are under half the window')
  t.equal(inbound.receive(seq(30), true), null)
  t.same(credit, [2 * (30 + FRAME_CHARGE)], 'half reached: the pieces\' credit goes back without waiting for consumed()')
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.same(credit, [2 * (30 + FRAME_CHARGE)], 'the last piece\'s credit waits for consumed()')
  inbound.consumed()
  t.equal(inbound.window.available, 100 - (10 + FRAME_CHARGE), 'its credit is held in the batch')
})

t.test('InboundMessages lets a message larger than the window arrive in pieces', async t => {
  const piece = 10 + FRAME_CHARGE
  const { inbound, credit } = setup(piece, 1000)
  for (let i = 0; i < 5; i++) {
    t.equal(inbound.receive(seq(10, i * 10), true), null, `piece ${i}`)
  }
  t.same(credit, [piece, piece, piece, piece, piece], 'each piece exhausts the window, so its credit goes back at once')
  const got = inbound.receive(seq(10, 50), false)
  t.same([...(got as Uint8Array)], [...seq(60)])
})

t.test('InboundMessages returns credit for a whole message only on consumed()', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.ok(inbound.receive(seq(70), false) instanceof Uint8Array)
  t.same(credit, [])
  inbound.consumed()
  t.same(credit, [70 + FRAME_CHARGE])
})

t.test('InboundMessages returns the credit of whole messages oldest first, batched', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.ok(inbound.receive(seq(40), false) instanceof Uint8Array)
  t.ok(inbound.receive(seq(20), false) instanceof Uint8Array)
  inbound.consumed()
  t.same(credit, [], '40 and the charge are under half the window')
  inbound.consumed()
  t.same(credit, [40 + 20 + 2 * FRAME_CHARGE])
  const other = setup(100, 1000)
  t.ok(other.inbound.receive(seq(60 - FRAME_CHARGE), false) instanceof Uint8Array)
  t.ok(other.inbound.receive(seq(0), false) instanceof Uint8Array)
  other.inbound.consumed()
  t.same(other.credit, [60], 'the first consumed() returns the older, larger message\'s credit')
  other.inbound.consumed()
  t.same(other.credit, [60])
  t.equal(other.inbound.window.available, 100 - FRAME_CHARGE, 'the empty message\'s charge is batched')
})

t.test('InboundMessages holds back only the last piece of a message until consumed()', async t => {
  const piece = 10 + FRAME_CHARGE
  const { inbound, credit } = setup(piece, 1000)
  t.equal(inbound.receive(seq(10), true), null)
  t.same(credit, [piece])
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.same(credit, [piece])
  t.ok(isError(inbound.receive(seq(1), false)), 'the window is full until consumed()')
})

t.test('InboundMessages returns the held credit of a consumed message when the window is full', async t => {
  const { inbound, credit } = setup(10 + FRAME_CHARGE, 1000)
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  inbound.consumed()
  t.same(credit, [10 + FRAME_CHARGE])
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array, 'the whole window is open again')
})

t.test('InboundMessages.consumed() with no message held does nothing', async t => {
  const { inbound, credit } = setup(10 + FRAME_CHARGE, 1000)
  inbound.consumed()
  inbound.consumed()
  t.same(credit, [])
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  inbound.consumed()
  inbound.consumed()
  t.same(credit, [10 + FRAME_CHARGE], 'the extra consumed() returns no credit twice')
  t.equal(inbound.window.available, 10 + FRAME_CHARGE)
})

t.test('InboundMessages checks the window before the message size', async t => {
  const window = 10 + FRAME_CHARGE
  const { inbound } = setup(window, 5)
  t.same(inbound.receive(seq(11), false), { code: 8, details: `Flow control window exceeded: a MESSAGE frame of 11 bytes counts ${11 + FRAME_CHARGE} with ${window} left of a ${window}-byte window`, peerFault: true })
})

t.test('InboundMessages throws a ProtocolError for an empty MESSAGE frame with MORE', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.throws(() => inbound.receive(new Uint8Array(0), true), new ProtocolError('empty MESSAGE frame with MORE'))
  let caught: unknown
  try { inbound.receive(new Uint8Array(0), true) } catch (err) { caught = err }
  t.ok(caught instanceof ProtocolError, 'a ProtocolError, so the connection closes')
  t.equal((caught as ProtocolError).message, 'empty MESSAGE frame with MORE')
  t.equal(inbound.receive(seq(2), true), null)
  t.throws(() => inbound.receive(new Uint8Array(0), true), ProtocolError, 'also in the middle of a message')
  t.same(credit, [])
})

t.test('InboundMessages charges an empty whole message FRAME_CHARGE', async t => {
  const window = 3 * FRAME_CHARGE
  const { inbound, credit } = setup(window, 0)
  for (let i = 0; i < 3; i++) {
    const got = inbound.receive(new Uint8Array(0), false)
    t.ok(got instanceof Uint8Array && got.byteLength === 0, `empty message ${i}`)
    t.equal(inbound.window.available, window - (i + 1) * FRAME_CHARGE)
  }
  t.same(inbound.receive(new Uint8Array(0), false), { code: 8, details: `Flow control window exceeded: a MESSAGE frame of 0 bytes counts ${FRAME_CHARGE} with 0 left of a ${window}-byte window`, peerFault: true }, 'no frame is free')
  t.same(credit, [])
  const fresh = setup(window, 0)
  for (let i = 0; i < 3; i++) fresh.inbound.receive(new Uint8Array(0), false)
  fresh.inbound.consumed()
  t.same(fresh.credit, [FRAME_CHARGE], 'the window was exhausted: one empty message\'s charge goes back at once')
})

t.test('InboundMessages joins 100,000 one-byte MORE pieces, holding only their bytes', async t => {
  const pieces = 100_000
  const { inbound, credit } = setup(64 * 1024, -1)
  let wrong = 0
  let errors = 0
  const one = new Uint8Array(1)
  for (let i = 0; i < pieces; i++) {
    one[0] = i & 0xff // the same buffer each time, as a socket reuses its own
    const got = inbound.receive(one, true)
    if (got !== null) errors++
    if (inbound.buffered !== i + 1) wrong++
  }
  t.equal(errors, 0, 'every piece accepted: its credit came back in time')
  t.equal(wrong, 0, 'buffered is the bytes received after every piece')
  t.equal(inbound.buffered, pieces)
  const sent = credit.reduce((a, b) => a + b, 0)
  t.ok(sent >= pieces * (1 + FRAME_CHARGE) - 64 * 1024 / 2, 'the pieces\' credit went back, batched')
  const got = inbound.receive(Uint8Array.of(0xaa), false)
  t.ok(got instanceof Uint8Array)
  const message = got as Uint8Array
  t.equal(message.byteLength, pieces + 1)
  let mismatch = -1
  for (let i = 0; i < pieces; i++) {
    if (message[i] !== (i & 0xff)) { mismatch = i; break }
  }
  t.equal(mismatch, -1, 'every byte in order')
  t.equal(message[pieces], 0xaa)
  t.equal(inbound.buffered, 0, 'nothing held once the message is whole')
  t.equal(inbound.receive(seq(2), true), null, 'the next message starts clean')
  t.equal(inbound.buffered, 2)
  t.same([...(inbound.receive(seq(1, 2), false) as Uint8Array)], [0, 1, 2])
})

t.test('InboundMessages returns the credit of many whole messages oldest first after consumed()', async t => {
  // Model: a ReceiveWindow fed the same costs in arrival order.
  const window = 4096
  const { inbound, credit } = setup(window, -1)
  const model = new ReceiveWindow(window)
  const expected: number[] = []
  const held: number[] = []
  let received = 0
  let errors = 0
  // First the window filled with empty messages, then consumed all at once.
  for (let k = 0; k < Math.floor(window / FRAME_CHARGE); k++) {
    model.receive(FRAME_CHARGE)
    held.push(FRAME_CHARGE)
    if (!(inbound.receive(new Uint8Array(0), false) instanceof Uint8Array)) errors++
    received++
  }
  t.equal(inbound.window.available, window % FRAME_CHARGE)
  for (let round = 0; round < 1500; round++) {
    if (round === 0) {
      while (held.length > 0) {
        const increment = model.release(held.shift()!)
        if (increment > 0) expected.push(increment)
        inbound.consumed()
      }
    }
    // A few messages of varied sizes, empty ones too, then consume some of them.
    for (let k = 0; k < 1 + (round % 7); k++) {
      const size = (round * 37 + k * 101) % 300
      if (model.available < size + FRAME_CHARGE) break
      model.receive(size + FRAME_CHARGE)
      held.push(size + FRAME_CHARGE)
      if (!(inbound.receive(seq(size, received), false) instanceof Uint8Array)) errors++
      received++
    }
    const take = round % 3 === 2 ? held.length : Math.ceil(held.length / 2)
    for (let k = 0; k < take; k++) {
      const increment = model.release(held.shift()!)
      if (increment > 0) expected.push(increment)
      inbound.consumed()
    }
  }
  for (const cost of held.splice(0)) {
    const increment = model.release(cost)
    if (increment > 0) expected.push(increment)
    inbound.consumed()
  }
  t.equal(errors, 0)
  t.ok(received > 5000, `${received} messages, more than one block of held credit`)
  t.ok(expected.length > 10, `${expected.length} updates`)
  t.same(credit, expected, 'the same updates as releasing in arrival order')
  t.equal(inbound.window.available, model.available)
})

t.test('InboundMessages keeps the credit of pieces while a whole message waits unread, so unread messages never outgrow one message plus the window', async t => {
  const window = 4 * (10 + FRAME_CHARGE)
  const { inbound, credit } = setup(window, 1000)
  // A message larger than the window arrives: its pieces' credit goes back at once.
  for (let i = 0; i < 8; i++) t.equal(inbound.receive(seq(10), true), null)
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array, 'a message of 90 bytes through a 60-byte window')
  const returned = credit.reduce((a, b) => a + b, 0)
  t.equal(returned, 8 * (10 + FRAME_CHARGE), 'every piece returned')
  // Nobody read it. The next message's pieces now keep their credit.
  let accepted = 0
  while (accepted < 10 && inbound.receive(seq(10), true) === null) accepted++
  t.equal(credit.reduce((a, b) => a + b, 0), returned, 'no credit for pieces while a whole message waits')
  t.ok(accepted < 4, `the window bounds the second message: ${accepted} pieces of 10 bytes, then the window is exceeded`)
})

t.test('InboundMessages returns held piece credit once the unread message is taken', async t => {
  const window = 4 * (10 + FRAME_CHARGE)
  const { inbound, credit } = setup(window, 1000)
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.equal(inbound.receive(seq(10), true), null)
  t.equal(inbound.receive(seq(10), true), null)
  t.same(credit, [])
  inbound.consumed()
  t.same(credit, [3 * (10 + FRAME_CHARGE)], 'the message taken and the two held pieces, in one update')
  for (let i = 0; i < 10; i++) t.equal(inbound.receive(seq(10), true), null, 'pieces flow again')
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
})
