/**
 * The page test/browser/grpc-websockets.test.ts loads: the two existing
 * `grpc-websockets` clients, unmodified, bundled by esbuild for the browser,
 * calling the test service through the plugin's compatibility route on the
 * page's own origin (ws://127.0.0.1:<port>/grpc/test.Test/<Method>). Each
 * scenario returns plain data (bytes as hex) for the Node side to assert on.
 *
 * grpc-js and proto-loader are Node-only, so the messages are encoded
 * with protobufjs/light from a JSON descriptor of test/fixtures/test.proto
 * (the 'test-descriptor' virtual module the test provides; test-messages.ts).
 */
import improbable from '@improbable-eng/grpc-web'
import { ClientError, Metadata, WebsocketTransport, createChannel, createClient } from 'nice-grpc-web'
import { bounded } from '../../helpers/bounded.js'
import { lockstepBidi } from '../../helpers/lockstep.js'
import { RequestMessage, ResponseMessage, encodeRequest, improbableMethod, niceMethod, type ImprobableMethod, type Request, type Response } from './test-messages.js'

const { grpc } = improbable
type ImprobableMetadata = InstanceType<typeof grpc.Metadata>

const BASE = `${location.origin}/grpc`

const hex = (bytes: Uint8Array): string => [...bytes].map(b => b.toString(16).padStart(2, '0')).join('')
const fromBase64 = (text: string): Uint8Array => Uint8Array.from(atob(text), c => c.charCodeAt(0))
const toBase64 = (bytes: Uint8Array): string => btoa(String.fromCharCode(...bytes))
const wait = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

/** Every wait in the page is bounded too, so a hang reports which call hung. */

// --- @improbable-eng/grpc-web: hand-built "generated" message classes and descriptors (test-messages.ts) -----

const method = improbableMethod
type Method = ImprobableMethod

const Test = {
  Unary: method('Unary', false, false),
  ServerStream: method('ServerStream', false, true),
  ClientStream: method('ClientStream', true, false),
  Bidi: method('Bidi', true, true)
}

interface ImprobableResult { code: number, message: string, headers: Record<string, string[]>, trailers: Record<string, string[]>, messages: Array<{ message: string, payload: string }> }

const plainMetadata = (md: ImprobableMetadata | null): Record<string, string[]> => {
  const out: Record<string, string[]> = {}
  md?.forEach((key, values) => { out[key] = values })
  return out
}
const plainResponse = (r: Response): { message: string, payload: string } => ({ message: r.message, payload: hex(r.payload) })

/** grpc.invoke: a single request (unary and server streaming). */
async function improbableInvoke (m: Method, request: Request, metadata?: Record<string, string | string[]>): Promise<ImprobableResult> {
  return await bounded(`improbable invoke ${m.methodName}`, new Promise(resolve => {
    let headers: ImprobableMetadata | null = null
    const messages: Response[] = []
    grpc.invoke(m, {
      host: BASE,
      transport: grpc.WebsocketTransport(),
      request: new RequestMessage(request),
      metadata,
      onHeaders: h => { headers = h },
      onMessage: (r: ResponseMessage) => { messages.push(r.value) },
      onEnd: (code, message, trailers) => {
        resolve({ code, message, headers: plainMetadata(headers), trailers: plainMetadata(trailers), messages: messages.map(plainResponse) })
      }
    })
  }))
}

/**
 * grpc.client (any kind of call; grpc.invoke refuses client-streaming
 * methods). `drive` sends the requests once the call has started.
 */
async function improbableClient (m: Method, drive: (client: ReturnType<typeof grpc.client<RequestMessage, ResponseMessage, Method>>, messages: Response[]) => void): Promise<ImprobableResult> {
  return await bounded(`improbable client ${m.methodName}`, new Promise(resolve => {
    const client = grpc.client<RequestMessage, ResponseMessage, Method>(m, { host: BASE, transport: grpc.WebsocketTransport() })
    let headers: ImprobableMetadata | null = null
    const messages: Response[] = []
    client.onHeaders(h => { headers = h })
    client.onMessage(r => { messages.push(r.value) })
    client.onEnd((code, message, trailers) => {
      resolve({ code, message, headers: plainMetadata(headers), trailers: plainMetadata(trailers), messages: messages.map(plainResponse) })
    })
    client.start()
    drive(client, messages)
  }))
}

