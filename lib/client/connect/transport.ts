/**
 * A Connect v2 `Transport` over the browser client's multiplexed socket:
 * every call of a Connect client (`createClient` from @connectrpc/connect)
 * becomes a call of a GrpcWsClient, so it shares that client's socket,
 * windows, keepalive and reconnection, and its HTTP fallback (unary and
 * server streaming over gRPC-Web where the WebSocket cannot be opened,
 * unless `transports: ['websocket']`). run-call.ts runs interceptors,
 * deadlines and signals as Connect's runUnaryCall / runStreamingCall do;
 * this module maps requests, headers, messages and errors to the client's
 * and back.
 */
import { fromBinary, toBinary, type BinaryReadOptions, type BinaryWriteOptions, type DescMessage, type DescMethodStreaming, type DescMethodUnary, type MessageShape } from '@bufbuild/protobuf'
import { BinaryReader } from '@bufbuild/protobuf/wire'
import {
  Code, ConnectError, createContextValues, decodeBinaryHeader, encodeBinaryHeader,
  type ContextValues, type Interceptor, type StreamResponse, type Transport, type UnaryResponse
} from '@connectrpc/connect'
import { GrpcWsClient } from '../web/client.js'
import { HttpFallbackClient, type HttpFallbackOptions } from '../web/http.js'
import { GrpcError } from '../web/errors.js'
import { Metadata } from '../web/metadata.js'
import type { MethodDescriptor } from '../web/types.js'
import { invalidClientOption } from './errors.js'
import { runStreaming, runUnary } from './run-call.js'

export interface WebSocketTransportOptions extends HttpFallbackOptions {
  /**
   * The plugin's endpoint: a `ws:`/`wss:` URL, or in a page a path (`'/grpc'`)
   * or http(s) URL resolved against the page's address. Required unless
   * `client` is given.
   */
  baseUrl?: string
  /**
   * Share the socket of this client instead of opening one. The session
   * options (`WebSocket`, windows, keepalive, backoff, protocols, and the
   * HTTP fallback's `transports`, `fetch`, `retryMs`) are then
   * the client's own and cannot be given here.
   */
  client?: GrpcWsClient
  /** Connect interceptors; the first is the outermost. */
  interceptors?: Interceptor[]
  /** Deadline of calls that set no `timeoutMs`, in ms. Default: none. */
  defaultTimeoutMs?: number
  /** Largest response message, in bytes: larger ones fail the call with resource_exhausted. Default 0xffffffff (the client's `maxReceiveMessageSize`, 4 MiB by default, applies too). */
  readMaxBytes?: number
  /** Largest request message, in bytes: larger ones fail the call with resource_exhausted. Default 0xffffffff (the server's limit applies too). */
  writeMaxBytes?: number
  /** protobuf-es options for `toBinary` / `fromBinary`. */
  binaryOptions?: Partial<BinaryReadOptions & BinaryWriteOptions>
}

/**
 * A Connect Transport, and the client whose socket it uses (to watch its
 * state, or `close()` it): the one given as `client`, or else an
 * HttpFallbackClient, whose `transport` says which way new calls take.
 */
export interface WebSocketTransport extends Transport {
  readonly client: GrpcWsClient
}

const transportKeys = ['baseUrl', 'client', 'interceptors', 'defaultTimeoutMs', 'readMaxBytes', 'writeMaxBytes', 'binaryOptions']
const sessionKeys = ['WebSocket', 'initialWindowSize', 'maxReceiveMessageSize', 'connectTimeoutMs', 'keepaliveIntervalMs', 'keepaliveTimeoutMs', 'backoff', 'protocols', 'transports', 'fetch', 'retryMs']
const MAX_BYTES = 0xffffffff

