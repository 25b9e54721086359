/**
 * The Connect protocol (connectrpc.com/docs/protocol): POST here, the
 * unary GET of side-effect-free methods in connect-get.ts.
 *
 * Unary (`application/proto`, `application/json`): the body is the request
 * message; a success is HTTP 200 with the response message as the body, the
 * response metadata as headers and the trailers as `trailer-<key>` headers;
 * an error is the HTTP status for its code with the Connect error JSON
 * (`{"code":"not_found","message":...}`).
 *
 * Streaming (`application/connect+proto`, `+json`): length-prefixed
 * messages both ways; the response ends with an end-stream message (flag
 * 0x02) holding `{"error"?, "metadata"}`, and is HTTP 200 whatever the code.
 *
 * Deadlines come from `connect-timeout-ms`; `connect-protocol-version`, if
 * sent, must be 1. JSON goes through the proto3 JSON mapping built from the
 * descriptors @grpc/proto-loader definitions carry (see json.ts).
 */
import { status as GrpcStatus, type Metadata } from '@grpc/grpc-js'
import type { FastifyRequest } from 'fastify'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { RegisteredHandler, ServerStatus } from '../../grpc-internals.js'
import { fromGrpcMetadata } from '../../grpc-metadata.js'
import type { ResolvedOptions } from '../../options.js'
import type { MetadataEntry } from '../../protocol/metadata.js'
import { REQUEST_KEY } from '../connection.js'
import type { ManagedConnection } from '../grpc-ws-server.js'
import { CallError, encodeFrame } from '../grpc-websockets/frames.js'
import { HttpCall, type HttpCallLimits, type HttpExchange, type RequestTranscoder } from './call.js'
import type { JsonCodecs, MethodJson } from './json.js'
import { RequestHeaderError, closeHeader, environmentOf, headerEntries, headersOf, metadataOf } from './request.js'
import type { Dispatcher } from '../dispatch.js'

export type { JsonCodecs as ConnectCodecs } from './json.js'

export interface ConnectType { stream: boolean, json: boolean }

/** What a Content-Type names, if it is one of Connect's. */
export function connectType (media: string): ConnectType | null {
  switch (media) {
    case 'application/proto': return { stream: false, json: false }
    case 'application/json': return { stream: false, json: true }
    case 'application/connect+proto': return { stream: true, json: false }
    case 'application/connect+json': return { stream: true, json: true }
    default: return null
  }
}

const codeNames = ['ok', 'canceled', 'unknown', 'invalid_argument', 'deadline_exceeded', 'not_found', 'already_exists',
  'permission_denied', 'resource_exhausted', 'failed_precondition', 'aborted', 'out_of_range', 'unimplemented',
  'internal', 'unavailable', 'data_loss', 'unauthenticated']
const httpStatuses = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401]

/** The Connect name of a gRPC code (`not_found`); `unknown` for codes outside 0..16. */
export function codeName (code: number): string {
  return codeNames[code] ?? 'unknown'
}

/** The HTTP status a Connect unary error answers with. */
export function httpStatusOf (code: number): number {
  return httpStatuses[code] ?? 500
}

const END_STREAM = 0x02

interface ErrorJson { code: string, message?: string, details?: Array<{ type: string, value: string }> }

function errorJson (code: number, details: string, statusDetails?: Uint8Array): ErrorJson {
  const error: ErrorJson = { code: codeName(code) }
  if (details !== '') error.message = details
  const any = statusDetails === undefined ? [] : anyDetails(statusDetails)
  if (any.length > 0) error.details = any
  return error
}

// --- google.rpc.Status, as grpc-status-details-bin carries it --------------

function varint (bytes: Uint8Array, at: { i: number }): number {
  let value = 0
  for (let shift = 0; shift < 35; shift += 7) {
    if (at.i >= bytes.length) throw new RangeError('truncated varint')
    const b = bytes[at.i++]!
    value += (b & 0x7f) * 2 ** shift
    if (b < 0x80) return value
  }
  throw new RangeError('varint too long')
}

