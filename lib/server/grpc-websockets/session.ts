/**
 * One `grpc-websockets` socket on the server: one call. The first message is
 * the header block; the URL path names the method, so the call starts
 * there: limits, method lookup, deadline, then the handler runs through the
 * shared dispatcher (interceptors included). Later messages feed the call;
 * its status frame ends the socket with close 1000.
 */
import { status as GrpcStatus } from '@grpc/grpc-js'
import type { IncomingMessage } from 'node:http'
import type { WebSocket } from 'ws'
import type { AuthContext, ConnectionInfo } from '../../grpc-internals.js'
import { CloseCode } from '../../protocol/frame.js'
import { REQUEST_KEY, type Logger } from '../connection.js'
import { SendBacklog } from '../backlog.js'
import { Keepalive } from '../keepalive.js'
import { TurnBudget } from '../turn-budget.js'
import { authContextOf, connectionInfoOf, peerOf } from '../socket-info.js'
import { requestMetadata, type Dispatcher } from '../dispatch.js'
import { GrpcWebSocketsCall, type CallSocket } from './call.js'
import { CallError, encodeStatusFrame, parseClientMessage } from './frames.js'
import { HeaderBlockError, parseGrpcTimeout, parseHeaderBlock, requestEntries } from './header-block.js'

export interface SessionLimits {
  /** Largest request message; -1 for no limit. */
  maxReceiveMessageSize: number
  /** Largest response message; -1 for no limit. */
  maxSendMessageSize: number
  /** Largest header block, in bytes. */
  maxMetadataSize: number
  /** Bytes the socket may buffer before the handler's writes wait. */
  socketHighWaterMark: number
  /** Unsent bytes (ws pongs included) beyond which the socket is not read until it drains. */
  backlogLimit: number
  /** Cost of unread request messages (bytes + 5 a message) at which parsing and reading stop. */
  readHighWaterMark: number
  /** ms between WebSocket pings; 0 for none. */
  pingInterval: number
  /** ms a ping may wait for its pong before the peer counts as stalled. */
  pingTimeout: number
  /** ms a socket may wait for its header block before it is closed; 0 for never. */
  idleTimeout: number
}

export interface SessionContext {
  log: Logger
  /** Handed to handlers through their metadata (see fastifyRequestOf). */
  request: unknown
}

const OPEN = 1

export class GrpcWebSocketsSession implements CallSocket {
  readonly peer: string
  readonly host: string
  readonly authContext: AuthContext
  readonly connectionInfo: ConnectionInfo
  readonly maxSendMessageSize: number
  private readonly userAgent: string | undefined
  private readonly log: Logger
  private call: GrpcWebSocketsCall | null = null
  private started = false
  // Set once the status has gone out (or the socket is gone): nothing more
  // is sent or read.
  private finished = false
  private closed = false
  private closeCode: number = CloseCode.NORMAL
  // Keepalive and idle bookkeeping, driven by tick().
  private readonly openedAt: number
  private readonly keepalive: Keepalive
  // While the handler lags, the socket is not read: a pong may wait unread
  // behind request data, so a missing one proves nothing (see tick()).
  private readingPaused = false
  // Resolves goAway() once nothing more goes out.
  private onFinished: (() => void) | null = null
  // A peer that sends ws pings and never reads is not read either (ws answers each ping).
  private readonly backlog: SendBacklog
  // This turn's share of the event loop, and the messages that wait for a later turn.
  private readonly share = new TurnBudget()
  private deferred: DeferredMessages | null = null

  /**
   * @param path the method, `/package.Service/Method`, from the URL
   * @param onClosed runs once, when the socket has closed
   */
  constructor (
    private readonly socket: WebSocket,
    request: IncomingMessage,
    private readonly path: string,
    private readonly dispatcher: Dispatcher,
    private readonly limits: SessionLimits,
    private readonly context: SessionContext,
    private readonly onClosed: (session: GrpcWebSocketsSession) => void
  ) {
    const s = request.socket
    this.peer = peerOf(s)
    this.host = request.headers.host ?? ''
    this.userAgent = request.headers['user-agent']
    this.authContext = authContextOf(s)
    this.connectionInfo = connectionInfoOf(s)
    this.maxSendMessageSize = limits.maxSendMessageSize
    this.log = context.log.child({ peer: this.peer, method: path })
    socket.on('message', this.onMessage)
    socket.on('close', this.onClose)
    this.openedAt = Date.now()
    this.keepalive = new Keepalive(socket, this.openedAt)
    // Errors end in 'close'; without a listener ws would throw them.
    socket.on('error', () => {})
    this.backlog = new SendBacklog(socket, s, limits.backlogLimit, () => !this.readingPaused && this.deferred === null)
    socket.on('ping', () => { this.backlog.check() })
  }

