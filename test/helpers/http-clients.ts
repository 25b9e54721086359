/**
 * Descriptors for the stock HTTP clients under test, built at run time from
 * the test proto's grpc-js definition (proto-loader keeps the file
 * descriptors): a Connect `DescService`, so connect-es clients need no
 * generated code.
 */
import * as pb from '@bufbuild/protobuf'
import * as wkt from '@bufbuild/protobuf/wkt'
import type { DescService } from '@bufbuild/protobuf'
import { fileRegistry } from '../../lib/server/http/json.js'
import { testDefinition } from './test-service.js'

const files = (testDefinition.Unary as unknown as { requestType: { fileDescriptorProtos: Uint8Array[] } }).requestType.fileDescriptorProtos
export const registry = fileRegistry(pb, wkt, files)
export const TestService: DescService = registry.getService('test.Test')!

// --- one interface over every stock HTTP client under test -------------------------------

import { ConnectError, createClient as createConnectClient, encodeBinaryHeader, type Transport as ConnectTransport } from '@connectrpc/connect'
import improbable from '@improbable-eng/grpc-web'
import { NodeHttpTransport } from '@improbable-eng/grpc-web-node-http-transport'
import * as grpcWeb from 'grpc-web'
import type * as grpcJs from '@grpc/grpc-js'
import { ClientError, FetchTransport, Metadata as NiceMetadata, createChannel, createClient as createNiceClient, type MethodDefinition } from 'nice-grpc-web'
// @ts-expect-error xhr2 has no types
import xhr2 from 'xhr2'
import type { Request, Response } from './test-service.js'

// The official client is XMLHttpRequest-based: xhr2 is Node's.
;(globalThis as { XMLHttpRequest?: unknown }).XMLHttpRequest ??= xhr2

export interface CallOpts {
  /** Request metadata; `-bin` keys take bytes. */
  metadata?: Record<string, string | Uint8Array>
  timeoutMs?: number
  signal?: AbortSignal
}

/** What a call ended with, the same shape for every client. */
export interface Outcome {
  code: number
  details: string
  messages: Response[]
  /** First value of each response header; `-bin` values as hex of the bytes. */
  headers: Record<string, string>
  trailers: Record<string, string>
}

export interface HttpClient {
  name: string
  unary (request: Request, o?: CallOpts): Promise<Outcome>
  serverStream (request: Request, o?: CallOpts): Promise<Outcome>
  /** Present for clients that stream request bodies. */
  clientStream?: (requests: Request[], o?: CallOpts) => Promise<Outcome>
  /** The largest request message the client can send unary, when it is bounded (a GET carries it in the URL). */
  maxUnaryRequest?: number
  /** Present for clients that do full-duplex bidi: sends each message once the previous answer arrived. */
  bidi?: (messages: string[]) => Promise<string[]>
  /** A declared method without an implementation, and one of an unknown service. */
  missing (): Promise<Outcome>
  unknownService (): Promise<Outcome>
}

const hexOf = (key: string, value: string | Uint8Array): string =>
  key.endsWith('-bin') ? Buffer.from(typeof value === 'string' ? Buffer.from(value, 'base64') : value).toString('hex') : String(value)

function normEntries (entries: Iterable<[string, string | Uint8Array]>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of entries) {
    const key = k.toLowerCase()
    if (out[key] === undefined) out[key] = hexOf(key, typeof v === 'string' && key.endsWith('-bin') ? v.split(',')[0]!.trim() : v)
  }
  return out
}

const headerPairs = (h: Headers): Array<[string, string]> => { const out: Array<[string, string]> = []; h.forEach((v, k) => { out.push([k, v]) }); return out }

const empty = (): Outcome => ({ code: 0, details: '', messages: [], headers: {}, trailers: {} })

// --- connect-es (connect-web's fetch transports, connect-node's) ---

