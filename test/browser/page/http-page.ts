/**
 * The page test/browser/http.test.ts loads: stock HTTP clients, unmodified,
 * bundled by esbuild for the browser: connect-web's gRPC-Web and Connect
 * transports (binary and JSON, and Connect with GET for the side-effect-free
 * unary method) and the official grpc-web client (XHR) in
 * text and binary mode, calling the test service on the plugin's HTTP
 * routes, at the page's own origin or (for the CORS scenario) another one.
 *
 * No generated code: the Connect DescService is built from the file
 * descriptors of the test proto (the 'test-files' virtual module, base64),
 * and grpc-web's messages are encoded with protobufjs/light from a JSON
 * descriptor ('test-descriptor').
 */
import { create, createFileRegistry, fromBinary } from '@bufbuild/protobuf'
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt'
import { ConnectError, createClient, encodeBinaryHeader, type Transport } from '@connectrpc/connect'
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-web'
import improbable from '@improbable-eng/grpc-web'
import * as grpcWeb from 'grpc-web'
import { ClientError, FetchTransport, Metadata as NiceMetadata, createChannel, createClient as createNiceClient } from 'nice-grpc-web'
import files from 'test-files'
import { RequestMessage, RequestType, ResponseType, improbableMethod, niceMethod, type Request, type Response } from './test-messages.js'

const fromBase64 = (text: string): Uint8Array => Uint8Array.from(atob(text), c => c.charCodeAt(0))
const hex = (bytes: Uint8Array): string => [...bytes].map(b => b.toString(16).padStart(2, '0')).join('')

// proto-loader leaves json_name out; protoc would fill it in (see lib/server/http/json.ts).
const protos = (files as string[]).map(b => fromBinary(FileDescriptorProtoSchema, fromBase64(b)))
for (const file of protos) for (const m of file.messageType) for (const f of m.field) if (f.jsonName === '') f.jsonName = f.name.replace(/_+(.?)/g, (_, c: string) => c.toUpperCase())
const TestService = createFileRegistry(create(FileDescriptorSetSchema, { file: protos })).getService('test.Test')!


export interface Summary {
  unary: { message: string, payload: string }
  stream: string[]
  status: { code: number, message: string }
  handlerMetadata: Record<string, unknown>
  trailer: string | null
  headerBin: string | null
  deadline: number
}

async function connectScenarios (transport: Transport, nonAscii: string, id: string): Promise<Summary> {
  const client: any = createClient(TestService, transport)
  const unary = await client.unary({ mode: 'echo', message: 'from the page', payload: new Uint8Array([0, 1, 255]) })
  const stream: string[] = []
  for await (const m of client.serverStream({ mode: 'count', count: 3 })) stream.push(m.message)
  let status = { code: 0, message: '' }
  try {
    await client.unary({ mode: 'status', code: 5, details: nonAscii })
  } catch (err) {
    const e = ConnectError.from(err)
    status = { code: e.code, message: e.rawMessage }
  }
  const headers = new Headers({ 'x-text': 'from the page', 'x-data-bin': encodeBinaryHeader(new Uint8Array([0, 1, 254, 255])) })
  const info = await client.unary({ mode: 'info' }, { headers })
  let trailer: string | null = null
  await client.unary({ mode: 'trailers' }, { onTrailer: (h: Headers) => { trailer = h.get('x-trailer') } })
  let headerBin: string | null = null
  await client.unary({ mode: 'headers' }, { onHeader: (h: Headers) => { headerBin = h.get('x-header-bin') } })
  let deadline = 0
  try {
    await client.unary({ mode: 'never', id }, { timeoutMs: 200 })
  } catch (err) {
    deadline = ConnectError.from(err).code
  }
  return { unary: { message: unary.message, payload: hex(unary.payload) }, stream, status, handlerMetadata: JSON.parse(info.message).metadata, trailer, headerBin, deadline }
}