/** Calls `field(number, bytes)` for each length-delimited field; skips the others. */
function fields (bytes: Uint8Array, field: (n: number, value: Uint8Array) => void): void {
  const at = { i: 0 }
  while (at.i < bytes.length) {
    const key = varint(bytes, at)
    const wire = key & 7
    if (wire === 0) varint(bytes, at)
    else if (wire === 2) {
      const length = varint(bytes, at)
      if (at.i + length > bytes.length) throw new RangeError('truncated field')
      field(key >>> 3, bytes.subarray(at.i, at.i + length))
      at.i += length
    } else if (wire === 5) at.i += 4
    else if (wire === 1) at.i += 8
    else throw new RangeError(`wire type ${wire}`)
  }
}

/**
 * The `details` (google.protobuf.Any) of a google.rpc.Status, as Connect's
 * error JSON has them: the type name without its URL prefix, the value in
 * unpadded base64. A malformed status gives none.
 */
function anyDetails (status: Uint8Array): Array<{ type: string, value: string }> {
  const out: Array<{ type: string, value: string }> = []
  try {
    fields(status, (n, any) => {
      if (n !== 3) return
      let type = ''
      let value: Uint8Array = new Uint8Array(0)
      fields(any, (m, v) => {
        if (m === 1) type = Buffer.from(v).toString('utf8')
        else if (m === 2) value = v
      })
      out.push({ type: type.slice(type.lastIndexOf('/') + 1), value: Buffer.from(value).toString('base64').replace(/=+$/, '') })
    })
  } catch {
    return []
  }
  return out
}

function statusDetailsOf (trailers: MetadataEntry[]): { rest: MetadataEntry[], details: Uint8Array | undefined } {
  const found = trailers.find(([key]) => key === 'grpc-status-details-bin')
  if (found === undefined) return { rest: trailers, details: undefined }
  return { rest: trailers.filter(([key]) => key !== 'grpc-status-details-bin'), details: found[1] as Uint8Array }
}

// Metadata as the end-stream message's `metadata`: `-bin` values in base64.
function metadataJson (entries: readonly MetadataEntry[]): Record<string, string[]> {
  const out: Record<string, string[]> = {}
  for (const [key, value] of entries) {
    const v = typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')
    ;(out[key] ??= []).push(v)
  }
  return out
}

export class ConnectCall extends HttpCall {
  private headerEntries: MetadataEntry[] = []
  private held: Buffer | null = null
  private readonly contentType: string

  constructor (exchange: HttpExchange, handler: RegisteredHandler, metadata: Metadata, deadline: number, limits: HttpCallLimits,
    private readonly type: ConnectType, private readonly json: MethodJson | null) {
    super(exchange, handler, metadata, deadline, limits, { enveloped: type.stream, text: false, transcode: json === null ? undefined : json.request })
    this.contentType = type.stream ? (type.json ? 'application/connect+json' : 'application/connect+proto') : (type.json ? 'application/json' : 'application/proto')
  }

  protected writeHeaders (metadata: Metadata): void {
    this.headerEntries = fromGrpcMetadata(metadata)
    if (!this.type.stream) return
    this.commit(200, this.contentType, headersOf(this.headerEntries))
    this.res.flushHeaders()
  }

  protected writeMessage (bytes: Buffer, done: () => void): void {
    let out: Uint8Array
    try {
      out = this.json === null ? bytes : this.json.response(bytes)
    } catch (err) {
      this.sendStatus({ code: GrpcStatus.INTERNAL, details: `Error encoding the response as JSON: ${(err as Error).message}`, metadata: null })
      return
    }
    if (!this.type.stream) {
      this.held = Buffer.from(out.buffer, out.byteOffset, out.byteLength)
      queueMicrotask(done)
      return
    }
    this.output(encodeFrame(0, out), done)
  }