function checkOptions (options: WebSocketTransportOptions): void {
  if (typeof options !== 'object' || options === null) throw invalidClientOption('options', 'expected an object')
  for (const key of Object.keys(options)) {
    if (!transportKeys.includes(key) && !sessionKeys.includes(key)) throw invalidClientOption(key, `unknown option; known: ${[...transportKeys, ...sessionKeys].join(', ')}`)
  }
  if (options.client !== undefined) {
    if (!(options.client instanceof GrpcWsClient)) throw invalidClientOption('client', 'expected a GrpcWsClient (createClient from fastify-grpc-ws/client)')
    if (options.baseUrl !== undefined) throw invalidClientOption('baseUrl', 'give either baseUrl or client: the client has its URL')
    const given = sessionKeys.filter(key => (options as Record<string, unknown>)[key] !== undefined)
    if (given.length > 0) throw invalidClientOption(given[0]!, 'the shared client has its own session options; set them where it is created')
  } else if (typeof options.baseUrl !== 'string' || options.baseUrl === '') {
    throw invalidClientOption('baseUrl', 'expected a ws(s) URL or a path, or a client to share')
  }
  if (options.interceptors !== undefined && (!Array.isArray(options.interceptors) || options.interceptors.some(i => typeof i !== 'function'))) {
    throw invalidClientOption('interceptors', 'expected an array of functions')
  }
  if (options.defaultTimeoutMs !== undefined && !(typeof options.defaultTimeoutMs === 'number' && options.defaultTimeoutMs >= 0)) {
    throw invalidClientOption('defaultTimeoutMs', 'expected a number of ms, 0 or more')
  }
  for (const key of ['readMaxBytes', 'writeMaxBytes'] as const) {
    const value = options[key]
    if (value !== undefined && !(Number.isInteger(value) && value >= 1 && value <= MAX_BYTES)) throw invalidClientOption(key, `expected an integer from 1 to ${MAX_BYTES}`)
  }
}

/**
 * A Connect `Transport` over one multiplexed WebSocket to the plugin:
 * `createClient(Service, createWebSocketTransport({ baseUrl: '/grpc' }))`.
 * The socket opens at the first call. Throws FST_GRPCWS_INVALID_CLIENT_OPTION
 * on a bad option.
 */
