/**
 * The client side of the protocol: one WebSocket shared by every call,
 * opened when the first call needs it, streams multiplexed on it under the
 * server's limits and windows, pings that find a dead socket, and spaced
 * reconnection attempts. Browser-safe (no Node built-ins); the grpc-js
 * channel and the browser client are thin layers over it.
 */
import { writeU32 } from '../protocol/bytes.js'
import { SendWindow } from '../protocol/flow-control.js'
import { FrameFlags, FrameType, FRAME_HEADER_SIZE, ProtocolError, SUBPROTOCOL, frameTypeName, readFrames, type Frame } from '../protocol/frame.js'
import { FrameWriter, type BatchSink } from '../protocol/frame-writer.js'
import { InboundMessages } from '../protocol/inbound.js'
import type { MetadataEntry } from '../protocol/metadata.js'
import { OutboundMessages, type FrameSink } from '../protocol/outbound.js'
import {
  NO_TIMEOUT, PING_PAYLOAD_SIZE, buildCall, buildEmpty, buildPing, buildWindowUpdate, parseGoAway, parseHeaders,
  parseSettings, parseTrailers, parseWindowUpdate, validateSettings, type CallStatus, type Settings
} from '../protocol/payload.js'
import { Status } from '../protocol/status.js'
import { StreamMap } from '../protocol/stream-map.js'
import { Backoff, type BackoffOptions } from './backoff.js'

/**
 * An event-handler slot. Method syntax makes its parameter bivariant, so a
 * class whose handlers take a richer event (ws's MessageEvent and
 * CloseEvent, the DOM's) fits without a cast.
 */
export type EventHandler<E> = { bivarianceHack (event: E): void }['bivarianceHack']

/** The subset of the WHATWG WebSocket this client uses (browsers, `ws`, undici). */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  readonly protocol: string
  send (data: Uint8Array): void
  close (code?: number, reason?: string): void
  onopen: ((event: any) => void) | null
  onmessage: EventHandler<{ data: unknown }> | null
  onclose: EventHandler<{ code: number, reason: string }> | null
  onerror: ((event: any) => void) | null
}
export type WebSocketConstructor = new (url: string, protocols: string | string[]) => WebSocketLike

export type SessionState = 'idle' | 'connecting' | 'ready' | 'closed'

export interface SessionOptions {
  /** The WebSocket class: the global one in browsers, `ws` in Node. */
  WebSocket: WebSocketConstructor
  /** Receive window for each call's responses, in bytes. Default 256 KiB. */
  initialWindowSize?: number
  /** Largest response message accepted, in bytes; -1 for no limit. Default 4 MiB, as grpc-js. */
  maxReceiveMessageSize?: number
  /** Gives up on a socket that has not opened (and sent SETTINGS) in this time, ms; also the longest a call waits for a retry after a failed attempt. Default 20000. */
  connectTimeoutMs?: number
  /** ms between PINGs on an open connection; 0 for none. Default 0. */
  keepaliveIntervalMs?: number
  /** ms a PING may go unanswered, with nothing else received either, before the socket counts as dead. Default 20000. */
  keepaliveTimeoutMs?: number
  /** Spacing of connection attempts after failed ones (and after a GOAWAY before SETTINGS). Default: retry at once (`initialMs: 0`). */
  backoff?: BackoffOptions
  /** Further subprotocol values offered after grpc-ws.v1, e.g. `bearer.<token>` for the upgrade's authentication. */
  protocols?: string[]
  /**
   * Where each CALL frame's `size` bytes come from, zero-filled and not
   * written by anyone else; default a new Uint8Array. (The grpc-js channel
   * cuts them from a shared block.)
   */
  alloc?: (size: number) => Uint8Array
}

type ResolvedSessionOptions = Required<Omit<SessionOptions, 'WebSocket' | 'backoff' | 'protocols' | 'alloc'>> & SessionOptions

/**
 * Calls issued in one turn (say, 64 of them as 64 others complete) leave in
 * batches of this many frames rather than all at once at the end of the
 * turn: the server works on the first while this side writes the next.
 * Measured with 64 unary calls of 100 B in flight: about twice the calls/s
 * of one batch per turn (which left each side idle while the other worked),
 * and the same as one batch per turn for 64 KiB calls.
 */
const MAX_BATCH_FRAMES = 32

