/**
 * One call of the browser client over a stream of the session: request
 * metadata, deadline and AbortSignal in; headers, messages, trailers and the
 * status out. Every way a call can end goes through `finish`, once, so no
 * promise and no iteration is ever left hanging.
 */
import { MessageQueue } from '../../protocol/byte-queue.js'
import { whenDeadlinePasses } from '../../protocol/deadline.js'
import type { MetadataEntry } from '../../protocol/metadata.js'
import type { CallStatus } from '../../protocol/payload.js'
import { Status } from '../../protocol/status.js'
import type { StreamHandler } from '../session.js'
import type { CallStream, StreamOpener } from './client.js'
import { GrpcError } from './errors.js'
import { Metadata } from './metadata.js'
import type { BidiCall, CallOptions, MethodDescriptor, UnaryCall } from './types.js'

export class WebCall<I, O> implements StreamHandler, BidiCall<I, O> {
  readonly headers: Promise<Metadata>
  readonly trailers: Promise<Metadata>
  private resolveHeaders!: (metadata: Metadata) => void
  private resolveTrailers!: (metadata: Metadata) => void
  // Fields are left undefined until set: nothing to initialize per call, and a smaller bundle.
  private stream?: CallStream
  private over?: boolean
  private halfClosed?: boolean
  private error?: GrpcError
  /** Unary responses: the one message. */
  private response?: { value: O }
  /**
   * Streamed responses not yet taken by the iteration, as bytes: each is
   * deserialized when taken, so what a server can make this call hold is
   * bounded by the window, not by a count of objects. Made by the first.
   */
  private queue?: MessageQueue
  /** Settles the promise a next() returned while nothing was queued: the next response does. */
  private pull?: (result: IteratorResult<O> | Promise<IteratorResult<O>>) => void
  // Made on first use: a unary call awaits no send, and settles one promise.
  private sends?: Set<(sent: boolean) => void>
  private settle?: () => void
  private stopDeadline?: () => void
  private readonly signal: AbortSignal | undefined
  private onAbort: (() => void) | undefined

  constructor (session: StreamOpener, private readonly method: MethodDescriptor<I, O>, private readonly streamed: boolean, options: CallOptions = {}) {
    this.headers = new Promise(resolve => { this.resolveHeaders = resolve })
    this.trailers = new Promise(resolve => { this.resolveTrailers = resolve })
    this.signal = options.signal
    let metadata: MetadataEntry[]
    try {
      metadata = Metadata.entriesOf(new Metadata(options.metadata))
    } catch (err) {
      // No stream yet: cancelling is only ending the call here.
      this.cancelWith(Status.INTERNAL, (err as Error).message, err)
      return
    }
    const signal = this.signal
    // (A listener only where there is a signal: no closure per call otherwise.)
    const onAbort = signal && (this.onAbort = () => { this.cancelWith(Status.CANCELLED, 'Cancelled on client', signal.reason) })
    if (signal?.aborted === true) {
      onAbort!()
      return
    }
    const deadline = deadlineOf(options)
    if (deadline <= Date.now()) {
      this.cancelWith(Status.DEADLINE_EXCEEDED, 'Deadline exceeded')
      return
    }
    signal?.addEventListener('abort', onAbort!)
    if (deadline !== Infinity) {
      this.stopDeadline = whenDeadlinePasses(deadline, () => { this.cancelWith(Status.DEADLINE_EXCEEDED, 'Deadline exceeded') })
    }
    this.stream = session.openStream({ path: method.path, metadata, deadline }, this)
  }

  // --- requests ----------------------------------------------------------------

  send (request: I): Promise<boolean> {
    return new Promise(resolve => {
      const sends = this.sends ??= new Set()
      if (this.write(request, () => { sends.delete(resolve); resolve(true) })) sends.add(resolve)
      else resolve(false)
    })
  }

  /** Sends `request`, `done` once it has gone to the socket; false if it cannot go. */
  write (request: I, done?: () => void): boolean {
    if (this.over || this.halfClosed) return false
    let bytes: Uint8Array
    try {
      bytes = this.method.serialize(request)
    } catch (err) {
      // As grpc-js: a request that cannot be serialized fails the call.
      this.cancelWith(Status.INTERNAL, `Request message serialization failure: ${(err as Error).message}`, err)
      return false
    }
    this.stream!.send(bytes, done)
    return true
  }

  close (): void {
    if (this.over || this.halfClosed) return
    this.halfClosed = true
    this.stream!.halfClose()
  }

  cancel (): void {
    this.cancelWith(Status.CANCELLED, 'Cancelled on client')
  }

  /** Ends the call from this side: the server is told (CANCEL) and the handler sees 'cancelled'. */
  cancelWith (code: number, details: string, cause?: unknown): void {
    if (this.over) return
    this.stream?.cancel()
    this.finish(code, details, [], cause)
  }

