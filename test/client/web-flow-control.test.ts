// Flow control in the browser client (run in Node over `ws`): credit goes
// back only as the application's loop takes messages, and the client sends
// no more than the server's credit allows.
import t from 'tap'
import { FRAME_CHARGE } from '../../lib/protocol/flow-control.js'
import { FrameType } from '../../lib/protocol/frame.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { buildHeaders, buildWindowUpdate, parseCall, parseWindowUpdate } from '../../lib/protocol/payload.js'
import { handlerEvent, nextId, startEnv } from '../helpers/parity.js'
import { sleep } from '../helpers/test-service.js'
import { startRawServer } from '../helpers/raw-server.js'
import { webClient } from '../helpers/web-client.js'

const env = await startEnv(t, { plugin: { initialWindowSize: 1024 } })
const { client, test } = webClient(env.wsUrl)
t.teardown(() => { client.close() })

t.test('Should hold the server writer back while the loop reads slowly: write() returns false', async t => {
  const id = nextId()
  const size = 64 * 1024
  const flooded = handlerEvent(env.events, `${id}:flood`)
  const stream = test.serverStream({ mode: 'flood', id, count: 200, size })
  const early = await Promise.race([flooded.then(() => 'finished'), sleep(300).then(() => 'held back')])
  t.equal(early, 'held back', 'a handler writing 12.5 MB cannot finish while nothing is read')
  let received = 0
  for await (const m of stream) {
    received += m.payload.length
    // A slow page: a pause every 20 messages.
    if (received % (20 * size) === 0) await sleep(5)
  }
  t.equal(received, 200 * size, 'every byte arrived')
  const { refusals } = await flooded
  t.ok(refusals > 0, `the handler's write() returned false ${refusals as number} times`)
})

t.test('Should grant credit only as the loop takes messages', async t => {
  const server = await startRawServer()
  t.teardown(async () => { await server.close() })
  const { client, test } = webClient(server.url, { initialWindowSize: 4096 })
  t.teardown(() => { client.close() })
  const stream = test.serverStream({ mode: 'count' })
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.CALL) === true)
  const conn = server.connections[0]!
  const call = conn.frames.find(f => f.type === FrameType.CALL)!
  t.equal(parseCall(call.payload).initialWindowSize, 4096, 'the client announced its window')
  // Four messages costing 1 KiB of window each (1019 bytes + FRAME_CHARGE): the whole window.
  const message = new Uint8Array([0x12, 0xf8, 0x07, ...new Uint8Array(1016)])
  conn.send(buildHeaders(1, []), ...Array.from({ length: 4 }, () => buildMessageFrame(1, 0, message)))
  await sleep(150)
  const updates = (): number[] => conn.frames.filter(f => f.type === FrameType.WINDOW_UPDATE).map(f => parseWindowUpdate(f.payload))
  t.same(updates(), [], 'no credit while the messages sit unread')
  const iterator = stream[Symbol.asyncIterator]()
  t.equal((await iterator.next()).value?.payload.length, 1016)
  await server.until(() => updates().length === 1)
  t.same(updates(), [1024], 'taking one message gave back its 1 KiB')
  stream.cancel()
})

t.test('Should send no more than the server\'s credit, and resume when it grants more', async t => {
  const server = await startRawServer({ initialWindowSize: 1024 })
  t.teardown(async () => { await server.close() })
  const { client, test } = webClient(server.url)
  t.teardown(() => { client.close() })
  const bidi = test.bidi()
  const payload = Buffer.alloc(500, 1)
  const sends = Array.from({ length: 6 }, () => bidi.send({ payload }))
  const settled: boolean[] = []
  sends.forEach((p, i) => { void p.then(() => { settled[i] = true }) })
  await server.until(() => server.connections[0]?.frames.some(f => f.type === FrameType.MESSAGE) === true)
  await sleep(100)
  const conn = server.connections[0]!
  const messages = (): typeof conn.frames => conn.frames.filter(f => f.type === FrameType.MESSAGE)
  const sent = (): number => messages().reduce((n, f) => n + f.payload.byteLength, 0)
  t.equal(messages().reduce((n, f) => n + f.payload.byteLength + FRAME_CHARGE, 0), 1024, 'exactly the window went out, each frame charged FRAME_CHARGE')
  t.same(settled.filter(Boolean).length, 2, 'send() resolved for the two messages that fit (503 bytes each)')
  conn.send(buildWindowUpdate(1, 4096))
  t.same(await Promise.all(sends), [true, true, true, true, true, true], 'the rest went out with the new credit')
  await server.until(() => sent() === 6 * 503)
  t.pass('and reached the server')
  bidi.cancel()
})

t.test('Should stream a client-streaming call far larger than the server\'s 1 KiB window', async t => {
  const payload = Buffer.alloc(4096, 7)
  const reply = await test.clientStream(Array.from({ length: 100 }, (_, i) => ({ message: String(i), payload })))
  t.equal(reply.payload.toString(), String(100 * 4096), 'every byte arrived; a client over its credit would get RESOURCE_EXHAUSTED')
})
