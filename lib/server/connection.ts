/**
 * One client WebSocket on the server: decodes frames, keeps the streams of
 * the calls multiplexed on it, enforces the connection's limits, answers
 * pings, and goes away gracefully.
 */
import { status as GrpcStatus } from '@grpc/grpc-js'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'
import type { AuthContext, ConnectionInfo } from '../grpc-internals.js'
import { readU32 } from '../protocol/bytes.js'
import { MAX_WINDOW } from '../protocol/flow-control.js'
import { CloseCode, FrameDecoder, FrameFlags, FrameType, FRAME_HEADER_SIZE, ProtocolError, frameTypeName, type Frame } from '../protocol/frame.js'
import { FrameWriter, type BatchSink } from '../protocol/frame-writer.js'
import { MetadataError } from '../protocol/metadata.js'
import type { FrameSink } from '../protocol/outbound.js'
import { StreamMap } from '../protocol/stream-map.js'
import {
  NO_TIMEOUT, PING_PAYLOAD_SIZE, buildGoAway, buildPing, buildSettings, buildTrailers, parseCall,
  parseWindowUpdate, type ParsedCall, type Settings
} from '../protocol/payload.js'
import { SendBacklog } from './backlog.js'
import { writeBinaryMessage } from './ws-message.js'
import { requestMetadata, type Dispatcher } from './dispatch.js'
import { Keepalive } from './keepalive.js'
import { RateBudget, type RateLimit } from './rate-budget.js'
import { TurnBudget, measuredCost } from './turn-budget.js'
import { authContextOf, connectionInfoOf, peerOf } from './socket-info.js'
import { WebSocketServerCall, type CallHost } from './server-call.js'

export interface ConnectionLimits extends Settings {
  maxSendMessageSize: number
  /** Bytes the socket may buffer before streams stop sending. */
  socketHighWaterMark: number
  /** ms between WebSocket pings; 0 for none. */
  pingInterval: number
  /** ms a ping may wait for its pong before the peer counts as stalled. */
  pingTimeout: number
  /** ms a connection may have no call open before it is closed; 0 for never. */
  idleTimeout: number
  /** Streams the client may cancel while open, plus CALLs refused; null for no limit. */
  resetRateLimit: RateLimit | null
  /** Stream-level protocol errors of the client; null for no limit. */
  errorRateLimit: RateLimit | null
}

/** The logger interface used (Fastify's, pino's). */
export interface Logger {
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  child (bindings: object): Logger
  isLevelEnabled?: (level: string) => boolean
}

/** Key of the opaque metadata entry that holds the upgrade's Fastify request. */
export const REQUEST_KEY = 'fastify-grpc-ws.request'

/** Who the connection belongs to, for logs and for handlers. */
export interface ConnectionContext {
  log: Logger
  /** Handed to handlers through their metadata (see fastifyRequestOf). */
  request: unknown
}

const OPEN = 1

// A CALL starts a handler: it costs at least this much of the turn's share.
const CALL_COST = 16
const EMPTY = new Uint8Array(0)
// WebSocket messages of up to maxFrameSize a peer may send after the server closed, before it is dropped.
const AFTER_CLOSE_FRAMES = 16
const AFTER_CLOSE_GRACE_MS = 1000

/** Frames read but not yet handled, when a connection's share of a turn ran out. */
interface Deferred {
  frames: Frame[]
  at: number
  /** WebSocket messages read after the share ran out (the rest of one socket read). */
  messages: Uint8Array[]
  next: number
}

/** What a connection reports its end to. */
export interface ConnectionOwner {
  untrack (conn: ServerConnection): void
}

// The socket's listeners are shared by all connections and find theirs on
// the socket: no closures per connection (idle connections are many).
const kConnection = Symbol('fastify-grpc-ws.connection')
type ConnectedSocket = WebSocket & { [kConnection]: ServerConnection }

function onSocketMessage (this: WebSocket, data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
  (this as ConnectedSocket)[kConnection].onMessage(data, isBinary)
}
function onSocketClose (this: WebSocket): void {
  (this as ConnectedSocket)[kConnection].onClose()
}
// ws has answered a ws-level ping with a pong, which no stream waits for.
function onSocketPing (this: WebSocket): void {
  (this as ConnectedSocket)[kConnection].backlog.check()
}
function ignore (): void {}

