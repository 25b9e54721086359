/**
 * The page of the Connect browser test: Connect's createClient over
 * fastify-grpc-ws/connect, bundled by esbuild, calling the test service on
 * the page's own origin. Its descriptors come from proto-loader's
 * FileDescriptorProtos through serviceDescFromDefinition, in the page.
 */
import { Code, ConnectError, createClient, decodeBinaryHeader, encodeBinaryHeader } from '@connectrpc/connect'
import files from 'test-file-descriptors'
import { createWebSocketTransport, serviceDescFromDefinition } from '../../../lib/client/connect/index.js'

const bytes = (b64: string): Uint8Array => Uint8Array.from(atob(b64), c => c.charCodeAt(0))
const requestType = { fileDescriptorProtos: files.map(bytes) }
const service = serviceDescFromDefinition({ 'test.Test': { Unary: { path: '/test.Test/Unary', requestType } } }, 'test.Test')
// A path: resolved against the page, ws://127.0.0.1:<port>/grpc.
const transport = createWebSocketTransport({ baseUrl: '/grpc' })
const test = createClient(service, transport) as unknown as Record<'unary' | 'serverStream' | 'clientStream' | 'bidi' | 'missing', (...args: any[]) => any>

const hex = (b: Uint8Array): string => [...b].map(x => x.toString(16).padStart(2, '0')).join('')
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function failureOf (body: () => Promise<unknown>): Promise<{ code: number, name: string, message: string, isConnectError: boolean, metadata: Record<string, string> } | 'succeeded'> {
  try {
    await body()
    return 'succeeded'
  } catch (err) {
    const e = err as ConnectError
    const metadata: Record<string, string> = {}
    e.metadata?.forEach((value, key) => { metadata[key] = key.endsWith('-bin') ? hex(decodeBinaryHeader(value)) : value })
    return { code: e.code, name: Code[e.code], message: e.rawMessage, isConnectError: err instanceof ConnectError, metadata }
  }
}

const scenarios = {
  async kinds () {
    const unary = (await test.unary({ mode: 'echo', message: 'from the browser' })).message as string
    const streamed: string[] = []
    for await (const m of test.serverStream({ mode: 'count', count: 3 })) streamed.push(m.message)
    const clientStreamed = (await test.clientStream((async function * () { yield { message: 'one' }; await sleep(5); yield { message: 'two' } })())).message as string
    // Full duplex: the second request leaves only once the first reply is in.
    let answered!: () => void
    const first = new Promise<void>(resolve => { answered = resolve })
    const echoed: string[] = []
    for await (const m of test.bidi((async function * () { yield { message: 'ping' }; await first; yield { message: 'pong' } })())) {
      echoed.push(m.message)
      answered()
    }
    const big = new Uint8Array(100_000).map((_, i) => i & 0xff)
    const back = (await test.unary({ mode: 'echo', payload: big })).payload as Uint8Array
    return { unary, streamed, clientStreamed, echoed, bigIntact: hex(back) === hex(big) }
  },

  async metadata () {
    const headers = new Headers({ 'x-text': 'from the page', 'x-data-bin': encodeBinaryHeader(new Uint8Array([0, 1, 254, 255])) })
    const seenByHandler = JSON.parse((await test.unary({ mode: 'info' }, { headers })).message).metadata
    let header: { text: string, bin: string[] } = { text: '', bin: [] }
    await test.unary({ mode: 'headers' }, {
      onHeader: (h: Headers) => { header = { text: h.get('x-header-text') ?? '', bin: (h.get('x-header-bin') ?? '').split(', ').map(v => hex(decodeBinaryHeader(v))) } }
    })
    let trailer: Record<string, string> = {}
    await test.unary({ mode: 'trailers' }, { onTrailer: (h: Headers) => { trailer = { text: h.get('x-trailer') ?? '', bin: hex(decodeBinaryHeader(h.get('x-trailer-bin') ?? '')) } } })
    return { seenByHandler, header, trailer }
  },

  async statuses () {
    const codes = []
    for (let code = 1; code <= 16; code++) codes.push(await failureOf(() => test.unary({ mode: 'status', code, details: `details for ${code as number}` })))
    const missing = await failureOf(() => test.missing({}))
    return { codes, missing }
  },

  async deadline (id: string) {
    const started = Date.now()
    const result = await failureOf(() => test.unary({ mode: 'never', id }, { timeoutMs: 200 }))
    return { result, elapsed: Date.now() - started }
  },

  async abort (id: string) {
    const controller = new AbortController()
    let received = 0
    const result = await failureOf(async () => {
      for await (const _ of test.serverStream({ mode: 'endless', id }, { signal: controller.signal })) {
        if (++received === 3) controller.abort()
      }
    })
    return { received, result }
  },

  state () {
    return transport.client.state
  }
}

;(globalThis as any).scenarios = scenarios
export type ConnectScenarios = typeof scenarios
