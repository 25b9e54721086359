/**
 * The server side of the grpc-ws.v1 protocol, driven frame by frame with a
 * raw `ws` client: the SETTINGS greeting, a call done by hand, and how each
 * kind of bad input ends either the whole connection (with a close code) or
 * only the stream it concerns (with TRAILERS).
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { EventEmitter } from 'node:events'
import t, { type Test } from 'tap'
import { WebSocket } from 'ws'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { FrameDecoder, FrameFlags, FrameType, encodeFrame, type Frame } from '../../lib/protocol/frame.js'
import {
  NO_TIMEOUT, buildCall, buildEmpty, buildGoAway, buildHeaders, buildPing, buildSettings, buildTrailers,
  buildWindowUpdate, parseSettings, parseTrailers, type CallStatus, type Settings
} from '../../lib/protocol/payload.js'
import type { MetadataEntry } from '../../lib/protocol/metadata.js'
import { createTestService, testDefinition, type Request, type Response } from '../helpers/test-service.js'
import { Changes, bounded } from '../helpers/bounded.js'

const WAIT_MS = 5000
const UNARY = '/test.Test/Unary'

// --- servers -----------------------------------------------------------------

const events = new EventEmitter()
events.setMaxListeners(0)
const apps: FastifyInstance[] = []
const peers: Peer[] = []

async function startApp (options: Partial<FastifyGrpcWsOptions> = {}): Promise<string> {
  const app = Fastify()
  apps.push(app)
  await app.register(fastifyGrpcWs, {
    ...options,
    services: [{ definition: testDefinition, implementation: createTestService(events) }]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address !== 'object') throw new Error('no address')
  return `ws://127.0.0.1:${address.port}/grpc`
}

t.teardown(async () => {
  // Client sockets first, so calls left open are cancelled rather than
  // waited for by the graceful shutdown.
  await Promise.all(peers.map(async peer => { await peer.shut() }))
  for (const app of apps) await app.close()
})

const url = await startApp()

// --- a raw client that collects frames ----------------------------------------

interface CloseInfo { code: number, reason: string }


class Peer {
  /** Every frame received, in order, with payloads copied. */
  readonly frames: Frame[] = []
  /** For each frame of `frames`, which WebSocket message (counted from 0) it came in. */
  readonly messageOf: number[] = []
  private received = 0
  closeInfo: CloseInfo | undefined
  readonly problems: string[] = []
  private readonly decoder = new FrameDecoder(0x7fffffff)
  private readonly changes = new Changes()
  private pingCounter = 0

  constructor (readonly ws: WebSocket) {
    peers.push(this)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        this.problems.push('the server sent a text message')
      } else {
        try {
          for (const f of this.decoder.push(data)) {
            this.frames.push({ ...f, payload: f.payload.slice() })
            this.messageOf.push(this.received)
          }
          this.received++
          if (this.decoder.buffered > 0) this.problems.push('the server sent a frame spanning WebSocket messages')
        } catch (err) {
          this.problems.push(`undecodable bytes from the server: ${(err as Error).message}`)
        }
      }
      this.changes.changed()
    })
    ws.on('close', (code: number, reason: Buffer) => {
      this.closeInfo = { code, reason: reason.toString() }
      this.changes.changed()
    })
    ws.on('error', err => { this.problems.push(`socket error: ${err.message}`) })
  }

  static async open (target: string = url): Promise<Peer> {
    const peer = new Peer(new WebSocket(target, ['grpc-ws.v1']))
    await bounded('the socket to open', new Promise<void>((resolve, reject) => {
      peer.ws.once('open', () => { resolve() })
      peer.ws.once('error', reject)
    }))
    return peer
  }

  /** Sends the frames in one WebSocket message. */
  send (...frames: Uint8Array[]): void {
    this.ws.send(Buffer.concat(frames))
  }

  /** Resolves once `check` returns something other than undefined. */
  async until<T> (what: string, check: () => T | undefined, ms = WAIT_MS): Promise<T> {
    return await this.changes.until(what, check, ms)
  }


  streamFrames (streamId: number): Frame[] {
    return this.frames.filter(f => f.streamId === streamId)
  }

  async trailers (streamId: number): Promise<CallStatus> {
    const frame = await this.until(`TRAILERS on stream ${streamId}`,
      () => this.frames.find(f => f.type === FrameType.TRAILERS && f.streamId === streamId))
    return parseTrailers(frame.payload)
  }

  async closed (): Promise<CloseInfo> {
    return await this.until('the socket to close', () => this.closeInfo)
  }

  /**
   * A PING round trip: the server handles frames in order, so once the
   * answer is back, every frame sent before the PING has been handled.
   */
  async roundTrip (): Promise<void> {
    const data = new Uint8Array(8)
    new DataView(data.buffer).setUint32(4, ++this.pingCounter + 0x10000)
    this.send(buildPing(0, data))
    await this.until('the PING answer', () => this.frames.find(f =>
      f.type === FrameType.PING && (f.flags & FrameFlags.ACK) !== 0 && Buffer.from(f.payload).equals(Buffer.from(data))))
  }

  /** Closes the socket and waits (bounded) for it to be closed. */
  async shut (): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000)
    try {
      await this.until('the socket to close', () => this.closeInfo, 2000)
    } catch {
      this.ws.terminate()
    }
  }
}

