/**
 * The Connect protocol's unary GET (connectrpc.com/docs/protocol,
 * Unary-Get-Request), for unary methods whose definition marks them
 * `idempotency_level = NO_SIDE_EFFECTS`:
 *
 *   GET <prefix>/<pkg.Service>/<Method>?connect=v1&encoding=proto&base64=1&message=<base64url>
 *
 * `encoding` is `proto` or `json` (else HTTP 415); `message` is the request
 * message, URL-safe base64 with `base64=1` (padding optional; standard
 * base64 taken too), else percent-encoded; `connect`, if sent, must be `v1`;
 * `compression`, if sent, must be `identity` (nothing else is served);
 * parameters come in any order and unknown ones are ignored. Timeouts and
 * metadata are headers, as for POST. The answer is the unary POST answer.
 * A GET for a method that takes POST only is HTTP 405 (`Allow: POST`).
 */
import { status as GrpcStatus } from '@grpc/grpc-js'
import { Readable } from 'node:stream'
import { refuseConnect, serveConnectMethod, type ConnectRequest, type ConnectType } from './connect.js'

/** A parse failure of the query: the Connect code and HTTP status to answer with. */
export interface QueryError { code: number, details: string, httpStatus?: number }

/** What a GET's query holds: the codec and the request message's bytes. */
export interface GetMessage { type: ConnectType, message: Buffer }

/**
 * The raw (still percent-encoded) value of each parameter of a query
 * string, the first of repeated ones.
 */
export function queryParams (query: string): Map<string, string> {
  const params = new Map<string, string>()
  if (query === '') return params
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=')
    const rawKey = eq === -1 ? pair : pair.slice(0, eq)
    const key = percentDecode(rawKey)?.toString('utf8')
    if (key === undefined || params.has(key)) continue
    params.set(key, eq === -1 ? '' : pair.slice(eq + 1))
  }
  return params
}

/**
 * Form-style percent-decoding to bytes (`+` is a space, as URLSearchParams
 * and connect-go read it); null for a `%` not followed by two hex digits.
 */
export function percentDecode (text: string): Buffer | null {
  if (!text.includes('%') && !text.includes('+')) return Buffer.from(text, 'utf8')
  const parts: Buffer[] = []
  let plain = ''
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!
    if (c === '+') plain += ' '
    else if (c !== '%') plain += c
    else {
      const hex = text.slice(i + 1, i + 3)
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return null
      if (plain !== '') parts.push(Buffer.from(plain, 'utf8'))
      plain = ''
      parts.push(Buffer.from([parseInt(hex, 16)]))
      i += 2
    }
  }
  if (plain !== '') parts.push(Buffer.from(plain, 'utf8'))
  return Buffer.concat(parts)
}

const base64Text = /^[A-Za-z0-9\-_+/]*={0,2}$/

/** Reads the codec and the message of a GET's query, or says what is wrong with it. */
export function readGetQuery (params: Map<string, string>): GetMessage | QueryError {
  const encoding = params.get('encoding')
  const type: ConnectType | null = encoding === 'proto' ? { stream: false, json: false } : encoding === 'json' ? { stream: false, json: true } : null
  if (type === null) {
    // The protocol's answer to a codec the server does not serve.
    return { code: GrpcStatus.UNIMPLEMENTED, details: `A Connect GET needs encoding=proto or encoding=json: got ${encoding === undefined ? 'none' : `"${encoding}"`}`, httpStatus: 415 }
  }
  const version = params.get('connect')
  if (version !== undefined && version !== 'v1') return { code: GrpcStatus.INVALID_ARGUMENT, details: `connect must be "v1": got "${version}"` }
  const compression = params.get('compression')
  if (compression !== undefined && compression !== 'identity') {
    return { code: GrpcStatus.UNIMPLEMENTED, details: `compression "${compression}" is not supported: supported: identity` }
  }
  const raw = params.get('message')
  if (raw === undefined) return { code: GrpcStatus.INVALID_ARGUMENT, details: 'A Connect GET needs the request message in the message parameter' }
  const decoded = percentDecode(raw)
  if (decoded === null) return { code: GrpcStatus.INVALID_ARGUMENT, details: 'The message parameter is not valid percent-encoding' }
  if (params.get('base64') !== '1') return { type, message: decoded }
  const text = decoded.toString('latin1')
  // Node's base64 decoder skips what is not base64: check first.
  if (!base64Text.test(text) || text.replace(/=+$/, '').length % 4 === 1) {
    return { code: GrpcStatus.INVALID_ARGUMENT, details: 'The message parameter is not valid base64 (base64=1)' }
  }
  return { type, message: Buffer.from(text, 'base64') }
}

export type ConnectGetRequest = Omit<ConnectRequest, 'body' | 'type'> & {
  /** Whether the method's definition marks it free of side effects. */
  noSideEffects: boolean
}

/** Serves one Connect GET (the route has checked the origin and that the path is one the server knows, or that the query asks for Connect). */
export function serveConnectGet (r: ConnectGetRequest): void {
  const { req, res, path } = r
  const url = req.url ?? ''
  const q = url.indexOf('?')
  const params = queryParams(q === -1 ? '' : url.slice(q + 1))
  const refuse = (code: number, details: string, httpStatus: number | undefined, headers: Record<string, string> = {}): void => {
    refuseConnect(req, res, null, { stream: false, json: false }, code, details, httpStatus, headers)
  }
  const handler = r.server.dispatcher.lookup(path)
  if (handler === undefined) {
    refuse(GrpcStatus.UNIMPLEMENTED, `The server does not implement the method ${path}`, undefined)
    return
  }
  if (handler.type !== 'unary' || !r.noSideEffects) {
    const why = handler.type !== 'unary'
      ? `${path} is a ${handler.type} method: GET serves unary methods only`
      : `${path} is not marked free of side effects (option idempotency_level = NO_SIDE_EFFECTS): call it with POST`
    refuse(GrpcStatus.UNIMPLEMENTED, why, 405, { allow: 'POST' })
    return
  }
  const read = readGetQuery(params)
  if (!('message' in read)) {
    refuse(read.code, read.details, read.httpStatus)
    return
  }
  serveConnectMethod({ ...r, type: read.type, body: Readable.from(read.message.byteLength > 0 ? [read.message] : []) }, handler)
}
