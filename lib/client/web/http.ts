/**
 * The browser client's HTTP fallback, in `fastify-grpc-ws/client`'s
 * `createClient` (`fastify-grpc-ws/client/websocket` leaves it out).
 *
 * Calls use the WebSocket when it opens. When it cannot be opened (a
 * refused upgrade, an error or a close before SETTINGS), unary and
 * server-streaming calls go over gRPC-Web with fetch to the same path;
 * calls that send a second request message (client streaming, bidi) fail
 * with UNAVAILABLE saying they need a WebSocket and that it failed. The
 * WebSocket keeps being retried (with the client's backoff) and new calls
 * move back to it once it opens. A call waiting for the first attempt's
 * outcome is bound to whichever way that gives.
 *
 * Over HTTP: metadata both ways (`-bin` as base64 on the wire), the deadline
 * as `grpc-timeout`, AbortSignal and cancel (the fetch is aborted: the
 * handler sees 'cancelled'), trailers, and flow control (the body is read
 * only while the application has taken the messages read so far, so a slow
 * `for await` stops reading and the server's `write()` returns false).
 */
import { isBinaryKey, type MetadataEntry } from '../../protocol/metadata.js'
import type { CallStatus } from '../../protocol/payload.js'
import { Status } from '../../protocol/status.js'
import type { ClientSession, SessionState, StreamHandler, StreamStart } from '../session.js'
import { GrpcWsClient, invalidOption, type CallStream, type ClientOptions, type SessionLike, type Transport } from './client.js'

export type { Transport }

export interface HttpFallbackOptions extends ClientOptions {
  /** Which ways calls may take. Default `['websocket', 'http']`; `['websocket']` turns the fallback off. */
  transports?: Transport[]
  /** The fetch function. Default: the global one. */
  fetch?: typeof fetch
  /** ms between attempts to get the WebSocket back while on HTTP (the session's backoff applies too). Default 5000. */
  retryMs?: number
}

const textDecoder = new TextDecoder()
const toBase64 = (bytes: Uint8Array): string => { let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s) }
const fromBase64 = (text: string): Uint8Array => Uint8Array.from(atob(text), c => c.charCodeAt(0))
// Response headers of HTTP, not of the call.
const httpHeaders = new Set(['content-type', 'content-length', 'date', 'connection', 'keep-alive', 'transfer-encoding', 'vary', 'server'])

/** The browser client with the HTTP fallback: `fastify-grpc-ws/client`'s client, plus `transport`. */
export class HttpFallbackClient extends GrpcWsClient {
  private readonly router: Router | null = null

  constructor (url: string, options: HttpFallbackOptions = {}) {
    super(url, options)
    const transports = options.transports ?? ['websocket', 'http']
    if (!Array.isArray(transports) || !transports.includes('websocket') || transports.some(t => t !== 'websocket' && t !== 'http')) {
      throw invalidOption('transports', "expected ['websocket', 'http'] or ['websocket']")
    }
    if (transports.includes('http')) {
      this.router = new Router(this.session as ClientSession, this.url.replace(/^ws/i, 'http'), options)
      this.session = this.router
    }
  }

  /** The way new calls take: `'websocket'`, or `'http'` while the WebSocket cannot be opened. */
  get transport (): Transport {
    return this.router?.mode === 'http' ? 'http' : 'websocket'
  }
}

/** A client for the endpoint at `url` that falls back to gRPC-Web over HTTP where WebSockets cannot go. */
export function createClient (url: string, options?: HttpFallbackOptions): HttpFallbackClient {
  return new HttpFallbackClient(url, options)
}

/** In the client's session's place: binds each new call to the WebSocket session or to HTTP. */
class Router implements SessionLike {
  mode: Transport | 'unknown' = 'unknown'
  private cause = ''
  private readonly waiting = new Set<PendingStream>()
  private retry: ReturnType<typeof setInterval> | null = null
  private connecting = false

  constructor (private readonly session: ClientSession, private readonly baseUrl: string, private readonly options: HttpFallbackOptions) {
    session.onStateChange(state => {
      if (state === 'connecting') {
        this.connecting = true
      } else if (state === 'ready') {
        this.connecting = false
        this.settle('websocket')
      } else if (state === 'idle' && this.connecting) {
        // An attempt ended without the socket ever being ready.
        this.connecting = false
        const failure = session.failure
        if (failure?.code === Status.INTERNAL && this.mode === 'unknown') {
          // A protocol error of the server's (bad SETTINGS, a broken frame):
          // nothing blocks WebSockets here, so the calls fail as they would
          // without the fallback, and the next ones try the WebSocket again.
          for (const pending of this.waiting) pending.handler.onEnd(failure)
          this.waiting.clear()
        } else if (this.mode !== 'websocket') {
          this.cause = `the WebSocket could not be opened: ${failure?.details ?? `${session.about} closed before SETTINGS`}`
          this.settle('http')
        }
      } else if (state === 'closed') {
        // Calls still waiting for the first attempt fail as the closed session fails them.
        for (const pending of this.waiting) pending.bind(session.openStream(pending.start, pending.handler))
        this.waiting.clear()
        this.stopRetry()
      }
    })
  }