export function connectClient (name: string, transport: ConnectTransport, { clientStreaming = false, bidi = false, maxUnaryRequest = undefined as number | undefined } = {}): HttpClient {
  const client: any = createConnectClient(TestService, transport)
  const path = (method: string): any => ({ ...TestService.method[method], name: 'Nope', parent: { ...TestService, typeName: 'test.Nope' } })
  const run = async (o: CallOpts, fn: (options: object, out: Outcome) => Promise<void>): Promise<Outcome> => {
    const out = empty()
    const headers = new Headers()
    for (const [k, v] of Object.entries(o.metadata ?? {})) headers.append(k, typeof v === 'string' ? v : encodeBinaryHeader(v))
    const options = {
      headers,
      timeoutMs: o.timeoutMs,
      signal: o.signal,
      onHeader: (h: Headers) => { out.headers = normEntries(headerPairs(h)) },
      onTrailer: (h: Headers) => { out.trailers = normEntries(headerPairs(h)) }
    }
    try {
      await fn(options, out)
    } catch (err) {
      const e = ConnectError.from(err)
      out.code = e.code
      out.details = e.rawMessage
      out.trailers = normEntries(headerPairs(e.metadata))
    }
    return out
  }
  const toResponse = (m: any): Response => ({ message: m.message, payload: Buffer.from(m.payload) })
  const c: HttpClient = {
    name,
    maxUnaryRequest,
    unary: async (request, o = {}) => await run(o, async (options, out) => { out.messages.push(toResponse(await client.unary(request, options))) }),
    serverStream: async (request, o = {}) => await run(o, async (options, out) => { for await (const m of client.serverStream(request, options)) out.messages.push(toResponse(m)) }),
    missing: async () => await run({}, async (options, out) => { out.messages.push(toResponse(await client.missing({}, options))) }),
    unknownService: async () => await run({}, async (options, out) => {
      const other: any = createConnectClient({ ...TestService, typeName: 'test.Nope', method: { unary: path('unary') }, methods: [path('unary')] } as any, transport)
      out.messages.push(toResponse(await other.unary({}, options)))
    })
  }
  if (bidi) {
    c.bidi = async messages => {
      // The next request waits for the previous answer: only a full-duplex call gets through.
      let answered = (): void => {}
      const requests = async function * (): AsyncGenerator<Request> {
        for (const message of messages) {
          const next = new Promise<void>(resolve => { answered = resolve })
          yield { message }
          await next
        }
      }
      const replies: string[] = []
      for await (const m of client.bidi(requests())) {
        replies.push(m.message)
        answered()
      }
      return replies
    }
  }
  if (clientStreaming) {
    c.clientStream = async (requests, o = {}) => await run(o, async (options, out) => {
      out.messages.push(toResponse(await client.clientStream((async function * () { yield * requests })(), options)))
    })
  }
  return c
}

// --- the official grpc-web client (XHR), no generated code ---

