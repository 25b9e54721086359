/**
 * The page the browser tests load: the browser client, bundled by esbuild,
 * calling the test service on the page's own origin. Each scenario returns
 * plain data for the Node side of the test to assert on.
 */
import protobuf from 'protobufjs/light.js'
import descriptor from 'test-descriptor'
import typesDescriptor from 'types-descriptor'
import {
  createClient, createServiceClient, GrpcError, Metadata, Status,
  type BidiStreaming, type ClientStreaming, type ServerStreaming, type Unary
} from '../../../lib/client/web/index.js'

interface Request { mode?: string, message?: string, payload?: Uint8Array, code?: number, details?: string, count?: number, size?: number, delayMs?: number, id?: string }
interface Response { message: string, payload: Uint8Array }
interface TestService {
  unary: Unary<Request, Response>
  serverStream: ServerStreaming<Request, Response>
  clientStream: ClientStreaming<Request, Response>
  bidi: BidiStreaming<Request, Response>
  missing: Unary<Request, Response>
}

const service = protobuf.Root.fromJSON(descriptor).lookupService('test.Test')
// A path: the client resolves it against the page, ws://127.0.0.1:<port>/grpc.
const client = createClient('/grpc', { backoff: { initialMs: 100 } })
const test = createServiceClient<TestService>(client, service, { conversion: { defaults: true, longs: String } })
const states: string[] = []
client.onStateChange(state => states.push(state))

const hex = (bytes: Uint8Array | string | undefined): string =>
  bytes instanceof Uint8Array ? [...bytes].map(b => b.toString(16).padStart(2, '0')).join('') : `not bytes: ${String(bytes)}`

function failure (err: unknown): { code: number, details: string, name: string, isGrpcError: boolean, metadata: Record<string, string[]> } {
  const e = err as GrpcError
  const metadata: Record<string, string[]> = {}
  for (const [key, value] of e.metadata ?? []) (metadata[key] ??= []).push(typeof value === 'string' ? value : hex(value))
  return { code: e.code, details: e.details, name: e.codeName, isGrpcError: err instanceof GrpcError, metadata }
}

async function failureOf (body: () => Promise<unknown>): Promise<ReturnType<typeof failure> | 'succeeded'> {
  try {
    await body()
    return 'succeeded'
  } catch (err) {
    return failure(err)
  }
}

const pending = new Map<string, Promise<unknown>>()