  // --- CallSocket ------------------------------------------------------------

  send (frame: Uint8Array, done?: () => void): void {
    const socket = this.socket
    if (this.finished || socket.readyState !== OPEN) return
    // Each frame alone in its WebSocket message: improbable's parser stops
    // after a metadata frame and leaves the rest of that WebSocket message
    // unread until another message arrives.
    if (done === undefined) {
      socket.send(frame)
    } else if (socket.bufferedAmount + frame.byteLength > this.limits.socketHighWaterMark) {
      // Over the high-water mark: the callback runs once this frame, and so
      // everything before it, has been written out.
      socket.send(frame, () => { done() })
    } else {
      socket.send(frame)
      queueMicrotask(done)
    }
  }

  pauseReading (): void {
    this.readingPaused = true
    this.socket.pause()
  }

  resumeReading (): void {
    this.readingPaused = false
    this.keepalive.restart(Date.now())
    if (!this.backlog.readingPaused && this.deferred === null) this.socket.resume()
  }

  callEnded (call: GrpcWebSocketsCall): void {
    this.log.debug({ code: call.sentCode ?? 'cancelled' }, 'call ended')
    this.end()
  }

  // --- keepalive and idle ------------------------------------------------------

  /**
   * Called periodically by the route: pings (browsers answer by themselves,
   * and a ping keeps proxies from closing a quiet stream), cancels the call
   * of a peer that stopped answering, closes a socket that never sent its
   * header block.
   */
  tick (now: number): void {
    if (this.finished) return
    const { pingInterval, pingTimeout, idleTimeout } = this.limits
    if (this.readingPaused) {
      // No pong can be seen, so none is awaited (the stall clock starts
      // over on resume); the pings go on, and a peer that has gone makes
      // one of them fail, which closes the socket and cancels the call.
      this.keepalive.pingUnread(now, pingInterval)
      return
    }
    if (this.keepalive.stalled(now, pingTimeout)) {
      this.log.info({ pingTimeout }, 'peer stalled: no pong in time; closing the socket and cancelling its call')
      this.socket.terminate()
      this.onClose()
      return
    }
    if (idleTimeout > 0 && !this.started && now - this.openedAt >= idleTimeout) {
      this.log.debug({ idleTimeout }, 'no header block in time: socket closed')
      this.end('idle timeout')
      return
    }
    this.keepalive.maybePing(now, pingInterval)
  }

  // --- incoming --------------------------------------------------------------

  private readonly onMessage = (data: Buffer, isBinary: boolean): void => {
    if (this.finished) return
    // Read before the socket was paused (the rest of one socket read): after what waits.
    if (this.deferred !== null) {
      this.deferred.push(data, isBinary)
      return
    }
    this.handle(data, isBinary)
    if (!this.share.spend(1) && !this.finished) {
      this.deferred = new DeferredMessages()
      this.socket.pause()
      setImmediate(this.onLaterTurn)
    }
  }

  /** Messages left from an earlier turn, while this turn's share lasts. */
  private readonly onLaterTurn = (): void => {
    const d = this.deferred
    if (d === null || this.finished) return
    for (let m = d.shift(); m !== undefined; m = d.shift()) {
      this.handle(m[0], m[1])
      if (this.finished) return
      if (!this.share.spend(1)) {
        setImmediate(this.onLaterTurn)
        return
      }
    }
    this.deferred = null
    if (!this.readingPaused && !this.backlog.readingPaused) this.socket.resume()
  }

  private handle (data: Buffer, isBinary: boolean): void {
    try {
      if (!isBinary) {
        this.protocolError('Protocol error: text WebSocket message (the protocol is binary)', CloseCode.UNSUPPORTED_DATA)
        return
      }
      if (!this.started) {
        this.started = true
        this.start(data)
        return
      }
      let message
      try {
        message = parseClientMessage(data)
      } catch (err) {
        if (!(err instanceof CallError)) throw err
        this.protocolError(err.message, CloseCode.PROTOCOL_ERROR)
        return
      }
      if (message.kind === 'data') this.call!.onData(message.bytes)
      else this.call!.onEnd()
    } catch (err) {
      // Anything else is a bug of ours: end this call, never the process.
      this.protocolError(`Internal error: ${(err as Error).message}`, CloseCode.INTERNAL_ERROR)
    }
  }