export function officialClient (base: string, format: 'text' | 'binary'): HttpClient {
  const client = new grpcWeb.GrpcWebClientBase({ format })
  const descriptor = (method: string, type: string, definition: grpcJs.MethodDefinition<any, any>): any =>
    new grpcWeb.MethodDescriptor(method, type, Object as any, Object as any,
      (req: Request) => definition.requestSerialize(req),
      (bytes: Uint8Array) => definition.responseDeserialize(Buffer.from(bytes)))
  const metadataOf = (o: CallOpts): grpcWeb.Metadata => {
    const md: grpcWeb.Metadata = {}
    for (const [k, v] of Object.entries(o.metadata ?? {})) md[k] = typeof v === 'string' ? v : Buffer.from(v).toString('base64')
    if (o.timeoutMs !== undefined) md.deadline = String(Date.now() + o.timeoutMs)
    return md
  }
  const call = (path: string, request: Request, o: CallOpts, streaming: boolean): Promise<Outcome> => new Promise(resolve => {
    const out = empty()
    let done = false
    const finish = (code: number, details: string): void => {
      if (done) return
      done = true
      out.code = code
      out.details = details
      // The status event (with the trailers) may follow the callback.
      setTimeout(() => { resolve(out) }, 20)
    }
    let stream: grpcWeb.ClientReadableStream<Response>
    if (streaming) {
      // The client takes the method's path from its descriptor, not from the URL.
      stream = client.serverStreaming(base + path, request, metadataOf(o), descriptor(path, 'server_streaming', testDefinition.ServerStream!))
      stream.on('data', m => { out.messages.push(m) })
      stream.on('end', () => { finish(0, '') })
    } else {
      stream = client.rpcCall(base + path, request, metadataOf(o), descriptor(path, 'unary', testDefinition.Unary!), (err, m) => {
        if (err === null || err === undefined) {
          out.messages.push(m)
          finish(0, '')
        } else {
          finish(err.code, err.message)
        }
      })
    }
    stream.on('metadata', h => { out.headers = normEntries(Object.entries(h)) })
    stream.on('status', s => { out.trailers = normEntries(Object.entries(s.metadata ?? {})) })
    stream.on('error', e => { finish(e.code, e.message) })
    o.signal?.addEventListener('abort', () => {
      stream.cancel()
      finish(1, 'cancelled by the client')
    })
  })
  return {
    name: `grpc-web ${format}`,
    unary: async (request, o = {}) => await call('/test.Test/Unary', request, o, false),
    serverStream: async (request, o = {}) => await call('/test.Test/ServerStream', request, o, true),
    missing: async () => await call('/test.Test/Missing', {}, {}, false),
    unknownService: async () => await call('/test.Nope/Unary', {}, {}, false)
  }
}

// --- @improbable-eng/grpc-web with its Node HTTP transport or its CrossBrowserHttpTransport, hand-made message classes ---

const { grpc } = improbable

class RequestMessage {
  constructor (readonly value: Request = {}) {}
  toObject (): Request { return this.value }
  serializeBinary (): Uint8Array { return testDefinition.Unary!.requestSerialize(this.value) }
  static deserializeBinary (bytes: Uint8Array): RequestMessage { return new RequestMessage(testDefinition.Unary!.requestDeserialize(Buffer.from(bytes))) }
}

class ResponseMessage {
  constructor (readonly value: Response = { message: '', payload: Buffer.alloc(0) }) {}
  toObject (): Response { return this.value }
  serializeBinary (): Uint8Array { return testDefinition.Unary!.responseSerialize(this.value) }
  static deserializeBinary (bytes: Uint8Array): ResponseMessage { return new ResponseMessage(testDefinition.Unary!.responseDeserialize(Buffer.from(bytes))) }
}

const improbableMethod = (serviceName: string, methodName: string, responseStream: boolean): any =>
  ({ methodName, service: { serviceName }, requestStream: false, responseStream, requestType: RequestMessage, responseType: ResponseMessage })

/**
 * `'cross-browser'`: the transport improbable picks for browsers, which in
 * Node 20 (a Response with a body stream, Headers) is its fetch transport
 * (FetchReadableStreamTransport).
 */
export function improbableClient (base: string, kind: 'node' | 'cross-browser' = 'node'): HttpClient {
  // Its fetch transport reads `self.AbortController`: a browser's global, which Node 20 lacks.
  if (kind === 'cross-browser') (globalThis as { self?: unknown }).self ??= globalThis
  const transport = kind === 'node' ? NodeHttpTransport() : grpc.CrossBrowserHttpTransport({ withCredentials: false })
  const call = (method: any, request: Request, o: CallOpts = {}): Promise<Outcome> => new Promise(resolve => {
    const out = empty()
    const md: Record<string, string> = {}
    for (const [k, v] of Object.entries(o.metadata ?? {})) md[k] = typeof v === 'string' ? v : Buffer.from(v).toString('base64')
    if (o.timeoutMs !== undefined) md['grpc-timeout'] = `${o.timeoutMs}m`
    const metaOf = (m: InstanceType<typeof grpc.Metadata>): Record<string, string> => {
      const entries: Array<[string, string]> = []
      m.forEach((key, values) => { for (const v of values) entries.push([key, v]) })
      return normEntries(entries)
    }
    const request$ = grpc.invoke(method, {
      request: new RequestMessage(request),
      host: base,
      metadata: md,
      transport,
      onHeaders: h => { out.headers = metaOf(h) },
      onMessage: (m: any) => { out.messages.push(m.value) },
      onEnd: (code, message, trailers) => {
        out.code = code
        out.details = message
        out.trailers = metaOf(trailers)
        resolve(out)
      }
    })
    o.signal?.addEventListener('abort', () => {
      request$.close()
      out.code = 1
      out.details = 'cancelled by the client'
      resolve(out)
    })
  })
  return {
    name: kind === 'node' ? 'improbable NodeHttpTransport' : 'improbable CrossBrowserHttpTransport',
    unary: async (request, o) => await call(improbableMethod('test.Test', 'Unary', false), request, o),
    serverStream: async (request, o) => await call(improbableMethod('test.Test', 'ServerStream', true), request, o),
    missing: async () => await call(improbableMethod('test.Test', 'Missing', false), {}),
    unknownService: async () => await call(improbableMethod('test.Nope', 'Unary', false), {})
  }
}