// --- frame helpers -------------------------------------------------------------

function callFrame (streamId: number, options: { path?: string, timeoutMs?: number, metadata?: MetadataEntry[] } = {}): Uint8Array {
  return buildCall(streamId, {
    path: options.path ?? UNARY,
    timeoutMs: options.timeoutMs ?? NO_TIMEOUT,
    initialWindowSize: 262144,
    metadata: options.metadata ?? []
  })
}

function requestBytes (request: Request): Uint8Array {
  return testDefinition.Unary!.requestSerialize(request)
}

function messageFrame (streamId: number, bytes: Uint8Array, flags = 0): Uint8Array {
  return encodeFrame(FrameType.MESSAGE, flags, streamId, bytes)
}

function unaryFrames (streamId: number, request: Request, options: { timeoutMs?: number } = {}): Uint8Array[] {
  return [
    callFrame(streamId, options),
    messageFrame(streamId, requestBytes(request)),
    buildEmpty(FrameType.HALF_CLOSE, streamId)
  ]
}

function responseOf (frame: Frame): Response {
  return testDefinition.Unary!.responseDeserialize(Buffer.from(frame.payload)) as Response
}

function typesOn (peer: Peer, streamId: number): string[] {
  const names: Record<number, string> = {}
  for (const [name, code] of Object.entries(FrameType)) names[code] = name
  return peer.streamFrames(streamId).map(f => names[f.type] ?? `0x${f.type.toString(16)}`)
}

/** A whole unary echo call on `streamId`, asserted to succeed. */
async function echo (t: Test, peer: Peer, streamId: number, message: string): Promise<void> {
  peer.send(...unaryFrames(streamId, { mode: 'echo', message }))
  const status = await peer.trailers(streamId)
  t.same(status, { code: 0, details: 'OK', metadata: [] }, `stream ${streamId} ends with OK`)
  const messages = peer.streamFrames(streamId).filter(f => f.type === FrameType.MESSAGE)
  t.equal(messages.length, 1, `stream ${streamId} has one response message`)
  t.equal(responseOf(messages[0]!).message, message, `stream ${streamId} echoes its request`)
}

function assertOpen (t: Test, peer: Peer): void {
  t.equal(peer.closeInfo, undefined, 'the connection is still open')
  t.same(peer.problems, [], 'nothing unexpected arrived')
}

const defaultSettings: Settings = {
  maxConcurrentStreams: 100,
  initialWindowSize: 262144,
  maxFrameSize: 262144,
  maxMessageSize: 4194304,
  maxMetadataSize: 16384
}
const zeroSettings: Settings = { maxConcurrentStreams: 0, initialWindowSize: 0, maxFrameSize: 0, maxMessageSize: 0, maxMetadataSize: 0 }

async function settingsOf (peer: Peer): Promise<Settings> {
  const first = await peer.until('the first frame', () => peer.frames[0])
  if (first.type !== FrameType.SETTINGS) throw new Error(`the first frame is type ${first.type}, not SETTINGS`)
  return parseSettings(first.payload, zeroSettings)
}

let ids = 0
const nextId = (): string => `connection-test-${++ids}`

async function handlerEvent (id: string): Promise<any> {
  return await bounded(`handler event ${id}`, new Promise(resolve => events.once(id, resolve)))
}