/** Until the server's SETTINGS arrive, nothing is sent; these are its defaults. */
const assumedSettings: Settings = {
  maxConcurrentStreams: 100,
  initialWindowSize: 65536,
  maxFrameSize: 65536,
  maxMessageSize: 4 * 1024 * 1024,
  maxMetadataSize: 16 * 1024
}

/** What a stream reports to the call above it. */
export interface StreamHandler {
  onHeaders (metadata: MetadataEntry[]): void
  /** One whole response message; call {@link ClientStream.consumed} once the application has taken it. */
  onMessage (message: Uint8Array): void
  /** The stream is over: the server's trailers, or a failure of the connection. Called once. */
  onEnd (status: CallStatus): void
}

export interface StreamStart {
  path: string
  metadata: readonly MetadataEntry[]
  /** Absolute deadline in ms since the epoch, or Infinity. */
  deadline: number
}

/** The largest stream id (a u32); a connection whose ids are spent takes no new call (RFC 9113 §5.1.1). */
const MAX_STREAM_ID = 0xffffffff

/**
 * Application code runs inside a handler (a grpc-js 'data' listener runs
 * within onMessage): what it throws is the application's, not the server's.
 * It surfaces as an uncaught exception, as it would over grpc-js's HTTP/2
 * (a browser reports it to window 'error'), and the connection carries on.
 */
function rethrowLater (err: unknown): void {
  queueMicrotask(() => { throw err })
}

function isolated (callback: (() => void) | undefined): (() => void) | undefined {
  return callback === undefined
    ? undefined
    : () => {
        try { callback() } catch (err) { rethrowLater(err) }
      }
}

/** One call's stream. Usable at once; it waits for the socket by itself. */
export class ClientStream {
  id = 0
  private conn: ClientConnection | null = null
  private outbound: OutboundMessages | null = null
  private inbound: InboundMessages | null = null
  // What was sent before the stream had a connection, replayed in order once it has one.
  private pending: Array<() => void> | null = null
  private ended = false
  private headersSeen = false
  /** @private While the stream waits out a backoff: it fails if that takes connectTimeoutMs. */
  startTimer: ReturnType<typeof setTimeout> | undefined

  constructor (readonly start: StreamStart, private readonly handler: StreamHandler) {}

  send (bytes: Uint8Array, done?: () => void): void {
    if (this.ended) {
      if (done !== undefined) queueMicrotask(done)
      return
    }
    if (this.outbound === null) (this.pending ??= []).push(() => { this.send(bytes, done) })
    else this.outbound.send(bytes, done)
  }

  halfClose (): void {
    if (this.ended) return
    if (this.outbound === null) (this.pending ??= []).push(() => { this.halfClose() })
    else this.outbound.finish(buildEmpty(FrameType.HALF_CLOSE, this.id))
  }

  /** Tells the server to stop; the handler hears nothing more. */
  cancel (): void {
    if (this.ended) return
    this.ended = true
    this.pending = null
    this.outbound?.clear()
    if (this.startTimer !== undefined) clearTimeout(this.startTimer)
    this.conn?.cancelStream(this)
  }

  /** The application took a message: the server may send more. */
  consumed (): void {
    // An ended stream has no sender left to give credit to.
    if (!this.ended) this.inbound?.consumed()
  }

  get isEnded (): boolean { return this.ended }

  // --- from the connection ---------------------------------------------------

  /** @private The connection has given the stream an id and sent its CALL. */
  activate (conn: ClientConnection, id: number, settings: Settings, windowSize: number, maxReceiveMessageSize: number): void {
    this.conn = conn
    this.id = id
    this.outbound = new OutboundMessages(id, new SendWindow(settings.initialWindowSize), conn)
    this.inbound = new InboundMessages(windowSize, maxReceiveMessageSize, increment => {
      conn.write(buildWindowUpdate(id, increment))
    })
    const pending = this.pending
    if (pending === null) return
    this.pending = null
    for (const op of pending) op()
  }

