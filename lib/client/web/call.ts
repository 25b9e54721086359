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
  private stream: CallStream | null = null
  private over = false
  private halfClosed = false
  private error: GrpcError | null = null
  /** Unary responses: the one message. */
  private response: { value: O } | null = null
  /**
   * Streamed responses not yet taken by the iteration, as bytes: each is
   * deserialized when taken, so what a server can make this call hold is
   * bounded by the window, not by a count of objects.
   */
  private readonly queue = new MessageQueue()
  private wake: (() => void) | null = null
  private readonly sends = new Set<(sent: boolean) => void>()
  private readonly ended: Array<() => void> = []
  private stopDeadline: (() => void) | null = null
  private readonly signal: AbortSignal | undefined

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
    if (this.signal?.aborted === true) {
      this.onAbort()
      return
    }
    const deadline = deadlineOf(options)
    if (deadline <= Date.now()) {
      this.cancelWith(Status.DEADLINE_EXCEEDED, 'Deadline exceeded')
      return
    }
    this.signal?.addEventListener('abort', this.onAbort)
    if (deadline !== Infinity) {
      this.stopDeadline = whenDeadlinePasses(deadline, () => { this.cancelWith(Status.DEADLINE_EXCEEDED, 'Deadline exceeded') })
    }
    this.stream = session.openStream({ path: method.path, metadata, deadline }, this)
  }

  private readonly onAbort = (): void => {
    this.cancelWith(Status.CANCELLED, 'Cancelled on client', this.signal?.reason)
  }

  /** Runs `callback` once the call is over (at once if it is). */
  onEnded (callback: () => void): void {
    if (this.over) callback()
    else this.ended.push(callback)
  }

  // --- requests ----------------------------------------------------------------

  send (request: I): Promise<boolean> {
    if (this.over || this.halfClosed) return Promise.resolve(false)
    let bytes: Uint8Array
    try {
      bytes = this.method.serialize(request)
    } catch (err) {
      // As grpc-js: a request that cannot be serialized fails the call.
      this.cancelWith(Status.INTERNAL, `Request message serialization failure: ${(err as Error).message}`, err)
      return Promise.resolve(false)
    }
    return new Promise(resolve => {
      this.sends.add(resolve)
      this.stream!.send(bytes, () => {
        this.sends.delete(resolve)
        resolve(true)
      })
    })
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
      this.onEnded(() => { this.error === null ? resolve(this.response!.value) : reject(this.error) })
    })
    return Object.assign(response, { headers: this.headers, trailers: this.trailers })
  }

  [Symbol.asyncIterator] (): AsyncIterator<O> {
    return {
      next: async () => await this.next(),
      // Leaving a for-await loop early: nobody reads any more, so stop the server.
      return: async () => {
        this.cancel()
        return { done: true, value: undefined }
      }
    }
  }

  private async next (): Promise<IteratorResult<O>> {
    for (;;) {
      const bytes = this.queue.shift()
      if (bytes !== undefined) {
        // Credit goes back only now: a slow reader holds the server's writer back.
        this.stream?.consumed()
        return { done: false, value: this.decode(bytes) }
      }
      if (this.over) {
        if (this.error !== null) throw this.error
        return { done: true, value: undefined }
      }
      await new Promise<void>(resolve => { this.wake = resolve })
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
      this.queue.clear()
      this.cancelWith(Status.INTERNAL, `Response message parsing error: ${(err as Error).message}`, err)
      throw this.error!
    }
  }

  private wakeUp (): void {
    const wake = this.wake
    this.wake = null
    wake?.()
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
      this.queue.push(bytes)
      this.wakeUp()
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
    if (this.response !== null) {
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
    this.signal?.removeEventListener('abort', this.onAbort)
    const trailers = Metadata.fromEntries(entries)
    if (code !== Status.OK) {
      this.error = new GrpcError(code, details, trailers, cause === undefined ? undefined : { cause })
    } else if (!this.streamed && this.response === null) {
      this.error = new GrpcError(Status.UNIMPLEMENTED, 'No message received', trailers)
    }
    this.resolveHeaders(new Metadata())
    this.resolveTrailers(trailers)
    // Sends still waiting for the socket will never go: say so.
    for (const resolve of this.sends) resolve(false)
    this.sends.clear()
    for (const callback of this.ended.splice(0)) callback()
    this.wakeUp()
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