// --- the greeting, a call by hand -----------------------------------------------

t.test('the first frame the server sends is SETTINGS with the defaults', async t => {
  const peer = await Peer.open()
  const first = await peer.until('the first frame', () => peer.frames[0])
  t.equal(first.type, FrameType.SETTINGS)
  t.equal(first.flags, 0)
  t.equal(first.streamId, 0)
  t.equal(first.payload.byteLength, 5 * 6, 'five settings of 6 bytes each')
  t.same(parseSettings(first.payload, zeroSettings), defaultSettings)
  t.same(Buffer.from(first.payload), Buffer.from(buildSettings(defaultSettings).subarray(10)), 'encoded in the documented order')
  await peer.shut()
})

t.test('a unary call done by hand gets HEADERS, MESSAGE, TRAILERS in that order', async t => {
  const peer = await Peer.open()
  peer.send(callFrame(1))
  peer.send(messageFrame(1, requestBytes({ mode: 'echo', message: 'hi' })))
  peer.send(buildEmpty(FrameType.HALF_CLOSE, 1))
  const status = await peer.trailers(1)
  t.same(typesOn(peer, 1), ['HEADERS', 'MESSAGE', 'TRAILERS'])
  const [headers, message] = peer.streamFrames(1)
  t.equal(headers!.flags, 0)
  t.equal(message!.flags, 0, 'the response is one MESSAGE frame without MORE')
  t.same(responseOf(message!), { message: 'hi', payload: Buffer.alloc(0) })
  t.equal(status.code, 0)
  t.equal(status.details, 'OK')
  t.same(status.metadata, [])
  t.equal(peer.frames[0]!.type, FrameType.SETTINGS, 'SETTINGS still came first')
  assertOpen(t, peer)
  await peer.shut()
})

t.test('a server stream\'s messages, each written from the last one\'s write callback, leave in one WebSocket message', async t => {
  // grpc-js writes a stream's next message only once the last one's callback ran: the writer runs
  // those callbacks into the batch (PROTOCOL.md §2), for 32 rounds, so 20 messages are one batch.
  const peer = await Peer.open()
  const path = '/test.Test/ServerStream'
  peer.send(
    buildCall(1, { path, timeoutMs: NO_TIMEOUT, initialWindowSize: 262144, metadata: [] }),
    messageFrame(1, testDefinition.ServerStream!.requestSerialize({ mode: 'count', count: 20, size: 10 })),
    buildEmpty(FrameType.HALF_CLOSE, 1)
  )
  const status = await peer.trailers(1)
  t.equal(status.code, 0)
  const messages = peer.frames.flatMap((f, i) => f.streamId === 1 && f.type === FrameType.MESSAGE ? [i] : [])
  t.equal(messages.length, 20, 'every message arrived')
  t.equal(new Set(messages.map(i => peer.messageOf[i])).size, 1, 'all 20 in one WebSocket message')
  assertOpen(t, peer)
  await peer.shut()
})

t.test('a request split into MESSAGE frames with MORE is reassembled', async t => {
  const peer = await Peer.open()
  const text = 'abcdefghij'.repeat(300)
  const bytes = requestBytes({ mode: 'echo', message: text })
  const a = bytes.subarray(0, 1)
  const b = bytes.subarray(1, 1200)
  const c = bytes.subarray(1200)
  peer.send(callFrame(1))
  peer.send(messageFrame(1, a, FrameFlags.MORE))
  peer.send(messageFrame(1, b, FrameFlags.MORE), messageFrame(1, c))
  peer.send(buildEmpty(FrameType.HALF_CLOSE, 1))
  const status = await peer.trailers(1)
  t.equal(status.code, 0)
  t.same(typesOn(peer, 1), ['HEADERS', 'MESSAGE', 'TRAILERS'])
  t.equal(responseOf(peer.streamFrames(1)[1]!).message, text)
  assertOpen(t, peer)
  await peer.shut()
})

t.test('an unknown method ends with UNIMPLEMENTED and no HEADERS', async t => {
  const peer = await Peer.open()
  const path = '/test.Test/NoSuchMethod'
  peer.send(callFrame(1, { path }), messageFrame(1, requestBytes({ mode: 'echo' })), buildEmpty(FrameType.HALF_CLOSE, 1))
  const status = await peer.trailers(1)
  t.same(status, { code: 12, details: `The server does not implement the method ${path}`, metadata: [] })
  await peer.roundTrip()
  t.same(typesOn(peer, 1), ['TRAILERS'], 'only TRAILERS: no HEADERS, no MESSAGE')
  // The frames that followed the refused CALL were dropped, not fatal.
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after unimplemented')
  await peer.shut()
})