const scenarios = {
  async kinds () {
    const unary = (await test.unary({ mode: 'echo', message: 'from the browser' })).message
    const streamed: string[] = []
    for await (const m of test.serverStream({ mode: 'count', count: 5 })) streamed.push(m.message)
    async function * words (): AsyncGenerator<Request> {
      for (const message of ['one', 'two', 'three']) yield { message }
    }
    const clientStreamed = (await test.clientStream(words())).message
    const fromArray = (await test.clientStream([{ message: 'a' }, { message: 'b' }])).message
    const bidi = test.bidi()
    const echoed: string[] = []
    void bidi.send({ message: 'ping' })
    for await (const m of bidi) {
      echoed.push(m.message)
      if (echoed.length === 1) {
        void bidi.send({ message: 'pong' })
        bidi.close()
      }
    }
    const payload = new Uint8Array(100_000).map((_, i) => i % 251)
    const big = (await test.unary({ mode: 'echo', payload })).payload
    const bigIntact = big.length === payload.length && big.every((b, i) => b === payload[i])
    return { unary, streamed, clientStreamed, fromArray, echoed, bigIntact, bigIsUint8Array: big instanceof Uint8Array }
  },

  async metadata () {
    const sent = new Metadata()
      .append('x-text', 'from the page')
      .append('x-repeated', 'a')
      .append('x-repeated', 'b')
      .append('x-data-bin', new Uint8Array([0, 1, 254, 255]))
    const info = JSON.parse((await test.unary({ mode: 'info' }, { metadata: sent })).message)
    const call = test.unary({ mode: 'headers', delayMs: 5 })
    const headers = await call.headers
    await call
    const withTrailers = test.unary({ mode: 'trailers' })
    await withTrailers
    const trailers = await withTrailers.trailers
    return {
      seenByHandler: info.metadata,
      headers: { text: headers.get('x-header-text'), repeated: headers.getAll('x-header-repeated'), bin: headers.getAll('x-header-bin').map(hex) },
      trailers: { text: trailers.get('x-trailer'), bin: hex(trailers.get('x-trailer-bin')) }
    }
  },

  async statuses () {
    const codes = []
    for (let code = 1; code <= 16; code++) codes.push(await failureOf(async () => await test.unary({ mode: 'status', code, details: `details for ${code}` })))
    const missing = await failureOf(async () => await test.missing({}))
    const thrown = await failureOf(async () => await test.unary({ mode: 'throw' }))
    const midStream: string[] = []
    const stream = await failureOf(async () => {
      for await (const m of test.serverStream({ mode: 'status-after-write', code: Status.ABORTED, details: 'stopped' })) midStream.push(m.message)
    })
    return { codes, missing, thrown, stream, midStream }
  },

  async deadline (id: string) {
    const started = Date.now()
    const result = await failureOf(async () => await test.unary({ mode: 'never', id }, { timeout: 200 }))
    return { ...(result as object), elapsed: Date.now() - started }
  },

  async abort (id: string) {
    const controller = new AbortController()
    const received: string[] = []
    const result = await failureOf(async () => {
      for await (const m of test.serverStream({ mode: 'endless', id }, { signal: controller.signal })) {
        received.push(m.message)
        if (received.length === 3) controller.abort()
      }
    })
    return { result, received: received.length }
  },

  async concurrent (n: number) {
    const replies = await Promise.all(Array.from({ length: n }, async (_, i) => await test.unary({ mode: 'echo', message: `call ${i}` })))
    return { answered: replies.filter((r, i) => r.message === `call ${i}`).length, state: client.state }
  },

  /** Starts a call that only a failure ends; `settle(key)` reports how it ended. */
  start (key: string) {
    pending.set(key, failureOf(async () => await test.unary({ mode: 'never' })))
  },

  async settle (key: string) {
    return await pending.get(key)
  },

  async echo (message: string) {
    return (await test.unary({ mode: 'echo', message })).message
  },

  state () {
    return { state: client.state, states: [...states] }
  },

  /** types.Types through the default conversion. */
  async types () {
    const types = createServiceClient<{ echo: Unary<object, any> }>(client, protobuf.Root.fromJSON(typesDescriptor).lookupService('types.Types'))
    const reply = await types.echo({ i64: '-9007199254740993', u64: '18446744073709551615', sf64: -9223372036854775808n, list: [1, -2n], color: 2, data: new Uint8Array([0, 1, 254, 255]) })
    const empty = await types.echo({})
    return {
      i64: reply.i64,
      u64: reply.u64,
      fromBigint: reply.sf64,
      list: reply.list,
      color: reply.color,
      data: [...reply.data as Uint8Array],
      dataIsUint8Array: reply.data instanceof Uint8Array,
      defaultI64: empty.i64
    }
  },

  /** A call through a client of its own at `path`, which the server refuses to upgrade (with the HTTP fallback on or off). */
  async refused (path: string, fallback: boolean) {
    const other = createClient(path, { transports: fallback ? ['websocket', 'http'] : ['websocket'] })
    try {
      await createServiceClient<TestService>(other, service).unary({ mode: 'echo' })
      return null
    } catch (err) {
      return err instanceof GrpcError ? { code: err.code, details: err.details, url: other.url } : { other: String(err) }
    } finally {
      other.close()
    }
  }
}

;(globalThis as unknown as { scenarios: typeof scenarios }).scenarios = scenarios
export type Scenarios = typeof scenarios