// --- nice-grpc-web's FetchTransport, given the grpc-js definition ---

function niceMethod<RS extends boolean, SS extends boolean> (method: grpcJs.MethodDefinition<Request, Response>, requestStream: RS, responseStream: SS, path = method.path): MethodDefinition<Request, Request, Response, Response, RS, SS> {
  return {
    path,
    requestStream,
    responseStream,
    requestSerialize: value => method.requestSerialize(value),
    requestDeserialize: bytes => method.requestDeserialize(Buffer.from(bytes)),
    responseSerialize: value => method.responseSerialize(value),
    responseDeserialize: bytes => method.responseDeserialize(Buffer.from(bytes)),
    options: {}
  }
}

export function niceClient (base: string): HttpClient {
  const client = createNiceClient({
    unary: niceMethod(testDefinition.Unary!, false, false),
    serverStream: niceMethod(testDefinition.ServerStream!, false, true),
    clientStream: niceMethod(testDefinition.ClientStream!, true, false),
    missing: niceMethod(testDefinition.Missing!, false, false),
    nope: niceMethod(testDefinition.Unary!, false, false, '/test.Nope/Unary')
  }, createChannel(base, FetchTransport()))
  const run = async (o: CallOpts, fn: (options: object, out: Outcome) => Promise<void>): Promise<Outcome> => {
    const out = empty()
    const metadata = new NiceMetadata()
    for (const [k, v] of Object.entries(o.metadata ?? {})) metadata.set(k, v as any)
    if (o.timeoutMs !== undefined) metadata.set('grpc-timeout', `${o.timeoutMs}m`)
    const entriesOf = (m: InstanceType<typeof NiceMetadata>): Record<string, string> => {
      const entries: Array<[string, string | Uint8Array]> = []
      for (const [k, vs] of m) for (const v of vs) entries.push([k, v])
      return normEntries(entries)
    }
    try {
      await fn({ metadata, signal: o.signal, onHeader: (h: any) => { out.headers = entriesOf(h) }, onTrailer: (h: any) => { out.trailers = entriesOf(h) } }, out)
    } catch (err) {
      if (err instanceof ClientError) {
        out.code = err.code
        out.details = err.details
      } else if ((err as Error).name === 'AbortError') {
        out.code = 1
        out.details = 'cancelled by the client'
      } else {
        throw err
      }
    }
    return out
  }
  return {
    name: 'nice-grpc-web FetchTransport',
    unary: async (request, o = {}) => await run(o, async (options, out) => { out.messages.push(await client.unary(request, options)) }),
    serverStream: async (request, o = {}) => await run(o, async (options, out) => { for await (const m of client.serverStream(request, options)) out.messages.push(m) }),
    clientStream: async (requests, o = {}) => await run(o, async (options, out) => { out.messages.push(await client.clientStream((async function * () { yield * requests })(), options)) }),
    missing: async () => await run({}, async (options, out) => { out.messages.push(await client.missing({}, options)) }),
    unknownService: async () => await run({}, async (options, out) => { out.messages.push(await client.nope({}, options)) })
  }
}