t.test('PING is answered with PING ACK and the same 8 bytes', async t => {
  const peer = await Peer.open()
  const data = Uint8Array.from([1, 2, 3, 4, 250, 251, 252, 253])
  const ack = Uint8Array.from([9, 9, 9, 9, 9, 9, 9, 9])
  // A PING that is itself an ACK is not answered.
  peer.send(buildPing(FrameFlags.ACK, ack))
  peer.send(buildPing(0, data))
  const reply = await peer.until('a PING', () => peer.frames.find(f => f.type === FrameType.PING))
  t.equal(reply.flags, FrameFlags.ACK)
  t.equal(reply.streamId, 0)
  t.same([...reply.payload], [...data])
  await peer.roundTrip()
  const pings = peer.frames.filter(f => f.type === FrameType.PING)
  t.equal(pings.length, 2, 'one answer per PING without ACK, none for the ACK')
  t.notOk(pings.some(f => Buffer.from(f.payload).equals(Buffer.from(ack))), 'the ACK sent by the client was not echoed')
  assertOpen(t, peer)
  await peer.shut()
})

// --- connection-level protocol errors --------------------------------------------

interface ConnectionErrorCase {
  name: string
  /** Sends the offending input; may first do well-behaved things. */
  provoke: (peer: Peer) => Promise<void> | void
  code: number
  reason: string
  /** Further checks on the bad connection once it closed. */
  after?: (t: Test, peer: Peer) => void
}

const headerOnly = (type: number, flags: number, streamId: number, length: number): Uint8Array => {
  const b = new Uint8Array(10)
  b[0] = type
  b[1] = flags
  const v = new DataView(b.buffer)
  v.setUint32(2, streamId)
  v.setUint32(6, length)
  return b
}