/** Hands a batch's parts to the connection, which writes them without joining them (see ws-message.ts). */
class ServerFrameWriter extends FrameWriter {
  constructor (private readonly connection: ServerConnection, maxMessageSize: number) {
    super(connection, maxMessageSize)
  }

  override sendBatch (): void {
    const parts = this.parts
    if (parts === null || !this.connection.direct) {
      super.sendBatch()
      return
    }
    const size = this.size
    this.empty()
    this.connection.sendParts(parts, size)
  }
}

export class ServerConnection implements CallHost, FrameSink, BatchSink {
  readonly host: string
  private readonly streams = new StreamMap<WebSocketServerCall>()
  private readonly decoder: FrameDecoder
  private readonly writer: FrameWriter
  private readonly netSocket: Socket
  private readonly userAgent: string | undefined
  private readonly request: unknown
  private readonly requestLog: Logger
  private readonly logCalls: boolean
  private peerName: string | null = null
  private lastStreamId = 0
  private congested = false
  private goingAway = false
  private closed = false
  private onIdle: (() => void) | null = null
  private onFlushed: (() => void) | null = null
  // Made on first use: most connections never log.
  private logger: Logger | null = null
  // Keepalive and idle bookkeeping, driven by tick().
  private readonly keepalive: Keepalive
  private idleSince: number
  /** @private Stops reading a peer that sends more than it reads. */
  readonly backlog: SendBacklog
  /** No extension negotiated: batches are written straight to the socket. */
  readonly direct: boolean
  // Made on first use: most connections never cancel nor err.
  private resets: RateBudget | null = null
  private errors: RateBudget | null = null
  // This turn's share of the event loop, and what waits for a later turn.
  private readonly share = new TurnBudget()
  private deferred: Deferred | null = null
  private onLaterTurn: (() => void) | null = null
  private bytesAfterClose = 0
  private dropping = false

  constructor (
    private readonly socket: WebSocket,
    request: IncomingMessage,
    private readonly dispatcher: Dispatcher,
    private readonly limits: ConnectionLimits,
    private readonly owner: ConnectionOwner,
    context: ConnectionContext
  ) {
    this.netSocket = request.socket
    this.host = request.headers.host ?? ''
    this.userAgent = request.headers['user-agent']
    this.request = context.request
    this.requestLog = context.log
    this.logCalls = context.log.isLevelEnabled?.('debug') ?? false
    this.decoder = new FrameDecoder(limits.maxFrameSize - FRAME_HEADER_SIZE)
    this.direct = socket.extensions === ''
    this.writer = new ServerFrameWriter(this, limits.maxFrameSize)
    this.idleSince = Date.now()
    this.keepalive = new Keepalive(socket, this.idleSince)
    // Streams stop at the high-water mark plus one batch: beyond that, the
    // backlog is what the peer made the server answer without reading it.
    this.backlog = new SendBacklog(socket, this.netSocket, limits.socketHighWaterMark + limits.maxFrameSize, () => this.deferred === null)
    ;(socket as ConnectedSocket)[kConnection] = this
    socket.on('message', onSocketMessage)
    socket.on('close', onSocketClose)
    socket.on('ping', onSocketPing)
    // Errors end in 'close'; ws throws those nobody listens to (@fastify/websocket listens).
    if (socket.listenerCount('error') === 0) socket.on('error', ignore)
    this.writer.write(settingsFrame(limits))
  }

  /** `address:port` of the client. */
  get peer (): string {
    this.peerName ??= peerOf(this.netSocket)
    return this.peerName
  }

  get maxSendMessageSize (): number { return this.limits.maxSendMessageSize }
  get maxReceiveMessageSize (): number { return this.limits.maxMessageSize }
  get initialWindowSize (): number { return this.limits.initialWindowSize }
  get maxFramePayload (): number { return this.limits.maxFrameSize - FRAME_HEADER_SIZE }
  get sink (): FrameSink { return this }

