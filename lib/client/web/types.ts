/**
 * The shapes of the browser client's API: what a method is, what a call
 * takes, and what each kind of call returns.
 */
import type { Metadata, MetadataInit } from './metadata.js'

/** One method of a service: its path and how its messages are (de)serialized. */
export interface MethodDescriptor<I, O> {
  /** `/package.Service/Method` */
  path: string
  serialize: (request: I) => Uint8Array
  deserialize: (bytes: Uint8Array) => O
  /** Informative (the typed service client uses them to pick the kind of call). */
  requestStream?: boolean
  responseStream?: boolean
}

export interface CallOptions {
  /** Request metadata (headers). `-bin` keys take `Uint8Array` values. */
  metadata?: MetadataInit
  /** The call fails with DEADLINE_EXCEEDED after this many ms (the server is told, and stops too). */
  timeout?: number
  /** An absolute deadline (a Date or ms since the epoch); the earlier of this and `timeout` wins. */
  deadline?: Date | number
  /** Aborting it cancels the call: the handler sees 'cancelled', the call fails with CANCELLED. */
  signal?: AbortSignal
}

/** What every call exposes besides its messages. */
export interface CallInfo {
  /** The response headers; resolves with empty metadata if the call ends without any. Never rejects. */
  readonly headers: Promise<Metadata>
  /** The trailing metadata; resolves when the call ends, whatever its status. Never rejects. */
  readonly trailers: Promise<Metadata>
}

/** A unary or client-streaming call: a Promise of the one response. Rejects with a GrpcError. */
export type UnaryCall<O> = Promise<O> & CallInfo

/**
 * A server-streaming call: iterate it for the responses (a failure is thrown
 * by the iteration as a GrpcError). Leaving the loop early cancels the call.
 * Credit goes back to the server only as the loop takes messages, so a slow
 * loop slows the server's writer.
 */
export interface StreamCall<O> extends AsyncIterable<O>, CallInfo {
  /** Cancels the call (CANCELLED); the handler sees 'cancelled'. */
  cancel: () => void
}

/** A bidi call: `send()` requests, `close()` when done sending, iterate the responses. */
export interface BidiCall<I, O> extends StreamCall<O> {
  /**
   * Queues a request. Resolves `true` once it has been handed to the socket
   * (awaiting it honours the server's flow-control credit), or `false` if the
   * call is over. Never rejects.
   */
  send: (request: I) => Promise<boolean>
  /** No more requests (half-close). The responses keep coming. */
  close: () => void
}
