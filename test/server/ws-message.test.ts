/**
 * A batch written as one WebSocket message straight to the socket
 * (lib/server/ws-message.ts): the exact bytes on the wire for each header
 * length, large parts handed to the socket as they are, small ones joined,
 * and a real ws client reading each batch as one message, with ws's own
 * sends before and after.
 */
import type { AddressInfo, Socket } from 'node:net'
import { createConnection, createServer } from 'node:net'
import t, { type Test } from 'tap'
import { WebSocket, WebSocketServer } from 'ws'
import { writeBinaryMessage } from '../../lib/server/ws-message.js'

function filled (n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n)
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff
  return out
}

function concat (parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts)
}

// The header RFC 6455 §5.2 gives an unmasked final binary frame of `size` bytes.
function header (size: number): Buffer {
  if (size < 126) return Buffer.from([0x82, size])
  if (size < 0x10000) return Buffer.from([0x82, 126, size >> 8, size & 0xff])
  const out = Buffer.alloc(10)
  out[0] = 0x82
  out[1] = 127
  out.writeBigUInt64BE(BigInt(size), 2)
  return out
}

const cases: Array<[string, Uint8Array[]]> = [
  ['one small part, 1-byte length', [filled(5, 1)]],
  ['small parts up to 125 bytes', Array.from({ length: 25 }, (_, i) => filled(5, i))],
  ['126 bytes: 16-bit length', [filled(100, 2), filled(26, 3)]],
  ['65,535 bytes: 16-bit length', [filled(9, 4), filled(65_526, 5)]],
  ['65,536 bytes: 64-bit length', [filled(9, 6), filled(65_527, 7)]],
  ['large and small parts mixed', [filled(9, 8), filled(70_000, 9), filled(9, 10), filled(30, 11), filled(5000, 12)]],
  ['a large part first', [filled(4096, 13), filled(9, 14)]]
]

async function socketPair (t: Test): Promise<{ server: Socket, received: () => Buffer, until: (n: number) => Promise<void> }> {
  let accepted!: (s: Socket) => void
  const acceptedSocket = new Promise<Socket>(resolve => { accepted = resolve })
  const listener = createServer(s => { accepted(s) })
  await new Promise<void>(resolve => listener.listen(0, '127.0.0.1', resolve))
  const client = createConnection((listener.address() as AddressInfo).port, '127.0.0.1')
  const chunks: Buffer[] = []
  let size = 0
  let wake: (() => void) | null = null
  client.on('data', (chunk: Buffer) => { chunks.push(chunk); size += chunk.byteLength; wake?.() })
  const server = await acceptedSocket
  t.teardown(() => { client.destroy(); server.destroy(); listener.close() })
  return {
    server,
    received: () => Buffer.concat(chunks),
    until: async n => { while (size < n) await new Promise<void>(resolve => { wake = resolve }) }
  }
}

t.test('Should write the RFC 6455 header and then the parts, in order, for every length form', async t => {
  for (const [name, parts] of cases) {
    const pair = await socketPair(t)
    const size = parts.reduce((n, p) => n + p.byteLength, 0)
    writeBinaryMessage(pair.server, parts, size)
    const expected = Buffer.concat([header(size), concat(parts)])
    await pair.until(expected.byteLength)
    t.ok(pair.received().equals(expected), `${name}: ${size} bytes, header of ${header(size).byteLength}`)
  }
})

t.test('Should hand large parts to the socket as they are and join each run of small ones with the header', async t => {
  const pair = await socketPair(t)
  const writes: Uint8Array[] = []
  const write = pair.server.write.bind(pair.server)
  pair.server.write = ((chunk: Uint8Array, cb?: () => void) => { writes.push(chunk); return write(chunk, cb) }) as typeof pair.server.write
  const parts = cases.find(([name]) => name === 'large and small parts mixed')![1]
  const size = parts.reduce((n, p) => n + p.byteLength, 0)
  let done = 0
  writeBinaryMessage(pair.server, parts, size, () => { done++ })
  t.equal(writes.length, 4, 'header with the first small part, a large part, two small parts joined, a large part')
  t.equal(writes[1], parts[1], 'the 70,000-byte part is written, not copied')
  t.equal(writes[3], parts[4], 'the 5,000-byte part is written, not copied')
  t.ok(Buffer.from(writes[0]!).equals(Buffer.concat([header(size), parts[0]!])), 'the header leads the first small part')
  t.ok(Buffer.from(writes[2]!).equals(concat([parts[2]!, parts[3]!])), 'adjacent small parts are one write')
  await pair.until(10 + size)
  t.equal(done, 1, 'the callback runs once, after the last write')
})

t.test('Should be read by a ws client as one message per batch, between ws\'s own sends and pings', async t => {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' })
  await new Promise(resolve => wss.once('listening', resolve))
  t.teardown(() => { for (const c of wss.clients) c.terminate(); wss.close() })
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`)
  const messages: Buffer[] = []
  let wake: (() => void) | null = null
  client.on('message', (data: Buffer) => { messages.push(data); wake?.() })
  const [server, request] = await new Promise<[WebSocket, { socket: Socket }]>(resolve => wss.once('connection', (ws, req) => { resolve([ws, req]) }))
  await new Promise(resolve => client.once('open', resolve))
  t.equal(server.extensions, '', 'no extension: the case these writes are for')
  const expected: Buffer[] = []
  server.send(Buffer.from('before'))
  expected.push(Buffer.from('before'))
  for (const [, parts] of cases) {
    writeBinaryMessage(request.socket, parts, parts.reduce((n, p) => n + p.byteLength, 0))
    expected.push(concat(parts))
    server.ping()
  }
  server.send(Buffer.from('after'))
  expected.push(Buffer.from('after'))
  while (messages.length < expected.length) await new Promise<void>(resolve => { wake = resolve })
  t.equal(messages.length, expected.length, 'one message per batch')
  t.ok(messages.every((m, i) => m.equals(expected[i]!)), 'each message is its batch, in order, and ws\'s own messages around them are intact')
})