  /** The connection's child of the upgrade request's logger. */
  private get log (): Logger {
    this.logger ??= this.requestLog.child({ peer: this.peer })
    return this.logger
  }

  get authContext (): AuthContext {
    return authContextOf(this.netSocket)
  }

  get connectionInfo (): ConnectionInfo {
    return connectionInfoOf(this.netSocket)
  }

  /** Calls in flight. */
  get streamCount (): number { return this.streams.size }

  // --- FrameSink -----------------------------------------------------------

  write (frame: Uint8Array, done?: () => void): void {
    if (!this.closed) this.writer.write(frame, done)
  }

  writeMessage (streamId: number, flags: number, chunk: Uint8Array, done?: () => void): void {
    if (!this.closed) this.writer.writeMessage(streamId, flags, chunk, done)
  }

  canWrite (): boolean { return !this.congested }

  /** @private From the writer, on a socket with extensions: one batch of frames, joined, one WebSocket message. */
  sendBatch (message: Uint8Array): void {
    this.sendParts([message], message.byteLength)
  }

  /**
   * @private One batch of frames, one WebSocket message: its parts straight
   * to the socket, or (on a socket with extensions, where ws frames and may
   * compress it) the one joined part through ws.
   */
  sendParts (parts: Uint8Array[], size: number): void {
    const socket = this.socket
    if (socket.readyState !== OPEN) return
    const buffered = socket.bufferedAmount + size
    const congested = buffered > this.limits.socketHighWaterMark
    // The last send's callback runs once everything before it is flushed.
    const done = congested ? (this.onFlushed ??= () => { this.flushed() }) : undefined
    if (congested) this.congested = true
    if (this.direct) writeBinaryMessage(this.netSocket, parts, size, done)
    else socket.send(parts[0]!, done)
    if (congested) this.backlog.check(buffered)
  }

  private flushed (): void {
    if (!this.congested || this.socket.bufferedAmount > this.limits.socketHighWaterMark / 2) return
    this.congested = false
    for (const call of this.streams.values()) {
      call.resume()
      if (this.congested) return
    }
  }

  // --- CallHost ------------------------------------------------------------

  streamClosed (call: WebSocketServerCall): void {
    this.streams.delete(call.streamId)
    if (this.logCalls) {
      this.log.debug({ stream: call.streamId, method: call.path, code: call.sentCode ?? 'cancelled' }, 'call ended')
    }
    if (this.streams.size === 0) {
      this.idleSince = Date.now()
      if (this.onIdle !== null) this.onIdle()
    }
  }

  // --- keepalive and idle --------------------------------------------------

  /** Called periodically by the server: pings, detects a stalled peer, closes idle connections. */
  tick (now: number): void {
    if (this.closed) return
    const { pingInterval, pingTimeout, idleTimeout } = this.limits
    if (this.keepalive.stalled(now, pingTimeout)) {
      this.log.info({ pingTimeout }, 'peer stalled: no pong in time; closing the connection and cancelling its calls')
      this.socket.terminate()
      this.onClose()
      return
    }
    if (idleTimeout > 0 && this.streams.size === 0 && now - this.idleSince >= idleTimeout) {
      this.log.debug({ idleTimeout }, 'idle connection closed')
      this.close(CloseCode.NORMAL, 'idle timeout')
      return
    }
    this.keepalive.maybePing(now, pingInterval)
  }

  // --- incoming ------------------------------------------------------------