function officialScenarios (format: 'text' | 'binary', nonAscii: string, id: string): Promise<Summary> {
  const client = new grpcWeb.GrpcWebClientBase({ format })
  const base = `${location.origin}/grpc`
  const method = (path: string, type: string): any => new grpcWeb.MethodDescriptor(path, type, Object as any, Object as any,
    (r: object) => RequestType.encode(RequestType.fromObject(r)).finish(),
    (b: Uint8Array) => ResponseType.toObject(ResponseType.decode(b), { defaults: true }))
  const unary = (request: object, metadata: grpcWeb.Metadata = {}): Promise<{ err: grpcWeb.RpcError | null, value: any, headers: grpcWeb.Metadata, trailers: grpcWeb.Metadata }> => new Promise(resolve => {
    let headers: grpcWeb.Metadata = {}
    let trailers: grpcWeb.Metadata = {}
    const call = client.rpcCall(`${base}/test.Test/Unary`, request, metadata, method('/test.Test/Unary', 'unary'), (err, value) => {
      setTimeout(() => { resolve({ err: err ?? null, value, headers, trailers }) }, 20)
    })
    call.on('metadata', h => { headers = h })
    call.on('status', s => { trailers = s.metadata ?? {} })
  })
  return (async () => {
    const echoed = await unary({ mode: 'echo', message: 'from the page', payload: new Uint8Array([0, 1, 255]) })
    const stream = await new Promise<string[]>((resolve, reject) => {
      const got: string[] = []
      const s = client.serverStreaming(`${base}/test.Test/ServerStream`, { mode: 'count', count: 3 }, {}, method('/test.Test/ServerStream', 'server_streaming'))
      s.on('data', (m: any) => got.push(m.message))
      s.on('end', () => { resolve(got) })
      s.on('error', reject)
    })
    const failed = await unary({ mode: 'status', code: 5, details: nonAscii })
    const info = await unary({ mode: 'info' }, { 'x-text': 'from the page', 'x-data-bin': btoa(String.fromCharCode(0, 1, 254, 255)) })
    const trailers = await unary({ mode: 'trailers' })
    const headers = await unary({ mode: 'headers' })
    const late = await unary({ mode: 'never', id }, { deadline: String(Date.now() + 200) })
    return {
      unary: { message: echoed.value.message, payload: hex(echoed.value.payload) },
      stream,
      status: { code: failed.err?.code ?? 0, message: failed.err?.message ?? '' },
      handlerMetadata: JSON.parse(info.value.message).metadata,
      trailer: trailers.trailers['x-trailer'] ?? null,
      headerBin: headers.headers['x-header-bin'] ?? null,
      deadline: late.err?.code ?? 0
    }
  })()
}

// --- @improbable-eng/grpc-web's CrossBrowserHttpTransport (fetch in Chromium) ---

async function improbableScenarios (nonAscii: string, id: string): Promise<Summary> {
  const { grpc } = improbable
  type Md = InstanceType<typeof grpc.Metadata>
  const call = (method: ReturnType<typeof improbableMethod>, request: Request, metadata: Record<string, string> = {}): Promise<{ code: number, message: string, headers: Md | null, trailers: Md | null, messages: Response[] }> => new Promise(resolve => {
    let headers: Md | null = null
    const messages: Response[] = []
    grpc.invoke(method, {
      host: `${location.origin}/grpc`,
      transport: grpc.CrossBrowserHttpTransport({ withCredentials: false }),
      request: new RequestMessage(request),
      metadata,
      onHeaders: h => { headers = h },
      onMessage: (m: any) => { messages.push(m.value) },
      onEnd: (code, message, trailers) => { resolve({ code, message, headers, trailers, messages }) }
    })
  })
  const Unary = improbableMethod('Unary', false, false)
  const echoed = await call(Unary, { mode: 'echo', message: 'from the page', payload: new Uint8Array([0, 1, 255]) })
  const stream = await call(improbableMethod('ServerStream', false, true), { mode: 'count', count: 3 })
  const failed = await call(Unary, { mode: 'status', code: 5, details: nonAscii })
  // Its metadata holds strings: a -bin value goes as base64 text.
  const info = await call(Unary, { mode: 'info' }, { 'x-text': 'from the page', 'x-data-bin': btoa(String.fromCharCode(0, 1, 254, 255)) })
  const trailers = await call(Unary, { mode: 'trailers' })
  const headers = await call(Unary, { mode: 'headers' })
  const late = await call(Unary, { mode: 'never', id }, { 'grpc-timeout': '200m' })
  return {
    unary: { message: echoed.messages[0]!.message, payload: hex(echoed.messages[0]!.payload) },
    stream: stream.messages.map(m => m.message),
    status: { code: failed.code, message: failed.message },
    handlerMetadata: JSON.parse(info.messages[0]!.message).metadata,
    trailer: trailers.trailers?.get('x-trailer')[0] ?? null,
    headerBin: headers.headers?.get('x-header-bin')[0] ?? null,
    deadline: late.code
  }
}