  get connectivityState (): SessionState { return this.session.connectivityState }
  onStateChange (listener: (state: SessionState) => void): () => void { return this.session.onStateChange(listener) }
  connect (): void { this.session.connect() }
  close (): void {
    this.stopRetry()
    this.session.close()
  }

  openStream (start: StreamStart, handler: StreamHandler): CallStream {
    // A closed client fails calls at once, on either way.
    if (this.mode === 'websocket' || this.session.connectivityState === 'closed') return this.session.openStream(start, handler)
    if (this.mode === 'http') return this.httpStream(start, handler)
    const pending = new PendingStream(start, handler)
    this.waiting.add(pending)
    this.session.connect()
    return pending
  }

  private settle (mode: Transport): void {
    this.mode = mode
    for (const pending of this.waiting) {
      pending.bind(mode === 'websocket' ? this.session.openStream(pending.start, pending.handler) : this.httpStream(pending.start, pending.handler))
    }
    this.waiting.clear()
    if (mode === 'http') this.startRetry()
    else this.stopRetry()
  }

  private httpStream (start: StreamStart, handler: StreamHandler): HttpStream {
    return new HttpStream(this.baseUrl, start, handler, this.cause, this.options.fetch ?? fetch, this.options.connectTimeoutMs ?? 20000)
  }

  private startRetry (): void {
    if (this.retry !== null) return
    this.retry = setInterval(() => { this.session.connect() }, this.options.retryMs ?? 5000)
    ;(this.retry as { unref?: () => void }).unref?.()
  }

  private stopRetry (): void {
    if (this.retry !== null) clearInterval(this.retry)
    this.retry = null
  }
}

/** A call opened before the first attempt's outcome: what it does is kept, then replayed on the real stream. */
class PendingStream implements CallStream {
  private target: CallStream | null = null
  private readonly queued: Array<(s: CallStream) => void> = []
  constructor (readonly start: StreamStart, readonly handler: StreamHandler) {}
  bind (target: CallStream): void {
    this.target = target
    for (const op of this.queued.splice(0)) op(target)
  }

  private run (op: (s: CallStream) => void): void {
    if (this.target !== null) op(this.target)
    else this.queued.push(op)
  }

  send (bytes: Uint8Array, done?: () => void): void { this.run(s => { s.send(bytes, done) }) }
  halfClose (): void { this.run(s => { s.halfClose() }) }
  cancel (): void { this.run(s => { s.cancel() }) }
  // Straight to the stream, no closure per response taken; unbound, no response has come to be taken.
  consumed (): void { this.target?.consumed() }
}

/** One call as a gRPC-Web request (binary) over fetch. */
class HttpStream implements CallStream {
  private readonly frames: Uint8Array[] = []
  private readonly abort = new AbortController()
  private over = false
  private unconsumed = 0
  private resume: (() => void) | null = null

  constructor (
    private readonly baseUrl: string, private readonly start: StreamStart, private readonly handler: StreamHandler,
    private readonly cause: string, private readonly fetcher: typeof fetch, private readonly connectTimeoutMs: number
  ) {}

  send (bytes: Uint8Array, done?: () => void): void {
    if (this.over) return
    if (this.frames.length > 0) {
      this.cancelWith(Status.UNAVAILABLE, `Client streaming and bidi need a WebSocket (unary and server-streaming calls go over HTTP meanwhile), and ${this.cause}`)
      return
    }
    const frame = new Uint8Array(5 + bytes.byteLength)
    new DataView(frame.buffer).setUint32(1, bytes.byteLength)
    frame.set(bytes, 5)
    this.frames.push(frame)
    if (done !== undefined) queueMicrotask(done)
  }

  halfClose (): void {
    if (this.over) return
    void this.run()
  }

  cancel (): void {
    this.over = true
    this.abort.abort()
    this.resume?.()
  }

  consumed (): void {
    this.unconsumed--
    if (this.unconsumed <= 0) this.resume?.()
  }

  private cancelWith (code: number, details: string): void {
    if (this.over) return
    this.over = true
    this.abort.abort()
    this.handler.onEnd({ code, details, metadata: [] })
  }

  private end (status: CallStatus): void {
    if (this.over) return
    this.over = true
    this.handler.onEnd(status)
  }