  /** @private */
  onFrame (frame: Frame): void {
    if (this.ended) return
    switch (frame.type) {
      case FrameType.HEADERS:
        // One response has one header block (grpc-js delivers one): later
        // ones are dropped unread, so a flood of them costs the call nothing.
        if (this.headersSeen) return
        this.headersSeen = true
        this.notify(this.handler.onHeaders, parseHeaders(frame.payload))
        return
      case FrameType.MESSAGE: {
        const result = this.inbound!.receive(frame.payload, (frame.flags & FrameFlags.MORE) !== 0)
        if (result === null) return
        if (result instanceof Uint8Array) {
          this.notify(this.handler.onMessage, result)
        } else {
          this.conn!.cancelStream(this)
          this.end(localStatus(result.code, result.details))
        }
        return
      }
      case FrameType.TRAILERS:
        this.end(parseTrailers(frame.payload))
        return
      case FrameType.WINDOW_UPDATE:
        if (!this.outbound!.grant(parseWindowUpdate(frame.payload))) {
          throw new ProtocolError(`invalid WINDOW_UPDATE on stream ${this.id}`)
        }
        return
      default:
        throw new ProtocolError(`${frameTypeName(frame.type)} frames are sent by clients only`)
    }
  }

  /** @private Ends the stream with a status, from the server or from here. */
  end (status: CallStatus): void {
    if (this.ended) return
    this.ended = true
    this.pending = null
    this.outbound?.clear()
    this.conn?.streamEnded(this)
    this.notify(this.handler.onEnd, status)
  }

  /** Calls one of the handler's methods: what application code throws there is not the connection's. */
  private notify<E> (method: (this: StreamHandler, event: E) => void, event: E): void {
    try { method.call(this.handler, event) } catch (err) { rethrowLater(err) }
  }
}

/** A status made on this side: no trailers. */
function localStatus (code: number, details: string, cause?: unknown): CallStatus {
  return { code, details, metadata: [], cause }
}

function unavailable (details: string): CallStatus {
  return localStatus(Status.UNAVAILABLE, details)
}

/** One WebSocket and the streams on it. */
class ClientConnection implements FrameSink, BatchSink {
  settings: Settings = assumedSettings
  private ready = false
  private draining = false
  private closed = false
  private nextId = ClientSession.firstStreamId
  private readonly active = new StreamMap<ClientStream>()
  private readonly waiting: ClientStream[] = []
  private readonly socket: WebSocketLike
  private readonly writer = new FrameWriter(this, assumedSettings.maxFrameSize, MAX_BATCH_FRAMES)
  private connectTimer: ReturnType<typeof setTimeout> | null
  // Keepalive: one timer, either waiting to ping or waiting for the answer.
  private pingTimer: ReturnType<typeof setTimeout> | null = null
  private pingData: Uint8Array | null = null
  private pingCount = 0
  private received = 0
  // An error event before SETTINGS that said nothing: the runtime (a browser) hides the reason.
  private blind = false

  constructor (private readonly session: ClientSession, private readonly options: ResolvedSessionOptions) {
    const socket = this.socket = new options.WebSocket(session.url, [SUBPROTOCOL, ...(options.protocols ?? [])])
    // Browsers default to Blob; `ws` defaults to Buffer, a Uint8Array already.
    if (socket.binaryType === 'blob') socket.binaryType = 'arraybuffer'
    socket.onmessage = event => this.onMessage(event.data)
    socket.onclose = ({ code, reason }) => {
      this.fail(`${this.ready ? 'Connection closed' : `${session.about} closed before it was ready`} (code ${code}${reason && `: ${reason}`})${
        // An error event with nothing in it came first: a browser, which hides why.
        this.blind ? '; browsers hide the HTTP status of a refused upgrade' : ''}`)
    }
    socket.onerror = ({ error }: { error?: unknown }) => {
      // ws (and undici) say why: "connect ECONNREFUSED 127.0.0.1:3999", a
      // TLS error, "Unexpected server response: 404" for a refused upgrade,
      // a parse error from an HTTP/2-only port.
      if (error instanceof Error) this.fail(`${session.about} failed: ${error.message.trim()}`, false, error)
      else this.blind = !this.ready
    }
    this.connectTimer = setTimeout(() => {
      this.fail(`${session.about} not ready after ${options.connectTimeoutMs} ms`)
    }, options.connectTimeoutMs)
  }

  get maxFramePayload (): number { return this.settings.maxFrameSize - FRAME_HEADER_SIZE }
  get streamCount (): number { return this.active.size + this.waiting.length }

  write (frame: Uint8Array, done?: () => void): void {
    if (!this.closed) this.writer.write(frame, isolated(done))
  }

  writeMessage (streamId: number, flags: number, chunk: Uint8Array, done?: () => void): void {
    // A write callback is the application's (a grpc-js write's): one that
    // throws must not stop the writer's other callbacks or its batch.
    if (!this.closed) this.writer.writeMessage(streamId, flags, chunk, isolated(done))
  }