  /** @private */
  onMessage (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): void {
    if (this.closed) {
      this.readAfterClose((data as Buffer).byteLength)
      return
    }
    if (!isBinary) {
      this.fail(new ProtocolError('text messages are not part of the protocol; send binary frames', CloseCode.UNSUPPORTED_DATA))
      return
    }
    try {
      // ws enforces this too, unless the app registered @fastify/websocket
      // itself with a larger maxPayload.
      if ((data as Buffer).byteLength > this.limits.maxFrameSize) {
        throw new ProtocolError(`WebSocket message of ${(data as Buffer).byteLength} bytes exceeds the limit of ${this.limits.maxFrameSize}`, CloseCode.MESSAGE_TOO_BIG)
      }
      // A plain view: views of it (one per frame) then skip Buffer's species constructor.
      const buffer = data as Buffer
      const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength)
      // Read before the socket was paused (the rest of one socket read): after what waits.
      if (this.deferred !== null) {
        this.deferred.messages.push(bytes)
        return
      }
      const frames = this.decode(bytes)
      const stop = this.handleFrames(frames, 0)
      if (stop !== -1) this.defer(frames, stop)
    } catch (err) {
      this.internalError(err)
    }
  }

  /**
   * After the server closed, ws reads on for the peer's close reply (up to
   * its 30 s close timeout). A peer that goes on sending instead (it does
   * not read, or not yet, so has not seen the close) would have the server
   * read and unmask at line rate for that long. Past a bound the socket is
   * no longer read and is ended once the close frame is out (a peer that
   * reads still gets the close code), and dropped a second later.
   */
  private readAfterClose (bytes: number): void {
    this.bytesAfterClose += bytes
    if (this.bytesAfterClose <= AFTER_CLOSE_FRAMES * this.limits.maxFrameSize || this.dropping) return
    this.dropping = true
    this.socket.pause()
    this.netSocket.end()
    const socket = this.socket
    setTimeout(() => { socket.terminate() }, AFTER_CLOSE_GRACE_MS).unref()
  }

  private decode (bytes: Uint8Array): Frame[] {
    const frames = this.decoder.push(bytes)
    if (this.decoder.buffered > 0) throw new ProtocolError('a frame must not span WebSocket messages')
    return frames
  }

  /**
   * Handles frames from `from` while this turn's share lasts. Returns where
   * it stopped once the share is spent (the rest waits for a later turn), or
   * -1 when every frame was handled or the connection ended.
   */
  private handleFrames (frames: Frame[], from: number): number {
    // One clock read per timed frame: each is charged the time since the last read.
    let mark = -1
    for (let i = from; i < frames.length;) {
      // A frame may end the connection (a spent budget): the rest is dropped.
      if (this.closed) return -1
      const frame = frames[i++]!
      let cost = 1
      const type = frame.type
      if (type === FrameType.CALL || type === FrameType.CANCEL || type === FrameType.HALF_CLOSE) {
        // Frames that start, end or run a handler: charged by their measured time
        // (with that of the untimed frames before it, charged a unit each already).
        if (mark < 0) mark = performance.now()
        this.onFrame(frame)
        const now = performance.now()
        cost = measuredCost(now - mark, type === FrameType.CALL ? CALL_COST : 1)
        mark = now
      } else {
        this.onFrame(frame)
      }
      if (!this.share.spend(cost) && !this.closed) return i
    }
    return -1
  }

  /** The turn's share is spent: stop reading, go on in a later turn. */
  private defer (frames: Frame[], at: number): void {
    this.deferred = { frames, at, messages: [], next: 0 }
    this.socket.pause()
    setImmediate(this.onLaterTurn ??= () => { this.resumeDeferred() })
  }

  private resumeDeferred (): void {
    const d = this.deferred
    if (d === null || this.closed) return
    try {
      for (;;) {
        const stop = this.handleFrames(d.frames, d.at)
        if (this.closed) return
        if (stop !== -1) {
          d.at = stop
          setImmediate(this.onLaterTurn!)
          return
        }
        if (d.next === d.messages.length) break
        d.frames = this.decode(d.messages[d.next]!)
        d.messages[d.next++] = EMPTY
        d.at = 0
      }
      this.deferred = null
      if (!this.backlog.readingPaused) this.socket.resume()
    } catch (err) {
      this.internalError(err)
    }
  }

  private internalError (err: unknown): void {
    // Anything but a ProtocolError is a bug of ours: end this connection, never the process.
    this.fail(err instanceof ProtocolError ? err : new ProtocolError(`internal error: ${(err as Error).message}`, CloseCode.INTERNAL_ERROR))
  }

  private onFrame (frame: Frame): void {
    switch (frame.type) {
      case FrameType.CALL: this.onCall(frame); return
      case FrameType.MESSAGE: this.stream(frame)?.onMessageFrame(frame.payload, frame.flags); return
      case FrameType.HALF_CLOSE: this.stream(frame)?.onHalfCloseFrame(); return
      case FrameType.CANCEL: {
        const call = this.stream(frame)
        if (call === undefined) return
        call.abort()
        // A stream cancelled while the server still served it: rapid reset's currency.
        this.spendReset()
        return
      }
      case FrameType.WINDOW_UPDATE: {
        const call = this.stream(frame)
        if (call !== undefined) call.onWindowUpdate(this.u32(frame))
        return
      }
      case FrameType.PING:
        if (frame.streamId !== 0 || frame.payload.byteLength !== PING_PAYLOAD_SIZE) {
          throw new ProtocolError('PING must be on stream 0 with 8 bytes of payload')
        }
        if ((frame.flags & FrameFlags.ACK) === 0) this.write(buildPing(FrameFlags.ACK, frame.payload))
        return
      case FrameType.SETTINGS:
      case FrameType.HEADERS:
      case FrameType.TRAILERS:
      case FrameType.GOAWAY:
        throw new ProtocolError(`${frameTypeName(frame.type)} frames are sent by servers only`)
      default:
        throw new ProtocolError(`unknown frame type ${frameTypeName(frame.type)}`)
    }
  }

  private u32 (frame: Frame): number {
    if (frame.payload.byteLength !== 4) throw new ProtocolError(`${frameTypeName(frame.type)} payload must be 4 bytes`)
    return parseWindowUpdate(frame.payload)
  }

  /** The open stream a frame belongs to; undefined for one already closed. */
  private stream (frame: Frame): WebSocketServerCall | undefined {
    const id = frame.streamId
    if (id === 0) throw new ProtocolError(`${frameTypeName(frame.type)} frame on stream 0`)
    if (id > this.lastStreamId) throw new ProtocolError(`${frameTypeName(frame.type)} frame on stream ${id}, which was never opened`)
    // A stream that has ended may still see frames the client sent before
    // it learnt so: they are dropped.
    return this.streams.get(id)
  }

  private onCall (frame: Frame): void {
    const id = frame.streamId
    const payload = frame.payload
    // Before anything else of the call: a window no sender could keep (§7).
    if (payload.byteLength >= 8) {
      const window = readU32(payload, 4)
      if (window > MAX_WINDOW) throw new ProtocolError(`CALL window ${window} exceeds 2^31-1`)
    }
    if (id <= this.lastStreamId) {
      throw new ProtocolError(`CALL on stream ${id}: stream ids must increase (last was ${this.lastStreamId})`)
    }
    this.lastStreamId = id
    if (this.goingAway) {
      this.refuse(id, GrpcStatus.UNAVAILABLE, 'The server is going away; retry on a new connection')
      return
    }
    if (this.streams.size >= this.limits.maxConcurrentStreams) {
      this.refuse(id, GrpcStatus.RESOURCE_EXHAUSTED, `Too many concurrent streams on this connection (limit ${this.limits.maxConcurrentStreams})`)
      return
    }
    let start: ParsedCall
    try {
      start = parseCall(frame.payload, this.dispatcher.paths)
    } catch (err) {
      if (err instanceof MetadataError) {
        this.refuse(id, GrpcStatus.INTERNAL, err.message)
      } else {
        this.write(buildTrailers(id, { code: GrpcStatus.INTERNAL, details: `Malformed CALL frame: ${(err as Error).message}`, metadata: [] }))
        this.peerError()
      }
      return
    }
    if (start.metadataSize > this.limits.maxMetadataSize) {
      this.refuse(id, GrpcStatus.RESOURCE_EXHAUSTED, `Request metadata of ${start.metadataSize} bytes exceeds the limit of ${this.limits.maxMetadataSize}`)
      return
    }
    const handler = this.dispatcher.lookup(start.path)
    if (handler === undefined) {
      this.refuse(id, GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${start.path}`)
      return
    }
    this.dispatcher.paths.remember(start.pathBytes, start.path)
    const deadline = start.timeoutMs === NO_TIMEOUT ? Infinity : Date.now() + start.timeoutMs
    const metadata = requestMetadata(start.metadata, this.userAgent)
    metadata.setOpaque(REQUEST_KEY, this.request)
    const call = new WebSocketServerCall(this, id, handler, metadata, deadline, start.initialWindowSize)
    if (this.logCalls) this.log.debug({ stream: id, method: start.path }, 'call started')
    this.streams.set(id, call)
    try {
      this.dispatcher.run(call, handler)
    } catch (err) {
      // grpc-js catches what handlers throw; an interceptor's throw lands here.
      call.sendStatus({ code: GrpcStatus.INTERNAL, details: `Server interceptor threw: ${(err as Error).message}` })
    }
  }

  /** A trailers-only refusal; it costs the reset budget, as a cancelled stream does. */
  private refuse (streamId: number, code: number, details: string): void {
    this.write(buildTrailers(streamId, { code, details, metadata: [] }))
    this.spendReset()
  }

  // --- abuse budgets ---------------------------------------------------------

  private spendReset (): void {
    this.resets = this.spend(this.resets, this.limits.resetRateLimit, 'too many stream resets')
  }

  /**
   * A stream-level protocol error of the peer (the stream was reset with a
   * status): costs the error budget; once it is spent the connection ends.
   * Call it after the stream's reset, as it may close the connection.
   */
  peerError (): void {
    this.errors = this.spend(this.errors, this.limits.errorRateLimit, 'too many protocol errors')
  }

  /** Takes a token of `budget` (made on first use); a spent one ends the connection with `reason`. */
  private spend (budget: RateBudget | null, limit: RateLimit | null, reason: string): RateBudget | null {
    if (limit === null || this.closed) return budget
    const now = Date.now()
    budget ??= new RateBudget(limit, now)
    if (!budget.take(now)) this.abuse(reason)
    return budget
  }

  /** A spent budget: GOAWAY, what is batched, then close 1008; calls are cancelled. */
  private abuse (reason: string): void {
    if (this.closed) return
    this.log.info({ closeCode: CloseCode.POLICY_VIOLATION, reason }, 'abusive peer: GOAWAY and closing the connection')
    this.goingAway = true
    this.write(buildGoAway({ lastStreamId: this.lastStreamId, reason }))
    this.close(CloseCode.POLICY_VIOLATION, reason)
  }

  // --- ending ----------------------------------------------------------------

  /** Ends the connection on a protocol violation, with its close code. */
  private fail (err: ProtocolError): void {
    this.log.info({ closeCode: err.closeCode, reason: err.message }, 'protocol error: closing the connection')
    this.writer.flush()
    this.close(err.closeCode, err.message)
  }

  /**
   * Sends GOAWAY: calls already started finish, new ones are refused with
   * UNAVAILABLE. Resolves once no call is left.
   */
  goAway (reason: string): Promise<void> {
    if (!this.goingAway) {
      this.goingAway = true
      this.write(buildGoAway({ lastStreamId: this.lastStreamId, reason }))
    }
    if (this.streams.size === 0) return Promise.resolve()
    return new Promise(resolve => { this.onIdle = resolve })
  }

  /** Closes the socket; calls still running see 'cancelled'. */
  close (code: number, reason: string): void {
    if (this.socket.readyState === OPEN) {
      this.writer.flush()
      // Close reasons are limited to 123 bytes by the WebSocket protocol.
      this.socket.close(code, reason.length > 120 ? reason.slice(0, 120) : reason)
      // Paused for a later turn: the peer's close reply must still be read.
      if (this.deferred !== null) this.socket.resume()
    }
    this.onClose()
  }

  /** @private */
  onClose (): void {
    if (this.closed) return
    this.closed = true
    this.writer.discard()
    this.deferred = null
    for (const call of this.streams.values()) call.abort()
    this.streams.clear()
    if (this.onIdle !== null) this.onIdle()
    this.owner.untrack(this)
  }
}

// One SETTINGS frame for every connection of a server (same limits object).
const settingsFrames = new WeakMap<ConnectionLimits, Uint8Array>()
function settingsFrame (limits: ConnectionLimits): Uint8Array {
  let frame = settingsFrames.get(limits)
  if (frame === undefined) {
    frame = buildSettings(limits)
    settingsFrames.set(limits, frame)
  }
  return frame
}