const connectionErrors: ConnectionErrorCase[] = [
  {
    name: 'a text message',
    provoke: peer => { peer.ws.send('hello') },
    code: 1003,
    reason: 'text messages are not part of the protocol; send binary frames'
  },
  {
    name: 'a frame of unknown type 0x3f',
    provoke: peer => { peer.send(encodeFrame(0x3f, 0, 0, Uint8Array.from([1, 2, 3]))) },
    code: 1002,
    reason: 'unknown frame type 0x3f'
  },
  {
    name: 'MESSAGE on stream 0',
    provoke: peer => { peer.send(messageFrame(0, Uint8Array.from([1]))) },
    code: 1002,
    reason: 'MESSAGE frame on stream 0'
  },
  {
    name: 'a second CALL reusing stream id 1',
    provoke: async peer => {
      peer.send(...unaryFrames(1, { mode: 'echo', message: 'first' }))
      await peer.trailers(1)
      peer.send(...unaryFrames(1, { mode: 'echo', message: 'again' }))
    },
    code: 1002,
    reason: 'CALL on stream 1: stream ids must increase (last was 1)'
  },
  {
    name: 'CALL on stream 1 after stream 3',
    provoke: async peer => {
      peer.send(...unaryFrames(3, { mode: 'echo', message: 'first' }))
      await peer.trailers(3)
      peer.send(callFrame(1))
    },
    code: 1002,
    reason: 'CALL on stream 1: stream ids must increase (last was 3)'
  },
  {
    name: 'MESSAGE on a stream never opened',
    provoke: async peer => {
      peer.send(...unaryFrames(1, { mode: 'echo', message: 'first' }))
      await peer.trailers(1)
      peer.send(messageFrame(5, requestBytes({ mode: 'echo' })))
    },
    code: 1002,
    reason: 'MESSAGE frame on stream 5, which was never opened'
  },
  {
    name: 'a frame truncated at the end of the WebSocket message',
    provoke: async peer => {
      peer.send(callFrame(1))
      await peer.roundTrip()
      // The header announces 10 bytes; 3 follow.
      peer.send(Buffer.concat([headerOnly(FrameType.MESSAGE, 0, 1, 10), Uint8Array.from([1, 2, 3])]))
    },
    code: 1002,
    reason: 'a frame must not span WebSocket messages'
  },
  {
    name: 'a whole CALL followed by a truncated frame in one WebSocket message',
    provoke: peer => {
      peer.send(callFrame(1, { path: '/test.Test/NoSuchMethod' }), headerOnly(FrameType.HALF_CLOSE, 0, 1, 4))
    },
    code: 1002,
    reason: 'a frame must not span WebSocket messages',
    after: (t, peer) => {
      t.same(typesOn(peer, 1), [], 'the CALL before the leftover bytes was not acted on (no TRAILERS)')
    }
  },
  {
    name: 'a frame header announcing more than maxFrameSize',
    // maxFrameSize counts the 10-byte header: 262134 is the largest payload.
    provoke: peer => { peer.send(headerOnly(FrameType.MESSAGE, 0, 1, 262135)) },
    code: 1009,
    reason: 'frame payload of 262135 bytes exceeds the limit of 262134'
  },
  {
    name: 'a frame header announcing a 300000-byte payload',
    provoke: peer => { peer.send(headerOnly(FrameType.MESSAGE, 0, 1, 300000)) },
    code: 1009,
    reason: 'frame payload of 300000 bytes exceeds the limit of 262134'
  },
  {
    name: 'a WebSocket message one byte over maxFrameSize',
    provoke: async peer => {
      peer.send(callFrame(1))
      await peer.roundTrip()
      peer.send(messageFrame(1, new Uint8Array(262144 - 10 + 1)))
    },
    // The connection checks each message itself (ws' maxPayload is larger,
    // to leave room for the grpc-websockets clients' whole requests).
    code: 1009,
    reason: 'WebSocket message of 262145 bytes exceeds the limit of 262144'
  },
  {
    name: 'a CALL announcing a window of 2^31',
    provoke: peer => {
      peer.send(buildCall(1, { path: UNARY, timeoutMs: NO_TIMEOUT, initialWindowSize: 0x80000000, metadata: [] }))
    },
    code: 1002,
    reason: 'CALL window 2147483648 exceeds 2^31-1',
    after: (t, peer) => {
      t.same(typesOn(peer, 1), [], 'the call was not started nor refused (no TRAILERS)')
    }
  },
  {
    name: 'a CALL announcing a window of 2^32-1 for a method that does not exist',
    provoke: peer => {
      peer.send(buildCall(1, { path: '/test.Test/NoSuchMethod', timeoutMs: NO_TIMEOUT, initialWindowSize: 0xffffffff, metadata: [] }))
    },
    code: 1002,
    reason: 'CALL window 4294967295 exceeds 2^31-1',
    after: (t, peer) => {
      t.same(typesOn(peer, 1), [], 'checked before the method is looked up (no UNIMPLEMENTED)')
    }
  },
  {
    name: 'SETTINGS from the client',
    provoke: peer => { peer.send(buildSettings(defaultSettings)) },
    code: 1002,
    reason: 'SETTINGS frames are sent by servers only'
  },
  {
    name: 'HEADERS from the client',
    provoke: async peer => {
      peer.send(callFrame(1))
      await peer.roundTrip()
      peer.send(buildHeaders(1, []))
    },
    code: 1002,
    reason: 'HEADERS frames are sent by servers only'
  },
  {
    name: 'TRAILERS from the client',
    provoke: async peer => {
      peer.send(callFrame(1))
      await peer.roundTrip()
      peer.send(buildTrailers(1, { code: 0, details: 'OK', metadata: [] }))
    },
    code: 1002,
    reason: 'TRAILERS frames are sent by servers only'
  },
  {
    name: 'GOAWAY from the client',
    provoke: peer => { peer.send(buildGoAway({ lastStreamId: 0, reason: 'bye' })) },
    code: 1002,
    reason: 'GOAWAY frames are sent by servers only'
  },
  {
    name: 'PING with 4 bytes of payload',
    provoke: peer => { peer.send(encodeFrame(FrameType.PING, 0, 0, Uint8Array.from([1, 2, 3, 4]))) },
    code: 1002,
    reason: 'PING must be on stream 0 with 8 bytes of payload'
  },
  {
    name: 'WINDOW_UPDATE on an open stream with a 2-byte payload',
    provoke: async peer => {
      peer.send(callFrame(1))
      await peer.roundTrip()
      peer.send(encodeFrame(FrameType.WINDOW_UPDATE, 0, 1, Uint8Array.from([0, 1])))
    },
    code: 1002,
    reason: 'WINDOW_UPDATE payload must be 4 bytes'
  }
]