  canWrite (): boolean { return true }

  /** @private From the writer. */
  sendBatch (message: Uint8Array): void {
    if (this.socket.readyState === 1) this.socket.send(message)
  }

  add (stream: ClientStream): void {
    this.waiting.push(stream)
    if (this.ready) this.startWaiting()
  }

  private startWaiting (): void {
    while (this.waiting.length > 0 && this.active.size < this.settings.maxConcurrentStreams && this.nextId <= MAX_STREAM_ID) {
      const stream = this.waiting.shift()!
      if (stream.isEnded) continue
      const id = this.nextId
      this.nextId += 2
      const { path, metadata, deadline } = stream.start
      let timeoutMs = NO_TIMEOUT
      if (deadline !== Infinity) timeoutMs = Math.min(NO_TIMEOUT - 1, Math.max(0, Math.ceil(deadline - Date.now())))
      const call = buildCall(id, { path, timeoutMs, initialWindowSize: this.options.initialWindowSize, metadata }, this.options.alloc)
      if (call.byteLength > this.settings.maxFrameSize) {
        // Sent, it would close the whole connection (1009): fail this call alone.
        stream.end(localStatus(Status.RESOURCE_EXHAUSTED, `Request metadata of ${call.byteLength} bytes does not fit the server's frame limit of ${this.settings.maxFrameSize}`))
        continue
      }
      this.active.set(id, stream)
      this.writer.write(call)
      stream.activate(this, id, this.settings, this.options.initialWindowSize, this.options.maxReceiveMessageSize)
    }
    // Ids spent: later calls go to a new connection, calls in flight finish here.
    if (this.nextId > MAX_STREAM_ID) this.drain()
  }

  cancelStream (stream: ClientStream): void {
    const index = this.waiting.indexOf(stream)
    if (index !== -1) {
      this.waiting.splice(index, 1)
      return
    }
    if (this.active.delete(stream.id)) {
      this.writer.write(buildEmpty(FrameType.CANCEL, stream.id))
      this.afterStreamEnd()
    }
  }

  streamEnded (stream: ClientStream): void {
    if (this.active.delete(stream.id)) this.afterStreamEnd()
  }

  private afterStreamEnd (): void {
    if (this.ready) this.startWaiting()
    if (this.draining && this.streamCount === 0) this.close(1000, 'drained')
  }

  private onMessage (data: unknown): void {
    if (this.closed) return
    this.received++
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data instanceof Uint8Array ? data : null
    try {
      if (bytes === null) throw new ProtocolError('text messages are not part of the protocol', 1003)
      // Each message holds whole frames (PROTOCOL.md): they are read from it
      // alone, and what is left over once they are handled is an error.
      const frames: Frame[] = []
      const end = readFrames(bytes, 0, 0x7fffffff, frames)
      for (const frame of frames) this.onFrame(frame)
      if (end < bytes.byteLength) throw new ProtocolError('a frame must not span WebSocket messages')
    } catch (err) {
      // A malformed payload (truncated, bad metadata) is a protocol error too.
      const closeCode = err instanceof ProtocolError ? err.closeCode : 1002
      const message = err instanceof Error ? err.message : String(err)
      this.close(closeCode, message, Status.INTERNAL, `Protocol error from the server: ${message}`)
    }
  }

  private onFrame (frame: Frame): void {
    switch (frame.type) {
      case FrameType.SETTINGS: {
        const settings = parseSettings(frame.payload, assumedSettings)
        validateSettings(settings)
        this.settings = settings
        this.writer.maxMessageSize = settings.maxFrameSize
        if (!this.ready) {
          this.ready = true
          if (this.connectTimer !== null) clearTimeout(this.connectTimer)
          this.connectTimer = null
          this.schedulePing()
          this.session.connectionReady(this)
        }
        this.startWaiting()
        return
      }
      case FrameType.PING:
        if (frame.payload.byteLength !== PING_PAYLOAD_SIZE) return
        if ((frame.flags & FrameFlags.ACK) === 0) this.write(buildPing(FrameFlags.ACK, frame.payload))
        // (Pings are rare: their 8 bytes compare as text.)
        else if (this.pingData !== null && String(frame.payload) === String(this.pingData)) this.pingAnswered()
        return
      case FrameType.GOAWAY: {
        const { lastStreamId, reason } = parseGoAway(frame.payload)
        const details = `The server is going away: ${reason}`
        if (!this.ready) {
          // No SETTINGS yet: a failed attempt (backoff applies), and the
          // calls waiting for it fail rather than move to the next one.
          this.close(1000, 'going away', Status.UNAVAILABLE, details)
          return
        }
        for (const stream of this.active.values()) {
          if (stream.id > lastStreamId) stream.end(unavailable(details))
        }
        this.drain()
        return
      }
      default: {
        if (frame.streamId === 0) throw new ProtocolError(`${frameTypeName(frame.type)} frame on stream 0`)
        // Frames for a stream already ended here (cancelled) are dropped.
        this.active.get(frame.streamId)?.onFrame(frame)
      }
    }
  }

