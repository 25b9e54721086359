/**
 * From a CALL to a running handler: finds the method in the registry
 * server, wraps the WebSocket call in the server interceptors the same way
 * grpc-js does, and runs the handler through grpc-js's own dispatcher, or
 * hands the intercepted call to a call backend (a forwarded method, see
 * upstream/forward.ts), which needs none of grpc-js's call objects.
 */
import { Metadata, status as GrpcStatus, type Server, type ServerInterceptor, type ServerInterceptingCallInterface, type ServerMethodDefinition } from '@grpc/grpc-js'
import { lookupHandler, runHandler, type RegisteredHandler } from '../grpc-internals.js'
import { toGrpcMetadata } from '../grpc-metadata.js'
import type { MetadataEntry } from '../protocol/metadata.js'
import { RecentText } from '../protocol/recent-text.js'

// Transport-level keys grpc-js strips before a handler sees the metadata.
const strippedKeys = new Set(['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'])

/**
 * Request metadata as grpc-js would hand it to a handler. A client that sent
 * no `user-agent` is given the upgrade request's, as every HTTP/2 call has one.
 */
export function requestMetadata (entries: readonly MetadataEntry[], userAgent: string | undefined): Metadata {
  let kept = entries
  // A key repeated in a row is looked up once (a peer may send thousands).
  let last: string | null = null
  for (let i = 0; i < entries.length; i++) {
    const key = entries[i]![0]
    if (key === last) continue
    if (strippedKeys.has(key)) {
      kept = entries.filter(([k]) => !strippedKeys.has(k))
      break
    }
    last = key
  }
  const md = toGrpcMetadata(kept)
  if (userAgent !== undefined && md.get('user-agent').length === 0) md.set('user-agent', userAgent)
  return md
}

export class Dispatcher {
  private readonly descriptors = new Map<string, ServerMethodDefinition<unknown, unknown>>()
  /** The paths of methods called lately, for the CALLs of every connection (lib/protocol/recent-text.ts). */
  readonly paths = new RecentText(8, 256)

  constructor (private readonly registry: Server, private readonly interceptors: readonly ServerInterceptor[]) {}

  lookup (path: string): RegisteredHandler | undefined {
    return lookupHandler(this.registry, path)
  }

  run (base: ServerInterceptingCallInterface, handler: RegisteredHandler): void {
    let call = base
    if (this.interceptors.length > 0) {
      const descriptor = this.descriptor(handler)
      for (const interceptor of this.interceptors) call = interceptor(descriptor, call)
    }
    if (!runHandler(this.registry, call, handler)) {
      call.sendStatus({ code: GrpcStatus.INTERNAL, details: `Unknown handler type: ${String(handler.type)}` })
    }
  }

  // What grpc-js gives interceptors: built from the handler, no originalName.
  private descriptor (handler: RegisteredHandler): ServerMethodDefinition<unknown, unknown> {
    let d = this.descriptors.get(handler.path)
    if (d === undefined) {
      d = {
        path: handler.path,
        requestStream: handler.type === 'clientStream' || handler.type === 'bidi',
        responseStream: handler.type === 'serverStream' || handler.type === 'bidi',
        requestDeserialize: handler.deserialize,
        responseSerialize: handler.serialize
      }
      this.descriptors.set(handler.path, d)
    }
    return d
  }
}
