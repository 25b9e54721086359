import t from 'tap'
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
  const { inbound, credit } = setup(10, 1000)
  const got = inbound.receive(seq(11), false)
  t.ok(isError(got))
  t.same(got, { code: 8, details: 'Flow control window exceeded: received 11 bytes with 10 allowed in flight' })
  t.same(credit, [])
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
  t.same(credit, [60])
  t.ok(inbound.receive(seq(100), false) instanceof Uint8Array)
})

t.test('InboundMessages refuses a message larger than maxMessageSize with code 8', async t => {
  const { inbound } = setup(100, 5)
  t.equal(inbound.receive(seq(3), true), null)
  const got = inbound.receive(seq(3), false)
  t.same(got, { code: 8, details: 'Received message larger than max (6 vs 5)' })
  const single = setup(100, 5).inbound.receive(seq(6), false)
  t.same(single, { code: 8, details: 'Received message larger than max (6 vs 5)' })
  const piece = setup(100, 5).inbound.receive(seq(6), true)
  t.same(piece, { code: 8, details: 'Received message larger than max (6 vs 5)' }, 'also for a MORE piece')
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
  const { inbound } = setup(10, -1)
  for (let i = 0; i < 20; i++) t.equal(inbound.receive(seq(10), true), null)
  const got = inbound.receive(seq(10), false)
  t.ok(got instanceof Uint8Array)
  t.equal((got as Uint8Array).byteLength, 210)
})

t.test('InboundMessages returns credit for MORE pieces at once, batched by the window', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.equal(inbound.receive(seq(30), true), null)
  t.same(credit, [], '30 is under half the window')
  t.equal(inbound.receive(seq(30), true), null)
  t.same(credit, [60], 'half reached: the pieces\' credit goes back without waiting for consumed()')
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.same(credit, [60], 'the last piece\'s credit waits for consumed()')
})

t.test('InboundMessages lets a message larger than the window arrive in pieces', async t => {
  const { inbound, credit } = setup(10, 1000)
  for (let i = 0; i < 5; i++) {
    t.equal(inbound.receive(seq(10, i * 10), true), null, `piece ${i}`)
  }
  t.same(credit, [10, 10, 10, 10, 10], 'each piece exhausts the window, so its credit goes back at once')
  const got = inbound.receive(seq(10, 50), false)
  t.same([...(got as Uint8Array)], [...seq(60)])
})

t.test('InboundMessages returns credit for a whole message only on consumed()', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.ok(inbound.receive(seq(70), false) instanceof Uint8Array)
  t.same(credit, [])
  inbound.consumed()
  t.same(credit, [70])
})

t.test('InboundMessages returns the credit of whole messages oldest first, batched', async t => {
  const { inbound, credit } = setup(100, 1000)
  t.ok(inbound.receive(seq(40), false) instanceof Uint8Array)
  t.ok(inbound.receive(seq(20), false) instanceof Uint8Array)
  inbound.consumed()
  t.same(credit, [], '40 is under half the window')
  inbound.consumed()
  t.same(credit, [60])
})

t.test('InboundMessages holds back only the last piece of a message until consumed()', async t => {
  const { inbound, credit } = setup(10, 1000)
  t.equal(inbound.receive(seq(10), true), null)
  t.same(credit, [10])
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  t.same(credit, [10])
  t.ok(isError(inbound.receive(seq(1), false)), 'the window is full until consumed()')
})

t.test('InboundMessages returns the held credit of a consumed message when the window is full', async t => {
  const { inbound, credit } = setup(10, 1000)
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  inbound.consumed()
  t.same(credit, [10])
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array, 'the whole window is open again')
})

t.test('InboundMessages.consumed() with no message held does nothing', async t => {
  const { inbound, credit } = setup(10, 1000)
  inbound.consumed()
  inbound.consumed()
  t.same(credit, [])
  t.ok(inbound.receive(seq(10), false) instanceof Uint8Array)
  inbound.consumed()
  inbound.consumed()
  t.same(credit, [10], 'the extra consumed() returns no credit twice')
})

t.test('InboundMessages checks the window before the message size', async t => {
  const { inbound } = setup(10, 5)
  t.same(inbound.receive(seq(11), false), { code: 8, details: 'Flow control window exceeded: received 11 bytes with 10 allowed in flight' })
})