  /** Takes no new stream: those waiting go to the session's next connection; the rest finish here. */
  private drain (): void {
    if (this.draining) return
    this.draining = true
    this.session.connectionDraining(this)
    for (const stream of this.waiting.splice(0)) this.session.requeue(stream)
    if (this.streamCount === 0) this.close(1000, 'drained')
  }

  // --- keepalive ---------------------------------------------------------------

  private schedulePing (): void {
    if (this.options.keepaliveIntervalMs <= 0 || this.closed) return
    this.pingTimer = setTimeout(this.sendPing, this.options.keepaliveIntervalMs)
  }

  private readonly sendPing = (): void => {
    const receivedBefore = this.received
    const data = new Uint8Array(PING_PAYLOAD_SIZE)
    writeU32(data, 4, ++this.pingCount)
    this.pingData = data
    this.write(buildPing(0, data))
    this.pingTimer = setTimeout(() => {
      this.pingData = null
      // Anything received since the PING proves the socket alive: the answer
      // may be queued behind a large batch of messages.
      if (this.received > receivedBefore) this.schedulePing()
      else this.fail(`Connection lost: no answer to PING within ${this.options.keepaliveTimeoutMs} ms`, true)
    }, this.options.keepaliveTimeoutMs)
  }

  private pingAnswered (): void {
    this.pingData = null
    if (this.pingTimer !== null) clearTimeout(this.pingTimer)
    this.schedulePing()
  }

  /** Closes the socket; calls still on it end with `failCode`. */
  close (code: number, reason: string, failCode: number = Status.UNAVAILABLE, details = `Connection closed by the client: ${reason}`): void {
    if (this.closed) return
    this.writer.flush()
    this.shutDown(() => { this.socket.close(code, reason.slice(0, 120)) }, details, failCode)
  }

  /** The socket failed, closed or died: every call on it ends with UNAVAILABLE. */
  private fail (details: string, dead = false, cause?: unknown): void {
    if (this.closed) return
    this.shutDown(() => {
      // A dead socket will never finish a closing handshake: `ws` can drop it at once.
      const terminate = (this.socket as { terminate?: () => void }).terminate
      dead && typeof terminate === 'function' ? terminate.call(this.socket) : this.socket.close()
    }, details, Status.UNAVAILABLE, cause)
  }

  /** Marks the connection closed, closes the socket with `closeSocket`, and ends every call on it with `code`. */
  private shutDown (closeSocket: () => void, details: string, code: number, cause?: unknown): void {
    this.closed = true
    try { closeSocket() } catch {}
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    if (this.pingTimer !== null) clearTimeout(this.pingTimer)
    this.connectTimer = this.pingTimer = null
    this.writer.discard()
    const socket = this.socket
    socket.onmessage = null
    socket.onopen = null
    // Not null: `ws` reports closing a socket that is still connecting as an
    // 'error', which with no listener would be thrown.
    socket.onerror = () => {}
    socket.onclose = null
    if (!this.ready) this.session.failure = localStatus(code, details, cause)
    this.session.connectionClosed(this, this.ready)
    const streams = [...this.active.values(), ...this.waiting]
    this.active.clear()
    this.waiting.length = 0
    for (const stream of streams) stream.end(localStatus(code, details, cause))
  }
}

/** A client's one connection at a time, opened on demand. */
export class ClientSession {
  /**
   * @internal The first stream id of each connection (odd). Tests start
   * near the last id (MAX_STREAM_ID) to see a connection run out of ids.
   */
  static firstStreamId = 1