for (const c of connectionErrors) {
  t.test(`${c.name} closes the connection with ${c.code}; another connection keeps working`, async t => {
    const good = await Peer.open()
    const bad = await Peer.open()
    await echo(t, good, 1, 'before')
    await c.provoke(bad)
    const closed = await bad.closed()
    t.same(closed, { code: c.code, reason: c.reason })
    t.same(bad.problems, [], 'the bad connection saw nothing else go wrong')
    c.after?.(t, bad)
    assertOpen(t, good)
    await echo(t, good, 3, 'after')
    await good.shut()
  })
}

// --- stream-level errors ---------------------------------------------------------

/** A CALL frame written byte by byte, so the metadata is not checked on the way out. */
function rawCallFrame (streamId: number, path: string, entries: Array<[string, string]>): Uint8Array {
  const parts: number[] = []
  const u16 = (n: number): void => { parts.push(n >> 8, n & 0xff) }
  const u32 = (n: number): void => { parts.push((n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff) }
  const ascii = (s: string): void => { for (let i = 0; i < s.length; i++) parts.push(s.charCodeAt(i)) }
  u32(NO_TIMEOUT)
  u32(262144)
  u16(path.length)
  ascii(path)
  u16(entries.length)
  for (const [key, value] of entries) {
    u16(key.length)
    ascii(key)
    u32(value.length)
    ascii(value)
  }
  return encodeFrame(FrameType.CALL, 0, streamId, Uint8Array.from(parts))
}

t.test('a CALL with an illegal metadata key ends only that stream with INTERNAL', async t => {
  const peer = await Peer.open()
  peer.send(rawCallFrame(1, UNARY, [['x-good', 'yes'], ['X-Bad', 'value']]))
  const status = await peer.trailers(1)
  t.same(status, { code: 13, details: 'Metadata key "X-Bad" contains illegal characters', metadata: [] })
  t.same(typesOn(peer, 1), ['TRAILERS'])
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after a bad key')
  await peer.shut()
})

t.test('a CALL with a truncated payload ends only that stream with INTERNAL', async t => {
  const peer = await Peer.open()
  const whole = rawCallFrame(1, UNARY, [])
  // Keep the timeout, window, path length and 5 bytes of the path.
  const payload = whole.subarray(10, 10 + 4 + 4 + 2 + 5)
  peer.send(encodeFrame(FrameType.CALL, 0, 1, payload))
  const status = await peer.trailers(1)
  t.same(status, { code: 13, details: 'Malformed CALL frame: truncated path', metadata: [] })
  t.same(typesOn(peer, 1), ['TRAILERS'])
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after a truncated CALL')
  await peer.shut()
})

t.test('a CALL with metadata over maxMetadataSize ends only that stream with RESOURCE_EXHAUSTED', async t => {
  const peer = await Peer.open()
  const metadata: MetadataEntry[] = [['x-big', 'a'.repeat(20000)]]
  peer.send(callFrame(1, { metadata }))
  const status = await peer.trailers(1)
  // count 2 + key length 2 + 5 + value length 4 + 20000
  t.same(status, { code: 8, details: 'Request metadata of 20013 bytes exceeds the limit of 16384', metadata: [] })
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after too much metadata')
  await peer.shut()
})

t.test('MESSAGE after HALF_CLOSE ends the stream with INTERNAL', async t => {
  const peer = await Peer.open()
  const id = nextId()
  const cancelled = handlerEvent(id)
  peer.send(...unaryFrames(1, { mode: 'never', id }))
  await peer.roundTrip()
  peer.send(messageFrame(1, requestBytes({ mode: 'echo' })))
  const status = await peer.trailers(1)
  t.same(status, { code: 13, details: 'Protocol error: MESSAGE frame after HALF_CLOSE', metadata: [] })
  t.same(typesOn(peer, 1), ['TRAILERS'])
  t.equal((await cancelled).event, 'cancelled', 'the handler sees the stream end')
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after MESSAGE after HALF_CLOSE')
  await peer.shut()
})

t.test('a MESSAGE frame larger than the stream window ends the stream with RESOURCE_EXHAUSTED', async t => {
  const small = await startApp({ initialWindowSize: 1024 })
  const peer = await Peer.open(small)
  t.equal((await settingsOf(peer)).initialWindowSize, 1024, 'the server announces its window')
  peer.send(callFrame(1), messageFrame(1, new Uint8Array(2000)))
  const status = await peer.trailers(1)
  t.same(status, { code: 8, details: 'Flow control window exceeded: a MESSAGE frame of 2000 bytes counts 2005 with 1024 left of a 1024-byte window', metadata: [] })
  t.same(typesOn(peer, 1), ['TRAILERS'])
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after a window overrun')
  await peer.shut()
})

t.test('a request over maxReceiveMessageSize, sent in pieces, ends the stream with RESOURCE_EXHAUSTED', async t => {
  const limited = await startApp({ maxReceiveMessageSize: 1000 })
  const peer = await Peer.open(limited)
  t.equal((await settingsOf(peer)).maxMessageSize, 1000, 'the server announces its limit')
  peer.send(callFrame(1))
  peer.send(messageFrame(1, new Uint8Array(500), FrameFlags.MORE))
  peer.send(messageFrame(1, new Uint8Array(500), FrameFlags.MORE))
  peer.send(messageFrame(1, new Uint8Array(500)))
  const status = await peer.trailers(1)
  t.same(status, { code: 8, details: 'Received message larger than max (1500 vs 1000)', metadata: [] })
  t.same(typesOn(peer, 1), ['TRAILERS'])
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after a message too large')
  await peer.shut()
})

t.test('a call over maxConcurrentStreams is refused with RESOURCE_EXHAUSTED', async t => {
  const narrow = await startApp({ maxConcurrentStreams: 2 })
  const peer = await Peer.open(narrow)
  t.equal((await settingsOf(peer)).maxConcurrentStreams, 2, 'the server announces its limit')
  const first = nextId()
  const firstCancelled = handlerEvent(first)
  peer.send(...unaryFrames(1, { mode: 'never', id: first }))
  peer.send(...unaryFrames(3, { mode: 'never', id: nextId() }))
  peer.send(...unaryFrames(5, { mode: 'never', id: nextId() }))
  const status = await peer.trailers(5)
  t.same(status, { code: 8, details: 'Too many concurrent streams on this connection (limit 2)', metadata: [] })
  t.same(typesOn(peer, 5), ['TRAILERS'])
  await peer.roundTrip()
  t.same(typesOn(peer, 1), [], 'stream 1 is still open')
  t.same(typesOn(peer, 3), [], 'stream 3 is still open')
  // Ending one of the two makes room for another.
  peer.send(buildEmpty(FrameType.CANCEL, 1))
  t.equal((await firstCancelled).event, 'cancelled')
  assertOpen(t, peer)
  await echo(t, peer, 7, 'once there is room')
  await peer.shut()
})

// --- frames for ended streams, cancel, deadline ------------------------------------

t.test('frames for a stream that has ended are ignored', async t => {
  const peer = await Peer.open()
  await echo(t, peer, 1, 'first')
  peer.send(buildEmpty(FrameType.CANCEL, 1))
  peer.send(buildWindowUpdate(1, 1000))
  peer.send(messageFrame(1, requestBytes({ mode: 'echo' })))
  peer.send(buildEmpty(FrameType.HALF_CLOSE, 1))
  await peer.roundTrip()
  t.same(typesOn(peer, 1), ['HEADERS', 'MESSAGE', 'TRAILERS'], 'nothing more was sent on stream 1')
  assertOpen(t, peer)
  await echo(t, peer, 3, 'second')
  assertOpen(t, peer)
  await peer.shut()
})

t.test('CANCEL on an open call reaches the handler as cancelled', async t => {
  const peer = await Peer.open()
  const id = nextId()
  const cancelled = handlerEvent(id)
  peer.send(...unaryFrames(1, { mode: 'never', id }))
  // Once the PING is answered, the handler is running.
  await peer.roundTrip()
  peer.send(buildEmpty(FrameType.CANCEL, 1))
  const event = await cancelled
  t.equal(event.event, 'cancelled')
  t.equal(event.cancelled, true, 'call.cancelled is true in the handler')
  await peer.roundTrip()
  t.same(typesOn(peer, 1), [], 'nothing is sent for a cancelled stream')
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after a cancel')
  await peer.shut()
})

t.test('over socketHighWaterMark, calls stop writing until the socket drains, and every message then arrives', async t => {
  const highWaterMark = 64 * 1024
  const target = await startApp({ socketHighWaterMark: highWaterMark })
  const app = apps.at(-1)!
  const peer = await Peer.open(target)
  await settingsOf(peer)
  const id = nextId()
  const flood = handlerEvent(`${id}:flood`)
  const count = 400
  const size = 64 * 1024
  // A window larger than all of it: only the socket can hold the handler back.
  peer.ws.pause()
  peer.send(
    buildCall(1, { path: '/test.Test/ServerStream', timeoutMs: NO_TIMEOUT, initialWindowSize: 0x7fffffff, metadata: [] }),
    messageFrame(1, requestBytes({ mode: 'flood', id, count, size })),
    buildEmpty(FrameType.HALF_CLOSE, 1)
  )
  const [server] = app.websocketServer.clients
  let most = 0
  const started = Date.now()
  while (Date.now() - started < 500) {
    most = Math.max(most, server!.bufferedAmount)
    await new Promise(resolve => setTimeout(resolve, 5))
  }
  peer.ws.resume()
  const status = await peer.trailers(1)
  t.equal(status.code, 0)
  t.equal(peer.streamFrames(1).filter(f => f.type === FrameType.MESSAGE).length, count, `all ${count} messages arrived`)
  t.ok(most > 0, `the socket filled up (${most} bytes waited in ws)`)
  // The send that crosses the mark still goes: one batch (≤ maxFrameSize) beyond it at most.
  t.ok(most <= highWaterMark + defaultSettings.maxFrameSize, `ws held at most ${most} bytes, not the ${count * size} written`)
  t.ok((await flood).refusals > 0, 'write() returned false meanwhile')
  assertOpen(t, peer)
  await peer.shut()
})

t.test('a CALL with timeoutMs 50 ends with DEADLINE_EXCEEDED', async t => {
  const peer = await Peer.open()
  const id = nextId()
  const cancelled = handlerEvent(id)
  const started = Date.now()
  peer.send(...unaryFrames(1, { mode: 'never', id }, { timeoutMs: 50 }))
  const status = await peer.trailers(1)
  const elapsed = Date.now() - started
  t.same(status, { code: 4, details: 'Deadline exceeded', metadata: [] })
  t.ok(elapsed >= 45, `not before the deadline (${elapsed} ms)`)
  t.same(typesOn(peer, 1), ['TRAILERS'])
  t.equal((await cancelled).event, 'cancelled', 'the handler sees cancelled')
  assertOpen(t, peer)
  await echo(t, peer, 3, 'after a deadline')
  await peer.shut()
})

// --- the upgrade ---------------------------------------------------------------

async function upgradeStatus (protocols: string[] | undefined): Promise<{ statusCode: number | undefined, body: string }> {
  const ws = protocols === undefined ? new WebSocket(url) : new WebSocket(url, protocols)
  ws.on('error', () => {})
  try {
    return await bounded('the upgrade answer', new Promise((resolve, reject) => {
      ws.once('open', () => { reject(new Error('the upgrade succeeded')) })
      ws.once('unexpected-response', (req, res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { body += chunk })
        res.on('end', () => {
          resolve({ statusCode: res.statusCode, body })
          req.destroy()
        })
      })
    }))
  } finally {
    if (ws.readyState === WebSocket.OPEN) ws.close()
    else if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
  }
}

t.test('an upgrade without the grpc-ws.v1 subprotocol gets HTTP 400', async t => {
  const none = await upgradeStatus(undefined)
  t.equal(none.statusCode, 400)
  t.match(JSON.parse(none.body), { error: 'Bad Request', message: 'Expected the WebSocket subprotocol grpc-ws.v1' })
  const other = await upgradeStatus(['something-else'])
  t.equal(other.statusCode, 400, 'another subprotocol alone is refused too')
  // The same server still upgrades a client that offers it.
  const peer = await Peer.open()
  t.equal(peer.ws.protocol, 'grpc-ws.v1')
  await echo(t, peer, 1, 'upgraded')
  await peer.shut()
})