  /** The header block: starts the call, or refuses it with a trailers-only response. */
  private start (block: Uint8Array): void {
    const max = this.limits.maxMetadataSize
    if (block.byteLength > max) {
      this.refuse(GrpcStatus.RESOURCE_EXHAUSTED, `Request metadata of ${block.byteLength} bytes exceeds the limit of ${max}`)
      return
    }
    let entries
    try {
      entries = requestEntries(parseHeaderBlock(block))
    } catch (err) {
      if (!(err instanceof HeaderBlockError)) throw err
      this.refuse(GrpcStatus.INTERNAL, err.message)
      return
    }
    const handler = this.dispatcher.lookup(this.path)
    if (handler === undefined) {
      this.refuse(GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${this.path}`)
      return
    }
    let deadline = Infinity
    const timeouts: string[] = []
    for (let i = 0; i < entries.length; i++) if (entries[i]![0] === 'grpc-timeout') timeouts.push(entries[i]![1] as string)
    if (timeouts.length > 0) {
      // Two values (two lines, or improbable's "a, b") are as invalid as a bad one.
      const value = timeouts.join(', ')
      const ms = parseGrpcTimeout(value)
      if (ms === null) {
        this.refuse(GrpcStatus.INTERNAL, `Invalid grpc-timeout value "${value}"`)
        return
      }
      deadline = Date.now() + ms
    }
    const metadata = requestMetadata(entries, this.userAgent)
    metadata.setOpaque(REQUEST_KEY, this.context.request)
    const call = new GrpcWebSocketsCall(this, handler, metadata, deadline, {
      maxReceiveMessageSize: this.limits.maxReceiveMessageSize,
      readHighWaterMark: this.limits.readHighWaterMark
    })
    this.call = call
    this.log.debug({}, 'call started')
    try {
      this.dispatcher.run(call, handler)
    } catch (err) {
      // grpc-js catches what handlers throw; an interceptor's throw lands here.
      call.sendStatus({ code: GrpcStatus.INTERNAL, details: `Server interceptor threw: ${(err as Error).message}` })
    }
  }

  // --- ending ------------------------------------------------------------------

  /** A call that never started: one trailers-only frame, then close 1000. */
  private refuse (code: number, details: string): void {
    this.log.debug({ code, details }, 'call refused')
    this.send(encodeStatusFrame({ code, details, metadata: [] }))
    this.end()
  }

  /** The client broke the protocol (or we failed): the call ends with INTERNAL, the socket with `closeCode`. */
  private protocolError (details: string, closeCode: number): void {
    this.log.info({ closeCode, reason: details }, 'protocol error: closing the socket')
    this.closeCode = closeCode
    if (this.call === null) {
      this.send(encodeStatusFrame({ code: GrpcStatus.INTERNAL, details, metadata: [] }))
      this.end()
    } else {
      this.call.fail(GrpcStatus.INTERNAL, details)
    }
  }

  /**
   * Nothing more goes out: closes the socket after what was sent. Never
   * terminate(): nice-grpc-web fails a call whose socket did not close
   * cleanly, trailers or not.
   */
  private end (reason = ''): void {
    if (this.finished) return
    this.finished = true
    if (this.socket.readyState === OPEN) this.socket.close(this.closeCode, reason)
    if (this.deferred !== null) {
      // Paused for a later turn: nothing more is handled, but the peer's close reply must be read.
      this.deferred = null
      this.socket.resume()
    }
    this.onFinished?.()
  }

  // --- shutdown (the server's ManagedConnection) ---------------------------------

  /**
   * One call per socket, so going away means: a socket that has not started
   * its call closes now (1001); a running call may finish.
   */
  goAway (reason: string): Promise<void> {
    if (!this.started) {
      this.closeCode = CloseCode.GOING_AWAY
      this.end(reason)
    }
    if (this.finished) return Promise.resolve()
    return new Promise(resolve => { this.onFinished = resolve })
  }

  /** Closes the socket now; a call still running sees 'cancelled'. */
  close (code: number, reason: string): void {
    if (this.closed) return
    // The code first: cancelling the call may end the socket itself.
    if (!this.finished) this.closeCode = code
    this.call?.abort()
    this.end(reason)
  }

  private readonly onClose = (): void => {
    if (this.closed) return
    this.closed = true
    this.finished = true
    this.onFinished?.()
    // Before the status went out, this is the client cancelling.
    this.call?.abort()
    this.onClosed(this)
  }
}

/** WebSocket messages read after a session's share of a turn ran out, in order. */
class DeferredMessages {
  private readonly items: Array<[Buffer, boolean]> = []
  private next = 0

  push (data: Buffer, isBinary: boolean): void { this.items.push([data, isBinary]) }

  shift (): [Buffer, boolean] | undefined {
    if (this.next === this.items.length) return undefined
    const item = this.items[this.next]!
    // Handled: its bytes need not be kept until the last one is.
    this.items[this.next++] = DONE
    return item
  }
}
const DONE: [Buffer, boolean] = [Buffer.alloc(0), true]