// --- nice-grpc-web: a generic definition over the same protobufjs types -------------------

const nice = createClient({
  unary: niceMethod('Unary', false, false),
  serverStream: niceMethod('ServerStream', false, true),
  clientStream: niceMethod('ClientStream', true, false),
  bidi: niceMethod('Bidi', true, true)
}, createChannel(BASE, WebsocketTransport()))

const plainNiceMetadata = (md: Metadata | undefined): Record<string, string[]> => {
  const out: Record<string, string[]> = {}
  for (const [key, values] of md ?? []) out[key] = values.map(v => typeof v === 'string' ? v : `bin:${hex(v)}`)
  return out
}

/** How a nice-grpc-web call failed: a ClientError's status, or another error's name. */
async function niceFailure (call: () => Promise<unknown>): Promise<{ kind: string, code?: number, details?: string, name?: string }> {
  try {
    await bounded('nice-grpc-web call', call())
    return { kind: 'succeeded' }
  } catch (err) {
    if (err instanceof ClientError) return { kind: 'ClientError', code: err.code, details: err.details }
    return { kind: 'other', name: (err as Error).name, details: (err as Error).message }
  }
}

async function collect<T> (iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}

const scenarios = {
  // --- improbable -------------------------------------------------------------------------

  async improbableKinds () {
    const unary = await improbableInvoke(Test.Unary, { mode: 'echo', message: 'from the browser', payload: new Uint8Array([0, 1, 255]) })
    const serverStream = await improbableInvoke(Test.ServerStream, { mode: 'count', count: 5, size: 2 })
    const clientStream = await improbableClient(Test.ClientStream, client => {
      for (const message of ['a', 'b', 'c']) client.send(new RequestMessage({ message, payload: new Uint8Array(10) }))
      client.finishSend()
    })
    // Bidi in lockstep: each request only after the previous answer arrived.
    const words = ['ping', 'pong', 'done']
    const bidi = await improbableClient(Test.Bidi, (client, messages) => {
      client.send(new RequestMessage({ message: words[0] }))
      client.onMessage(() => {
        if (messages.length < words.length) client.send(new RequestMessage({ message: words[messages.length] }))
        else client.finishSend()
      })
    })
    return { unary, serverStream, clientStream, bidi }
  },

  async improbableMetadata () {
    // improbable's metadata holds strings only: a -bin value goes as base64 text.
    const info = await improbableInvoke(Test.Unary, { mode: 'info' }, {
      'x-text': 'from the page',
      'x-multi': ['a', 'b'],
      'x-data-bin': toBase64(new Uint8Array([0, 1, 254, 255]))
    })
    const headers = await improbableInvoke(Test.ServerStream, { mode: 'headers-first' })
    const trailers = await improbableInvoke(Test.Unary, { mode: 'trailers' })
    return {
      code: info.code,
      seenByHandler: JSON.parse(info.messages[0]?.message ?? 'null'),
      headers: headers.headers,
      // and -bin values come back as base64 text: decoded here for the test.
      headerBin: (headers.headers['x-header-bin'] ?? []).map(v => hex(fromBase64(v))),
      headersMessages: headers.messages.map(m => m.message),
      trailers: trailers.trailers,
      trailerBin: (trailers.trailers['x-trailer-bin'] ?? []).map(v => hex(fromBase64(v))),
      trailersCode: trailers.code
    }
  },

  async improbableStatus (details: string) {
    return await improbableInvoke(Test.Unary, { mode: 'status', code: 5, details })
  },

  /** Cancels an endless server stream with close() after its first message. */
  async improbableCancel (id: string) {
    let client: ReturnType<typeof grpc.client<RequestMessage, ResponseMessage, Method>> | undefined
    let ended = false
    await bounded('the first message', new Promise<void>(resolve => {
      client = grpc.client<RequestMessage, ResponseMessage, Method>(Test.ServerStream, { host: BASE, transport: grpc.WebsocketTransport() })
      client.onMessage(() => { resolve() })
      client.onEnd(() => { ended = true })
      client.start()
      client.send(new RequestMessage({ mode: 'endless', id }))
      client.finishSend()
    }))
    client!.close()
    // close() is the end of the call for improbable: it never calls onEnd after it.
    await wait(100)
    return { closed: true, endedAfterClose: ended }
  },

  async improbableDeadline (id: string) {
    // improbable has no deadline option: grpc-timeout metadata, as an app would send.
    const started = performance.now()
    const result = await improbableInvoke(Test.Unary, { mode: 'never', id }, { 'grpc-timeout': '200m' })
    return { ...result, elapsed: performance.now() - started }
  },

  async improbableSize () {
    const big = await improbableInvoke(Test.Unary, { mode: 'echo', payload: new Uint8Array(2000) })
    const fits = await improbableInvoke(Test.Unary, { mode: 'echo', payload: new Uint8Array(900) })
    return { big, fits: { code: fits.code, payload: fits.messages[0]?.payload }, requestSize: encodeRequest({ mode: 'echo', payload: new Uint8Array(2000) }).length }
  },

  // --- nice-grpc-web ---------------------------------------------------------------------------

  async niceKinds () {
    const unary = await bounded('unary', nice.unary({ mode: 'echo', message: 'from the browser', payload: new Uint8Array([0, 1, 255]) }))
    const streamed = await bounded('server stream', collect(nice.serverStream({ mode: 'count', count: 5, size: 2 })))
    async function * letters (): AsyncIterable<Request> {
      for (const message of ['a', 'b', 'c']) yield { message, payload: new Uint8Array(10) }
    }
    const clientStream = await bounded('client stream', nice.clientStream(letters()))
    const bidi = await lockstepBidi(requests => nice.bidi(requests), ['ping', 'pong', 'done'])
    return {
      unary: plainResponse(unary),
      serverStream: streamed.map(plainResponse),
      clientStream: { message: clientStream.message, payload: new TextDecoder().decode(clientStream.payload) },
      bidi
    }
  },

  async niceMetadata () {
    // nice-grpc-web takes and gives Uint8Array for -bin keys.
    const info = await bounded('info', nice.unary({ mode: 'info' }, {
      metadata: Metadata({ 'x-text': 'from the page', 'x-multi': ['a', 'b'], 'x-data-bin': new Uint8Array([0, 1, 254, 255]) })
    }))
    let headers: Metadata | undefined
    const headersMessages = await bounded('headers-first', collect(nice.serverStream({ mode: 'headers-first' }, { onHeader: h => { headers = h } })))
    let trailers: Metadata | undefined
    const trailersResponse = await bounded('trailers', nice.unary({ mode: 'trailers' }, { onTrailer: tr => { trailers = tr } }))
    return {
      seenByHandler: JSON.parse(info.message),
      headers: plainNiceMetadata(headers),
      headersMessages: headersMessages.map(m => m.message),
      trailers: plainNiceMetadata(trailers),
      trailersMessage: trailersResponse.message
    }
  },

  async niceStatus (details: string) {
    let trailers: Metadata | undefined
    const failure = await niceFailure(async () => await nice.unary({ mode: 'status', code: 5, details }, { onTrailer: tr => { trailers = tr } }))
    return { ...failure, trailers: plainNiceMetadata(trailers) }
  },

  /** Aborts an endless server stream after its first message. */
  async niceCancel (id: string) {
    const controller = new AbortController()
    let received = 0
    const failure = await niceFailure(async () => {
      for await (const _ of nice.serverStream({ mode: 'endless', id }, { signal: controller.signal })) {
        received++
        controller.abort()
      }
    })
    return { ...failure, received }
  },

  async niceDeadline (id: string) {
    // nice-grpc-web's deadline middleware only aborts on the client: the
    // server learns of a deadline from grpc-timeout metadata only.
    const started = performance.now()
    const failure = await niceFailure(async () => await nice.unary({ mode: 'never', id }, { metadata: Metadata({ 'grpc-timeout': '200m' }) }))
    return { ...failure, elapsed: performance.now() - started }
  },

  async niceSize () {
    const big = await niceFailure(async () => await nice.unary({ mode: 'echo', payload: new Uint8Array(2000) }))
    const fits = await bounded('fits', nice.unary({ mode: 'echo', payload: new Uint8Array(900) }))
    return { big, fits: fits.payload.length, requestSize: encodeRequest({ mode: 'echo', payload: new Uint8Array(2000) }).length }
  }
}

;(globalThis as unknown as { scenarios: typeof scenarios }).scenarios = scenarios
export type Scenarios = typeof scenarios