  private async run (): Promise<void> {
    // The method's path goes before the endpoint's query (`/grpc?token=…`), which HTTP calls carry too.
    const query = this.baseUrl.indexOf('?')
    const url = query < 0 ? this.baseUrl.replace(/\/$/, '') + this.start.path : this.baseUrl.slice(0, query).replace(/\/$/, '') + this.start.path + this.baseUrl.slice(query)
    const headers = new Headers({ 'content-type': 'application/grpc-web+proto', 'x-grpc-web': '1' })
    for (const [key, value] of this.start.metadata) headers.append(key, typeof value === 'string' ? value : toBase64(value))
    if (this.start.deadline !== Infinity) headers.set('grpc-timeout', `${Math.max(0, Math.ceil(this.start.deadline - Date.now()))}m`)
    let response: Response
    // As the WebSocket's connectTimeoutMs: a server that never answers must not hold a call with no deadline.
    let timedOut = false
    const timer = setTimeout(() => { timedOut = true; this.abort.abort() }, this.connectTimeoutMs)
    try {
      // Called unbound: a browser's fetch refuses any other `this` (Illegal invocation).
      const fetcher = this.fetcher
      response = await fetcher(url, { method: 'POST', headers, body: (this.frames[0] ?? new Uint8Array(5)).slice().buffer, signal: this.abort.signal })
    } catch (err) {
      const why = timedOut ? `no response within ${this.connectTimeoutMs} ms` : `failed (${(err as Error).message})`
      this.end({ code: Status.UNAVAILABLE, details: `HTTP request to ${url}: ${why}, and ${this.cause}`, metadata: [], cause: err })
      return
    } finally {
      clearTimeout(timer)
    }
    if (response.status !== 200 || response.body === null) {
      this.end({ code: httpStatusCode(response.status), details: `HTTP ${response.status} from ${url}, and ${this.cause}`, metadata: [] })
      return
    }
    const metadata: MetadataEntry[] = []
    response.headers.forEach((value, key) => { if (!httpHeaders.has(key)) pushEntries(metadata, key, value) })
    this.handler.onHeaders(metadata)
    const reader = response.body.getReader()
    let buffered = new Uint8Array(0)
    try {
      for (;;) {
        // Read on only once the application has taken what was read.
        while (this.unconsumed > 0 && !this.over) await new Promise<void>(resolve => { this.resume = resolve })
        if (this.over) { void reader.cancel(); return }
        const { done, value } = await reader.read()
        if (done) break
        const joined = new Uint8Array(buffered.byteLength + value.byteLength)
        joined.set(buffered)
        joined.set(value, buffered.byteLength)
        buffered = joined
        let at = 0
        while (buffered.byteLength - at >= 5) {
          const length = new DataView(buffered.buffer, buffered.byteOffset + at).getUint32(1)
          if (buffered.byteLength - at < 5 + length) break
          const flags = buffered[at]!
          const payload = buffered.slice(at + 5, at + 5 + length)
          at += 5 + length
          if ((flags & 0x80) !== 0) {
            this.end(trailersOf(payload))
            void reader.cancel()
            return
          }
          this.unconsumed++
          this.handler.onMessage(payload)
          if (this.over) return
        }
        buffered = buffered.slice(at)
      }
    } catch (err) {
      if (!this.over) this.end({ code: Status.UNAVAILABLE, details: `HTTP response failed: ${(err as Error).message}`, metadata: [] })
      return
    }
    this.end({ code: Status.INTERNAL, details: 'The HTTP response ended without a status', metadata: [] })
  }
}

/** An HTTP error as gRPC maps it (grpc's http-grpc-status-mapping.md): a hook's 401 is UNAUTHENTICATED. */
function httpStatusCode (status: number): number {
  switch (status) {
    case 400: return Status.INTERNAL
    case 401: return Status.UNAUTHENTICATED
    case 403: return Status.PERMISSION_DENIED
    case 404: return Status.UNIMPLEMENTED
    case 429: case 502: case 503: case 504: return Status.UNAVAILABLE
    default: return Status.UNKNOWN
  }
}

function pushEntries (out: MetadataEntry[], key: string, value: string): void {
  if (!isBinaryKey(key)) {
    out.push([key, value])
    return
  }
  for (const part of value.split(',')) out.push([key, fromBase64(part.trim())])
}

function trailersOf (block: Uint8Array): CallStatus {
  const status: CallStatus = { code: Status.UNKNOWN, details: '', metadata: [] }
  for (const line of textDecoder.decode(block).split('\r\n')) {
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    const key = line.slice(0, colon).trim().toLowerCase()
    const value = line.slice(colon + 1).trim()
    if (key === 'grpc-status') status.code = Number(value)
    else if (key === 'grpc-message') status.details = decodeURIComponent(value)
    else pushEntries(status.metadata, key, value)
  }
  return status
}