export function createWebSocketTransport (options: WebSocketTransportOptions): WebSocketTransport {
  checkOptions(options)
  const { baseUrl, client: shared, interceptors = [], defaultTimeoutMs, binaryOptions, readMaxBytes = MAX_BYTES, writeMaxBytes = MAX_BYTES, ...sessionOptions } = options
  const client = shared ?? new HttpFallbackClient(baseUrl!, sessionOptions)
  // As Connect's own transports: no timeoutMs → the default; 0 or less → none.
  const timeoutOf = (timeoutMs: number | undefined): number | undefined =>
    timeoutMs === undefined ? defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs

  /** Messages cross the client as bytes: (de)serialization and its limits are Connect's errors, not the client's. */
  const raw = (method: DescMethodUnary | DescMethodStreaming): MethodDescriptor<Uint8Array, Uint8Array> => ({
    path: `/${method.parent.typeName}/${method.name}`,
    serialize: bytes => bytes,
    deserialize: bytes => bytes
  })
  const encode = (method: DescMethodUnary | DescMethodStreaming, message: MessageShape<DescMessage>): Uint8Array => {
    const bytes = toBinary(method.input, message, binaryOptions)
    if (bytes.byteLength > writeMaxBytes) {
      throw new ConnectError(`message size ${bytes.byteLength} is larger than configured writeMaxBytes ${writeMaxBytes}`, Code.ResourceExhausted)
    }
    return bytes
  }
  const decode = <O extends DescMessage>(method: { output: O }, bytes: Uint8Array): MessageShape<O> => {
    if (bytes.byteLength > readMaxBytes) {
      throw new ConnectError(`message size ${bytes.byteLength} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted)
    }
    try {
      return fromBinary(method.output, bytes, binaryOptions)
    } catch (err) {
      throw new ConnectError(`failed to parse the response: ${(err as Error).message}`, Code.Internal, undefined, undefined, err)
    }
  }
  const urlOf = (method: DescMethodUnary | DescMethodStreaming): string => `${client.url.replace(/\/$/, '')}/${method.parent.typeName}/${method.name}`

  return {
    client,

    async unary<I extends DescMessage, O extends DescMessage> (method: DescMethodUnary<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined, header: HeadersInit | undefined, input: any, contextValues?: ContextValues): Promise<UnaryResponse<I, O>> {
      const timeout = timeoutOf(timeoutMs)
      return await runUnary<I, O>({
        interceptors,
        signal,
        timeoutMs: timeout,
        req: {
          stream: false,
          service: method.parent,
          method,
          requestMethod: 'POST',
          url: urlOf(method),
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues()
        },
        message: input,
        next: async req => {
          const bytes = encode(method, req.message)
          const call = client.unary(raw(method), bytes, { metadata: toMetadata(req.header), signal: req.signal, timeout })
          let response: Uint8Array
          try {
            response = await call
          } catch (err) {
            throw toConnectError(err, await call.headers)
          }
          return {
            stream: false,
            service: method.parent,
            method,
            header: toHeaders(await call.headers),
            trailer: toHeaders(await call.trailers),
            message: decode(method, response)
          }
        }
      })
    },

    async stream<I extends DescMessage, O extends DescMessage> (method: DescMethodStreaming<I, O>, signal: AbortSignal | undefined, timeoutMs: number | undefined, header: HeadersInit | undefined, input: AsyncIterable<any>, contextValues?: ContextValues): Promise<StreamResponse<I, O>> {
      const timeout = timeoutOf(timeoutMs)
      return await runStreaming<I, O>({
        interceptors,
        signal,
        timeoutMs: timeout,
        req: {
          stream: true,
          service: method.parent,
          method,
          requestMethod: 'POST',
          url: urlOf(method),
          header: new Headers(header),
          contextValues: contextValues ?? createContextValues()
        },
        message: input,
        next: async req => {
          const call = client.bidi(raw(method), { metadata: toMetadata(req.header), signal: req.signal, timeout })
          // The first failure of this side (a request too large, a request
          // stream that threw), rather than the CANCELLED it ends the call with.
          let failure: unknown
          // Requests flow before the headers are awaited: a handler may wait
          // for a request before it sends anything.
          void (async () => {
            try {
              for await (const message of req.message) {
                if (!await call.send(encode(method, message))) return
              }
              call.close()
            } catch (err) {
              failure ??= err
              call.cancel()
            }
          })()
          const headers = await call.headers
          // Filled once the responses are over, as Connect reads it after the iteration.
          const trailer = new Headers()
          const fail = (err: unknown): never => {
            if (failure !== undefined) throw ConnectError.from(failure)
            throw toConnectError(err, headers)
          }
          return {
            stream: true,
            service: method.parent,
            method,
            header: toHeaders(headers),
            trailer,
            message: (async function * () {
              const iterator = call[Symbol.asyncIterator]()
              try {
                for (;;) {
                  let result: IteratorResult<Uint8Array>
                  try {
                    result = await iterator.next()
                  } catch (err) {
                    return fail(err)
                  }
                  if (result.done === true) break
                  let message: MessageShape<O>
                  try {
                    message = decode(method, result.value)
                  } catch (err) {
                    failure ??= err
                    call.cancel()
                    throw err
                  }
                  yield message
                }
              } finally {
                // Left early (break, or a throw in the caller's loop): stop the server.
                call.cancel()
              }
              if (failure !== undefined) throw ConnectError.from(failure)
              toHeaders(await call.trailers).forEach((value, key) => { trailer.append(key, value) })
            })()
          }
        }
      })
    }
  }
}

/**
 * Connect headers → metadata: `-bin` values are base64 in Headers (several
 * joined by commas), bytes on this wire.
 */
function toMetadata (headers: Headers): Metadata {
  const metadata = new Metadata()
  headers.forEach((value, key) => {
    if (key.endsWith('-bin')) {
      for (const part of value.split(',')) metadata.append(key, decodeBinaryHeader(part.trim()))
    } else {
      metadata.append(key, value)
    }
  })
  return metadata
}

/** Metadata → Connect headers, `-bin` values base64 as Connect's own transports give them. */
function toHeaders (metadata: Metadata): Headers {
  const headers = new Headers()
  for (const [key, value] of metadata) headers.append(key, typeof value === 'string' ? value : encodeBinaryHeader(value))
  return headers
}

/**
 * A failed call as Connect's error: the gRPC code (Connect's codes are
 * gRPC's), the server's message, headers and trailers as its metadata, and
 * the details of a `grpc-status-details-bin` trailer.
 */
function toConnectError (err: unknown, headers: Metadata): ConnectError {
  if (!(err instanceof GrpcError)) return ConnectError.from(err)
  const metadata = toHeaders(headers)
  for (const [key, value] of err.metadata) metadata.append(key, typeof value === 'string' ? value : encodeBinaryHeader(value))
  const error = new ConnectError(err.details, err.code as Code, metadata, undefined, err)
  const details = err.metadata.get('grpc-status-details-bin')
  if (details instanceof Uint8Array) {
    try {
      error.details = statusDetails(details)
    } catch {
      // Not a google.rpc.Status: the metadata still has the bytes.
    }
  }
  return error
}

/** The `details` (repeated google.protobuf.Any, field 3) of a google.rpc.Status, as Connect's incoming details. */
function statusDetails (bytes: Uint8Array): Array<{ type: string, value: Uint8Array }> {
  const details: Array<{ type: string, value: Uint8Array }> = []
  const reader = new BinaryReader(bytes)
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag()
    if (field !== 3) {
      reader.skip(wireType)
      continue
    }
    const any = new BinaryReader(reader.bytes())
    let type = ''
    let value: Uint8Array = new Uint8Array(0)
    while (any.pos < any.len) {
      const [f, w] = any.tag()
      if (f === 1) type = any.string()
      else if (f === 2) value = any.bytes()
      else any.skip(w)
    }
    details.push({ type: type.slice(type.lastIndexOf('/') + 1), value })
  }
  return details
}