  protected writeStatus (status: ServerStatus, sent: () => void): void {
    this.end(status.code, status.details, fromGrpcMetadata(status.metadata), sent)
  }

  protected writeReset (code: number, details: string): void {
    this.held = null
    this.end(code, details, [])
  }

  private end (code: number, details: string, allTrailers: MetadataEntry[], sent?: () => void): void {
    // An error's google.rpc.Status goes into the error JSON's details, as connect-es does.
    const { rest, details: statusDetails } = code === GrpcStatus.OK ? { rest: allTrailers, details: undefined } : statusDetailsOf(allTrailers)
    const trailers = rest
    if (this.type.stream) {
      const endStream: { error?: object, metadata?: Record<string, string[]> } = {}
      if (code !== GrpcStatus.OK) endStream.error = errorJson(code, details, statusDetails)
      if (trailers.length > 0) endStream.metadata = metadataJson(trailers)
      const frame = encodeFrame(END_STREAM, Buffer.from(JSON.stringify(endStream)))
      if (!this.res.headersSent) {
        this.commit(200, this.contentType, headersOf(this.headerEntries))
        this.res.setHeader('content-length', frame.byteLength)
      }
      this.finish(frame, sent)
      return
    }
    const headers = { ...headersOf(this.headerEntries), ...headersOf(trailers, 'trailer-') }
    let body: Buffer
    if (code === GrpcStatus.OK && this.held !== null) {
      body = this.held
      this.commit(200, this.contentType, headers)
    } else {
      // A unary success without a message is an error in Connect too.
      const error = code === GrpcStatus.OK ? errorJson(GrpcStatus.INTERNAL, 'The handler sent no response message') : errorJson(code, details, statusDetails)
      body = Buffer.from(JSON.stringify(error))
      this.commit(httpStatusOf(code === GrpcStatus.OK ? GrpcStatus.INTERNAL : code), 'application/json', headers)
    }
    this.held = null
    if (!this.res.headersSent) this.res.setHeader('content-length', body.byteLength)
    this.finish(body, sent)
  }

  private commit (statusCode: number, contentType: string, headers: Record<string, string | string[]>): void {
    const res = this.res
    if (res.headersSent || res.destroyed) return
    for (const key in headers) res.setHeader(key, headers[key]!)
    res.statusCode = statusCode
    res.setHeader('content-type', contentType)
  }
}

export interface ConnectRequest {
  request: FastifyRequest
  req: IncomingMessage
  res: ServerResponse
  body: Readable
  path: string
  type: ConnectType
  server: { readonly dispatcher: Dispatcher, untrack: (conn: ManagedConnection) => void }
  options: ResolvedOptions
  limits: HttpCallLimits
  codecs: JsonCodecs
  track: () => ManagedConnection & { call: HttpCall | null, ended: () => void }
}

/**
 * Answers a Connect request with an error before any call started: the
 * error JSON with the code's HTTP status (or `httpStatus`), or for a
 * streaming type an end-stream message. The unread rest of `body`, if any,
 * is read and dropped.
 */
export function refuseConnect (req: IncomingMessage, res: ServerResponse, body: Readable | null, type: ConnectType,
  code: number, details: string, httpStatus?: number, headers: Record<string, string> = {}): void {
  body?.resume()
  if (type.stream && httpStatus === undefined) {
    const frame = encodeFrame(END_STREAM, Buffer.from(JSON.stringify({ error: errorJson(code, details) })))
    res.writeHead(200, { ...headers, 'content-type': type.json ? 'application/connect+json' : 'application/connect+proto', 'content-length': frame.byteLength, ...closeHeader(req) })
    res.end(frame)
    return
  }
  const json = Buffer.from(JSON.stringify(errorJson(code, details)))
  res.writeHead(httpStatus ?? httpStatusOf(code), { ...headers, 'content-type': 'application/json', 'content-length': json.byteLength, ...closeHeader(req) })
  res.end(json)
}