// --- nice-grpc-web's FetchTransport ---

async function niceScenarios (nonAscii: string, id: string): Promise<Summary> {
  const client = createNiceClient({ unary: niceMethod('Unary', false, false), serverStream: niceMethod('ServerStream', false, true) }, createChannel(`${location.origin}/grpc`, FetchTransport()))
  const echoed = await client.unary({ mode: 'echo', message: 'from the page', payload: new Uint8Array([0, 1, 255]) })
  const stream: string[] = []
  for await (const m of client.serverStream({ mode: 'count', count: 3 })) stream.push(m.message)
  const failure = async (fn: () => Promise<unknown>): Promise<{ code: number, message: string }> => {
    try {
      await fn()
      return { code: 0, message: '' }
    } catch (err) {
      if (err instanceof ClientError) return { code: err.code, message: err.details }
      throw err
    }
  }
  const status = await failure(async () => await client.unary({ mode: 'status', code: 5, details: nonAscii }))
  const info = await client.unary({ mode: 'info' }, { metadata: new NiceMetadata({ 'x-text': 'from the page', 'x-data-bin': new Uint8Array([0, 1, 254, 255]) }) })
  let trailer: string | null = null
  await client.unary({ mode: 'trailers' }, { onTrailer: (m: NiceMetadata) => { trailer = m.get('x-trailer') ?? null } })
  let headerBin: string | null = null
  // It decodes -bin values to bytes: back to base64, as the other clients give them.
  await client.unary({ mode: 'headers' }, { onHeader: (m: NiceMetadata) => { const v = m.get('x-header-bin'); headerBin = v === undefined ? null : btoa(String.fromCharCode(...v)) } })
  const deadline = await failure(async () => await client.unary({ mode: 'never', id }, { metadata: new NiceMetadata({ 'grpc-timeout': '200m' }) }))
  return { unary: { message: echoed.message, payload: hex(echoed.payload) }, stream, status, handlerMetadata: JSON.parse(info.message).metadata, trailer, headerBin, deadline: deadline.code }
}

const scenarios = {
  improbableCrossBrowser: async (nonAscii: string, id: string) => await improbableScenarios(nonAscii, id),
  niceFetch: async (nonAscii: string, id: string) => await niceScenarios(nonAscii, id),
  grpcWeb: async (nonAscii: string, id: string) => await connectScenarios(createGrpcWebTransport({ baseUrl: `${location.origin}/grpc` }), nonAscii, id),
  connectBinary: async (nonAscii: string, id: string) => await connectScenarios(createConnectTransport({ baseUrl: `${location.origin}/grpc`, useBinaryFormat: true }), nonAscii, id),
  connectJson: async (nonAscii: string, id: string) => await connectScenarios(createConnectTransport({ baseUrl: `${location.origin}/grpc` }), nonAscii, id),
  // Unary calls as GET (test.Test/Unary is marked NO_SIDE_EFFECTS); server streaming stays POST.
  connectGetBinary: async (nonAscii: string, id: string) => await connectScenarios(createConnectTransport({ baseUrl: `${location.origin}/grpc`, useBinaryFormat: true, useHttpGet: true }), nonAscii, id),
  connectGetJson: async (nonAscii: string, id: string) => await connectScenarios(createConnectTransport({ baseUrl: `${location.origin}/grpc`, useHttpGet: true }), nonAscii, id),
  officialText: async (nonAscii: string, id: string) => await officialScenarios('text', nonAscii, id),
  officialBinary: async (nonAscii: string, id: string) => await officialScenarios('binary', nonAscii, id),
  /** From this page's origin to another: a call with metadata, a response header read. */
  crossOrigin: async (baseUrl: string, get = false) => {
    const client: any = createClient(TestService, get ? createConnectTransport({ baseUrl, useHttpGet: true }) : createGrpcWebTransport({ baseUrl }))
    try {
      let header: string | null = null
      const info = await client.unary({ mode: 'headers' }, { headers: { 'x-text': 'cross' }, onHeader: (h: Headers) => { header = h.get('x-header-text') } })
      return { ok: true, message: info.message, header }
    } catch (err) {
      const e = ConnectError.from(err)
      return { ok: false, code: e.code, message: e.rawMessage, header: null }
    }
  }
}

export type Scenarios = typeof scenarios
;(globalThis as { scenarios?: Scenarios }).scenarios = scenarios