  private conn: ClientConnection | null = null
  private readonly draining = new Set<ClientConnection>()
  private state: SessionState = 'idle'
  private readonly listeners = new Set<(state: SessionState) => void>()
  private readonly options: ResolvedSessionOptions
  private readonly backoff: Backoff
  // After a failed attempt, no new socket before retryAt; calls wait in `queued`.
  private retryAt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private readonly queued: ClientStream[] = []

  /** @private How the last socket that never became ready ended (the HTTP fallback reads it). */
  declare failure: CallStatus | undefined
  /** @private How failures name this endpoint. */
  readonly about: string

  constructor (readonly url: string, options: SessionOptions) {
    this.about = `Connection to ${url}`
    this.options = {
      initialWindowSize: 256 * 1024,
      maxReceiveMessageSize: 4 * 1024 * 1024,
      connectTimeoutMs: 20000,
      keepaliveIntervalMs: 0,
      keepaliveTimeoutMs: 20000,
      ...options
    }
    this.backoff = new Backoff(options.backoff)
  }

  get connectivityState (): SessionState { return this.state }

  onStateChange (listener: (state: SessionState) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  private setState (state: SessionState): void {
    if (this.state === state) return
    this.state = state
    for (const listener of [...this.listeners]) {
      // An application's listener (watchConnectivityState, onStateChange) may throw; the socket is not at fault.
      try { listener(state) } catch (err) { rethrowLater(err) }
    }
  }

  /** Opens a socket now if none is open or opening (after the backoff delay, if one is due). */
  connect (): void {
    if (this.state === 'closed' || this.conn !== null || this.retryTimer !== null) return
    const wait = this.retryAt - Date.now()
    if (wait > 0) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null
        this.open()
      }, wait)
      this.setState('connecting')
      return
    }
    this.open()
  }

  private open (): void {
    const conn = new ClientConnection(this, this.options)
    this.conn = conn
    this.setState('connecting')
    for (const stream of this.queued.splice(0)) {
      clearTimeout(stream.startTimer)
      stream.startTimer = undefined
      if (!stream.isEnded) conn.add(stream)
    }
  }

  openStream (start: StreamStart, handler: StreamHandler): ClientStream {
    const stream = new ClientStream(start, handler)
    if (this.state === 'closed') {
      queueMicrotask(() => stream.end(unavailable('The channel is closed')))
      return stream
    }
    this.requeue(stream)
    return stream
  }

  /** @private */
  requeue (stream: ClientStream): void {
    if (this.state === 'closed') {
      stream.end(unavailable('The channel is closed'))
      return
    }
    this.connect()
    if (this.conn !== null) {
      this.conn.add(stream)
      return
    }
    this.queued.push(stream)
    // A long backoff must not hold a call past connectTimeoutMs.
    stream.startTimer ??= setTimeout(() => {
      stream.end(unavailable(`${this.about} not ready after ${this.options.connectTimeoutMs} ms`))
    }, this.options.connectTimeoutMs)
  }

  /** Closes the socket; calls in flight end with UNAVAILABLE. */
  close (): void {
    if (this.state === 'closed') return
    this.setState('closed')
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
    const conns = [this.conn, ...this.draining]
    this.conn = null
    this.draining.clear()
    for (const conn of conns) conn?.close(1000, 'client closed')
    for (const stream of this.queued.splice(0)) {
      clearTimeout(stream.startTimer)
      stream.end(unavailable('Connection closed by the client: client closed'))
    }
  }

  /** @private */
  connectionReady (conn: ClientConnection): void {
    if (conn !== this.conn) return
    this.backoff.reset()
    this.retryAt = 0
    this.setState('ready')
  }

  /** @private */
  connectionDraining (conn: ClientConnection): void {
    if (conn !== this.conn) return
    this.conn = null
    this.draining.add(conn)
    if (this.state !== 'closed') this.setState('idle')
  }

  /**
   * @private A socket that never became ready (closed, failed, timed out,
   * or sent GOAWAY before SETTINGS) counts as a failed attempt and delays
   * the next one; after one that was ready, the next opens at once.
   */
  connectionClosed (conn: ClientConnection, wasReady: boolean): void {
    this.draining.delete(conn)
    if (conn !== this.conn) return
    this.conn = null
    if (!wasReady) this.retryAt = Date.now() + this.backoff.fail()
    if (this.state !== 'closed') this.setState('idle')
  }
}