  // --- responses -----------------------------------------------------------------

  /** The one response of a unary or client-streaming call, with the call's headers and trailers. */
  result (): UnaryCall<O> {
    const response = new Promise<O>((resolve, reject) => {
      this.settle = () => { this.error ? reject(this.error) : resolve(this.response!.value) }
      if (this.over) this.settle()
    })
    return Object.assign(response, { headers: this.headers, trailers: this.trailers })
  }

  [Symbol.asyncIterator] (): AsyncIterator<O> {
    return {
      next: () => this.next(),
      // Leaving a for-await loop early: nobody reads any more, so stop the server.
      return: async () => {
        this.cancel()
        return { done: true, value: undefined }
      }
    }
  }

  // Not async, and one promise per response: for-await resumes on the tick
  // that settles it (fan-out clients take thousands of responses a burst).
  private next (): Promise<IteratorResult<O>> {
    const bytes = this.queue?.shift()
    if (bytes !== undefined) return Promise.resolve(this.take(bytes))
    if (this.over) return this.error ? Promise.reject(this.error) : Promise.resolve({ done: true, value: undefined })
    // Nothing queued: onMessage hands the next response straight to this reader (no copy).
    return new Promise(resolve => { this.pull = resolve })
  }

  /**
   * A response the reader takes (a rejection if it cannot be parsed): credit
   * goes back only now, so a slow reader holds the server's writer back.
   */
  private take (bytes: Uint8Array): IteratorResult<O> | Promise<never> {
    this.stream?.consumed()
    try {
      return { done: false, value: this.decode(bytes) }
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /**
   * A response as the application's object. One that cannot be parsed fails
   * the call, as in grpc-js: the responses still queued are dropped, and the
   * call's error is thrown.
   */
  private decode (bytes: Uint8Array): O {
    try {
      return this.method.deserialize(bytes)
    } catch (err) {
      this.queue = undefined
      // A queued response is parsed when taken, maybe after the call ended:
      // its failure still ends the call, as grpc-js's parse on arrival would.
      this.over = false
      this.cancelWith(Status.INTERNAL, `Response message parsing error: ${(err as Error).message}`, err)
      throw this.error!
    }
  }

  // --- StreamHandler -----------------------------------------------------------------

  onHeaders (entries: MetadataEntry[]): void {
    // Only the first resolution of a promise counts: headers after the first
    // (the stream passes on one block only) or after the end change nothing.
    this.resolveHeaders(Metadata.fromEntries(entries))
  }

  onMessage (bytes: Uint8Array): void {
    if (this.over) return
    if (this.streamed) {
      // A reader waits only while nothing is queued.
      const pull = this.pull
      // Taken before the response is: if it fails the call, finish() must not settle it too.
      if (pull) {
        this.pull = undefined
        pull(this.take(bytes))
      } else (this.queue ??= new MessageQueue()).push(bytes)
      return
    }
    let value: O
    try {
      value = this.decode(bytes)
    } catch {
      // decode() has failed the call.
      return
    }
    // The same checks as grpc-js's unary client.
    if (this.response) {
      this.cancelWith(Status.UNIMPLEMENTED, 'Too many responses received')
      return
    }
    this.response = { value }
    this.stream!.consumed()
  }

  onEnd (status: CallStatus): void {
    this.finish(status.code, status.details, status.metadata, status.cause)
  }

  private finish (code: number, details: string, entries: MetadataEntry[], cause?: unknown): void {
    if (this.over) return
    this.over = true
    this.stopDeadline?.()
    this.signal?.removeEventListener('abort', this.onAbort!)
    const trailers = Metadata.fromEntries(entries)
    if (code !== Status.OK) {
      this.error = new GrpcError(code, details, trailers, cause === undefined ? undefined : { cause })
    } else if (!this.streamed && !this.response) {
      this.error = new GrpcError(Status.UNIMPLEMENTED, 'No message received', trailers)
    }
    this.resolveHeaders(new Metadata())
    this.resolveTrailers(trailers)
    // Sends still waiting for the socket will never go: say so.
    this.sends?.forEach(resolve => { resolve(false) })
    this.sends = undefined
    this.settle?.()
    // A reader waits only while nothing is queued: next() now ends its
    // iteration. (Once over, nothing reads pull again.)
    this.pull?.(this.next())
  }
}

function deadlineOf (options: CallOptions): number {
  let deadline = Infinity
  if (options.timeout !== undefined) deadline = Date.now() + options.timeout
  if (options.deadline !== undefined) {
    deadline = Math.min(deadline, options.deadline instanceof Date ? options.deadline.getTime() : options.deadline)
  }
  return deadline
}