/** Serves one Connect POST (the route has checked content type and origin). */
export function serveConnect (r: ConnectRequest): void {
  const { req, path, type } = r
  const refuse = (code: number, details: string, httpStatus?: number): void => { refuseConnect(req, r.res, r.body, type, code, details, httpStatus) }
  const version = single(req.headers['connect-protocol-version'])
  if (version !== undefined && version !== '1') {
    refuse(GrpcStatus.INVALID_ARGUMENT, `connect-protocol-version must be "1": got "${version}"`)
    return
  }
  const handler = r.server.dispatcher.lookup(path)
  if (handler === undefined) {
    refuse(GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${path}`)
    return
  }
  if ((handler.type === 'unary') === type.stream) {
    // As connect-es: unary methods take the unary content types, the others the streaming ones.
    refuse(GrpcStatus.UNIMPLEMENTED, `${path} is a ${handler.type} method: it takes ${handler.type === 'unary' ? 'application/proto or application/json' : 'application/connect+proto or application/connect+json'}`, 415)
    return
  }
  serveConnectMethod(r, handler)
}

/**
 * What a POST and a GET share once the method is known: the deadline, the
 * JSON codec, the metadata, and the call.
 */
export function serveConnectMethod (r: ConnectRequest, handler: RegisteredHandler): void {
  const { req, res, body, path, type } = r
  if (type.json && !r.codecs.loaded) {
    // The first JSON request loads the codecs; the body waits unread meanwhile.
    // A throw would otherwise be an unhandled rejection: end this request only, as the route does.
    r.codecs.load().then(() => {
      if (!req.destroyed && !res.destroyed) serveConnectMethod(r, handler)
    }).catch((err: unknown) => {
      r.request.log.error({ err }, 'Connect call failed to start')
      res.destroy()
    })
    return
  }
  const refuse = (code: number, details: string, httpStatus?: number): void => { refuseConnect(req, res, body, type, code, details, httpStatus) }
  let deadline = Infinity
  const timeout = single(req.headers['connect-timeout-ms'])
  if (timeout !== undefined) {
    if (!/^\d{1,10}$/.test(timeout)) {
      refuse(GrpcStatus.INVALID_ARGUMENT, `protocol error: invalid connect timeout value: ${timeout}`)
      return
    }
    deadline = Date.now() + Number(timeout)
  }
  let json: MethodJson | null = null
  if (type.json) {
    const found = r.codecs.lookup(path)
    if (typeof found === 'string') {
      refuse(GrpcStatus.UNIMPLEMENTED, found, 415)
      return
    }
    json = found
  }
  let entries
  try {
    entries = headerEntries(req, r.options.maxMetadataSize)
  } catch (err) {
    if (!(err instanceof RequestHeaderError)) throw err
    refuse(err.message.includes('exceeds the limit') ? GrpcStatus.RESOURCE_EXHAUSTED : GrpcStatus.INVALID_ARGUMENT, err.message)
    return
  }
  const metadata = metadataOf(entries)
  metadata.setOpaque(REQUEST_KEY, r.request)
  const tracked = r.track()
  const exchange: HttpExchange = { req, res, body, env: environmentOf(req, r.options.maxSendMessageSize), onEnded: () => { tracked.ended(); r.server.untrack(tracked) } }
  const call = new ConnectCall(exchange, handler, metadata, deadline, r.limits, type, json)
  tracked.call = call
  r.request.log.debug({ method: path, httpMethod: req.method }, 'Connect call started')
  try {
    r.server.dispatcher.run(call, handler)
  } catch (err) {
    call.sendStatus({ code: GrpcStatus.INTERNAL, details: `Server interceptor threw: ${(err as Error).message}` })
  }
}

/** For JSON transcoders: a request that is not valid JSON for its message type. */
export function invalidJson (message: string): CallError {
  return new CallError(GrpcStatus.INVALID_ARGUMENT, `Invalid JSON request: ${message}`)
}

export type { RequestTranscoder }

// A repeated header counts as one value joined with ", " (and so is invalid).
function single (value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value
}
