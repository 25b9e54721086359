/**
 * Shared by the benchmark's orchestrator, servers and clients: the wire
 * shape of the Echo messages, payloads, statistics and the IPC messages.
 */
import { resolve } from 'node:path'
import { payloadBytes } from './shared.js'

export { percentile } from './shared.js'

/** Whether the command line has the switch `name` (`--quick`). */
export function flag (name: string): boolean {
  return process.argv.indexOf(name, 2) !== -1
}

/** The value after `name` on the command line (`--reps 5`), if given. */
export function option (name: string): string | undefined {
  const i = process.argv.indexOf(name, 2)
  return i === -1 ? undefined : process.argv[i + 1]
}

/** bench/echo.proto; the orchestrator passes its path to every child. */
export const PROTO_PATH = process.env.BENCH_PROTO ?? resolve('bench/echo.proto')

/** proto-loader options, as in the baselines. */
export const LOADER_OPTIONS = { keepCase: true, longs: String, defaults: true, oneofs: true }

export const ECHO_PATH = '/echo.Echo/Echo'
export const SERVER_STREAM_PATH = '/echo.Echo/ServerStream'
export const BIDI_PATH = '/echo.Echo/Bidi'

/** Deterministic bytes, so runs are comparable (a Buffer over payloadBytes). */
export function payloadOf (size: number): Buffer {
  const b = payloadBytes(size)
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength)
}

function varint (n: number): number[] {
  const out: number[] = []
  while (n > 0x7f) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return out
}

/** Protobuf bytes of `{ message, payload }` (fields 1 and 2), written by hand. */
export function encodeEcho (message: string, payload: Uint8Array): Buffer {
  const parts: number[] = []
  if (message.length > 0) parts.push(0x0a, ...varint(message.length), ...Buffer.from(message, 'ascii'))
  const head = Buffer.from(payload.byteLength > 0 ? [...parts, 0x12, ...varint(payload.byteLength)] : parts)
  return Buffer.concat([head, payload])
}

export function median (values: number[]): number {
  const v = values.filter(x => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = v.length >> 1
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2
}

export function medianOrNull (values: Array<number | null>): number | null {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x))
  return v.length === 0 ? null : median(v)
}

/** One measured load: a pattern, a payload size and the calls kept in flight. */
export interface Scenario { key: string, pattern: Pattern, size: number, inflight: number }

/** What a measurement of one window takes from its client's result, whatever else it samples. */
export function windowFigures<S> (rep: number, scenario: Scenario, system: S, result: RunResult): {
  rep: number, scenario: string, pattern: Pattern, size: number, inflight: number, system: S,
  ops: number, seconds: number, rate: number, p50Ms: number | null, p99Ms: number | null, errors: number, firstError: string | null
} {
  return {
    rep,
    scenario: scenario.key,
    pattern: scenario.pattern,
    size: scenario.size,
    inflight: scenario.inflight,
    system,
    ops: result.ops,
    seconds: result.seconds,
    rate: result.seconds > 0 ? result.ops / result.seconds : 0,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    errors: result.errors,
    firstError: result.firstError
  }
}

interface Repeated<S> {
  scenario: string, pattern: Pattern, size: number, inflight: number, system: S,
  rate: number, p50Ms: number | null, p99Ms: number | null, serverUsPerOp: number | null, errors: number
}

/** The repetitions of one scenario and system: medians, the rate's range, the errors summed. */
export function summarizeRepetitions<S> (list: Array<Repeated<S>>): Omit<Repeated<S>, 'errors'> & { reps: number, rateMin: number, rateMax: number, errors: number } {
  const m0 = list[0]!
  const rates = list.map(m => m.rate)
  return {
    scenario: m0.scenario,
    pattern: m0.pattern,
    size: m0.size,
    inflight: m0.inflight,
    system: m0.system,
    reps: list.length,
    rate: median(rates),
    rateMin: Math.min(...rates),
    rateMax: Math.max(...rates),
    p50Ms: medianOrNull(list.map(m => m.p50Ms)),
    p99Ms: medianOrNull(list.map(m => m.p99Ms)),
    serverUsPerOp: medianOrNull(list.map(m => m.serverUsPerOp)),
    errors: list.reduce((n, m) => n + m.errors, 0)
  }
}

// --- IPC -----------------------------------------------------------------

export interface ServerSample {
  /** process.cpuUsage(): user + system, µs */
  cpuUs: number
  rss: number
  heapUsed: number
  external: number
  arrayBuffers: number
  /** Connections the server holds, where it can tell. */
  connections: number | null
}

export type ServerCommand = { cmd: 'sample', id: number } | { cmd: 'gc', id: number } | { cmd: 'exit' }
export type ServerReply = { type: 'ready', port: number, grpcPort?: number, readyMs: number } | { type: 'sample', id: number, sample: ServerSample }

export type Pattern = 'unary' | 'server-stream' | 'bidi'

export type ClientSystem =
  | 'plugin-grpcjs' | 'plugin-lean' | 'plugin-web' | 'plugin-connect' | 'grpc' | 'ws' | 'connect'
  // The forwarder (bench/servers/forward.ts) to the grpc-js server of the 'grpc' rows: a grpc-js client on its grpcServer, the lean client on its WebSocket route
  | 'forward-grpcjs' | 'forward-lean'
  // connect-node's gRPC-Web and Connect (binary) transports over HTTP/1.1, to the plugin's HTTP routes and to connect-fastify
  | 'plugin-http-grpcweb' | 'plugin-http-connect' | 'cf-http-grpcweb' | 'cf-http-connect'

export interface RunSpec {
  system: ClientSystem
  /** ws://… for the WebSocket systems, host:port for grpc, http://… for connect. */
  target: string
  pattern: Pattern
  size: number
  /** Calls (or, for streams, messages) kept in flight. */
  inflight: number
  warmupMs: number
  windowMs: number
  /** Hard cap on operations in the window. */
  maxOps: number
}

export interface RunResult {
  ops: number
  seconds: number
  p50Ms: number | null
  p99Ms: number | null
  p90Ms: number | null
  p999Ms: number | null
  maxMs: number | null
  clientCpuUs: number
  errors: number
  firstError: string | null
}

export interface MemSpec {
  system: 'plugin' | 'ws' | 'grpc'
  target: string
  count: number
  /** Connections opened at once. */
  batch: number
  /** Give up opening after this long. */
  timeoutMs: number
}

export type ClientCommand =
  | { cmd: 'run', id: number, spec: RunSpec }
  | { cmd: 'open', id: number, spec: MemSpec }
  | { cmd: 'callAll', id: number, timeoutMs: number }
  | { cmd: 'closeAll', id: number }
  | { cmd: 'exit' }

export type ClientReply =
  | { type: 'ready' }
  | { type: 'mark', phase: 'start' | 'end' }
  | { type: 'result', id: number, result: RunResult }
  | { type: 'opened', id: number, opened: number, failed: number, ms: number, firstError: string | null }
  | { type: 'called', id: number, ok: number, failed: number, ms: number }
  | { type: 'closed', id: number }
  | { type: 'error', id: number, message: string }
