/**
 * What the HTTP protocols share about a request: its metadata, read from
 * the HTTP headers the way grpc-js reads HTTP/2 headers, and who is calling.
 */
import type { Metadata } from '@grpc/grpc-js'
import type { IncomingMessage } from 'node:http'
import { checkKey, checkValue, isBinaryKey, type MetadataEntry } from '../../protocol/metadata.js'
import type { CallEnvironment } from '../call-base.js'
import { requestMetadata } from '../dispatch.js'
import { decodeBinaryValue } from '../grpc-websockets/header-block.js'
import { authContextOf, connectionInfoOf, peerOf } from '../socket-info.js'

/**
 * Headers that are HTTP's or the protocol's, not the caller's metadata:
 * hop-by-hop and framing headers, what HTTP/2 carries as pseudo-headers
 * (host), the protocols' own keys, and what browsers add by themselves (a
 * WebSocket call does not see those either; `fastifyRequestOf(call)` has
 * them all).
 */
const httpKeys = new Set([
  'host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'content-length', 'expect',
  'accept', 'accept-language', 'cache-control', 'pragma', 'origin', 'referer', 'cookie', 'priority', 'dnt',
  'x-grpc-web', 'x-user-agent', 'connect-protocol-version', 'connect-timeout-ms', 'connect-content-encoding', 'connect-accept-encoding',
  'access-control-request-method', 'access-control-request-headers'
])

/** A header the caller cannot have meant as metadata, or that is malformed. */
export class RequestHeaderError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'RequestHeaderError'
  }
}

/**
 * The request headers as metadata entries: `-bin` values base64-decoded
 * (comma-separated values are separate entries), HTTP's own headers and
 * names that cannot be metadata keys left out. Throws RequestHeaderError
 * for a `-bin` value that is not base64 or a text value that is not
 * printable ASCII (grpc-js refuses both), and when the headers are larger
 * than `maxMetadataSize`.
 */
export function headerEntries (req: IncomingMessage, maxMetadataSize: number): MetadataEntry[] {
  const raw = req.rawHeaders
  let size = 0
  for (let i = 0; i < raw.length; i++) size += raw[i]!.length
  if (size > maxMetadataSize) throw new RequestHeaderError(`Request metadata of ${size} bytes exceeds the limit of ${maxMetadataSize}`)
  const entries: MetadataEntry[] = []
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (httpKeys.has(name) || name.startsWith('sec-') || checkKey(name) !== null) continue
    const value = raw[i + 1]!
    if (isBinaryKey(name)) {
      try {
        for (const bytes of decodeBinaryValue(name, value)) entries.push([name, bytes])
      } catch (err) {
        throw new RequestHeaderError((err as Error).message)
      }
    } else {
      const problem = checkValue(name, value)
      if (problem !== null) throw new RequestHeaderError(problem)
      entries.push([name, value])
    }
  }
  return entries
}

/** grpc-js Metadata for the handler (transport keys such as grpc-timeout stripped). */
export function metadataOf (entries: readonly MetadataEntry[]): Metadata {
  return requestMetadata(entries, undefined)
}

/** Who is calling, from the request's socket. */
export function environmentOf (req: IncomingMessage, maxSendMessageSize: number): CallEnvironment {
  const s = req.socket
  return {
    peer: peerOf(s),
    host: req.headers.host ?? '',
    authContext: authContextOf(s),
    connectionInfo: connectionInfoOf(s),
    maxSendMessageSize
  }
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType (contentType: string | undefined): string {
  if (contentType === undefined) return ''
  const semi = contentType.indexOf(';')
  return (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
}

/** Response headers from metadata entries: repeated keys as arrays, `-bin` values in base64. */
export function headersOf (entries: readonly MetadataEntry[], prefix = ''): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [key, value] of entries) {
    if (reservedResponseKeys.has(key)) continue
    const v = typeof value === 'string' ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64')
    const name = prefix + key
    const existing = out[name]
    if (existing === undefined) out[name] = v
    else if (Array.isArray(existing)) existing.push(v)
    else out[name] = [existing, v]
  }
  return out
}

// What a handler's metadata may not override in an HTTP response.
const reservedResponseKeys = new Set(['content-type', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'grpc-status', 'grpc-message', 'date'])

/**
 * `connection: close` for an HTTP/1.x answer sent before its request body
 * was received (a GET has none); HTTP/2 forbids the header.
 */
export function closeHeader (req: IncomingMessage): Record<string, string> {
  return req.httpVersionMajor < 2 && !req.complete ? { connection: 'close' } : {}
}
