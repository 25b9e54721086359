/**
 * The load loops, shared by the Node load client (bench/client.ts) and the
 * browser benchmark's page (bench/browser-page.ts), so both measure alike.
 * Every loop is closed (a fixed number of calls or messages in flight) and
 * bounded in time and in count. Browser-safe: no Node built-ins.
 */
import { percentile } from './shared.js'
import type { RunResult, RunSpec } from './common.js'

export type Done = (error: string | null) => void

export interface BidiHandle {
  /** false: wait for onDrain before writing again */
  write (): boolean
  end (): void
  cancel (): void
}

/** One system's calls, as the loops drive them. */
export interface Driver {
  unary (done: Done): void
  serverStream (count: number, onMessage: () => void, onEnd: Done): () => void
  bidi (onMessage: () => void, onDrain: () => void, onEnd: Done): BidiHandle
  close (): void
}

export type LoadSpec = Pick<RunSpec, 'pattern' | 'inflight' | 'warmupMs' | 'windowMs' | 'maxOps'>

export interface LoadHooks {
  /** Called when the measuring window opens and when it closes. */
  mark (phase: 'start' | 'end'): void
  /** The client process's CPU time so far, µs (0 where it cannot be read: the page reports none). */
  cpuUs (): number
}

export function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

/** A raw echo socket, whichever WebSocket API carries it (the page's or `ws`). */
export interface EchoSocket {
  send (data: Uint8Array): void
  close (): void
  /** `onMessage` with each message's length, then `onClose` once. */
  listen (onMessage: (length: number) => void, onClose: () => void): void
}

/**
 * The raw echo floor: unary is one message echoed, a server stream a socket
 * the server pushes copies on (`openStream`), bidi the echo socket with many
 * in flight.
 */
export function echoDriver (socket: EchoSocket, payload: Uint8Array, openStream: () => Promise<EchoSocket>): Driver {
  const size = payload.byteLength
  // Echoes come back in order: the oldest waiting call gets the next one.
  const waiting: Done[] = []
  let head = 0
  socket.listen(length => {
    const done = waiting[head++]!
    if (head > 4096) { waiting.splice(0, head); head = 0 }
    done(length === size ? null : `echo of ${length} bytes, expected ${size}`)
  }, () => {
    for (let i = head; i < waiting.length; i++) waiting[i]!('socket closed')
    waiting.length = 0
    head = 0
  })
  const unary = (done: Done): void => {
    waiting.push(done)
    socket.send(payload)
  }
  return {
    unary,
    serverStream (_count, onMessage, onEnd) {
      let stop = (): void => {}
      openStream().then(s => {
        s.listen(onMessage, () => { onEnd(null) })
        s.send(payload)
        stop = () => { s.close() }
      }, (err: unknown) => { onEnd(errorText(err)) })
      return () => { stop() }
    },
    bidi (onMessage, _onDrain, onEnd) {
      const each: Done = () => { onMessage() }
      let ended = false
      const end = (): void => { if (!ended) { ended = true; onEnd(null) } }
      return { write: () => { unary(each); return true }, end, cancel: end }
    },
    close () { socket.close() }
  }
}

/** Messages a server stream is asked for: more than any window takes; the loop cancels it. */
export const STREAM_COUNT = 50_000_000
const MAX_ERRORS = 1000

/** Runs `spec` on `driver` (warm-up, then the window), then closes the driver. */
export async function runLoad (driver: Driver, spec: LoadSpec, hooks: LoadHooks): Promise<RunResult> {
  // 0 warm-up, 1 measuring, 2 stopping
  let phase = 0
  let ops = 0
  let errors = 0
  let firstError: string | null = null
  const latencies = spec.pattern === 'unary' ? new Float64Array(Math.min(spec.maxOps, 4_000_000)) : null
  let recorded = 0
  let windowStart = 0
  let windowEnd = 0
  let cpuStart = 0
  let cpuEnd = 0
  let opsAtEnd = 0
  let onIdle: (() => void) | null = null
  let busy = 0
  let closing = false

  const fail = (error: string): void => {
    // Calls cut short by the teardown after the window are not errors of the system.
    if (closing) return
    errors++
    firstError ??= error
    if (errors >= MAX_ERRORS) stop()
  }
  const counted = (): void => {
    if (phase === 1) {
      ops++
      if (ops >= spec.maxOps) stop()
    }
  }
  const stop = (): void => {
    if (phase === 2) return
    if (phase === 1) {
      windowEnd = performance.now()
      cpuEnd = hooks.cpuUs()
      opsAtEnd = ops
      hooks.mark('end')
    }
    phase = 2
  }

  const timers: Array<ReturnType<typeof setTimeout>> = []
  const finished = new Promise<void>(resolve => { onIdle = resolve })
  timers.push(setTimeout(() => {
    if (phase !== 0) return
    phase = 1
    cpuStart = hooks.cpuUs()
    windowStart = performance.now()
    hooks.mark('start')
    timers.push(setTimeout(stop, spec.windowMs))
  }, spec.warmupMs))

  let cancelStream: (() => void) | null = null
  if (spec.pattern === 'unary') {
    const issue = (): void => {
      const t = performance.now()
      busy++
      driver.unary(error => {
        busy--
        if (error !== null) fail(error)
        else if (phase === 1) {
          if (recorded < latencies!.length) latencies![recorded++] = performance.now() - t
          counted()
        }
        if (phase !== 2) issue()
        else if (busy === 0) onIdle!()
      })
    }
    for (let i = 0; i < spec.inflight; i++) issue()
  } else if (spec.pattern === 'server-stream') {
    busy = 1
    cancelStream = driver.serverStream(STREAM_COUNT, counted, error => {
      if (error !== null) fail(error)
      stop()
      if (busy === 1) { busy = 0; onIdle!() }
    })
  } else {
    let outstanding = 0
    let blocked = false
    let ended = false
    busy = 1
    const handle: BidiHandle = driver.bidi(() => {
      outstanding--
      counted()
      fill()
    }, () => { blocked = false; fill() }, error => {
      if (error !== null) fail(error)
      stop()
      if (busy === 1) { busy = 0; onIdle!() }
    })
    const fill = (): void => {
      if (phase === 2) {
        // Half-close; the run ends when the stream does (its echoes drained).
        if (!ended) { ended = true; handle.end() }
        return
      }
      while (!blocked && outstanding < spec.inflight) {
        outstanding++
        if (!handle.write()) blocked = true
      }
    }
    cancelStream = () => { handle.cancel() }
    fill()
  }

  // Stop the stream at the end of the window; give everything 10 s to settle.
  const settle = new Promise<void>(resolve => {
    const check = setInterval(() => {
      if (phase === 2) {
        if (cancelStream !== null && spec.pattern === 'server-stream') { cancelStream(); cancelStream = null }
        clearInterval(check)
        timers.push(setTimeout(() => { cancelStream?.(); resolve() }, 10_000))
      }
    }, 5)
  })
  await Promise.race([finished, settle])
  for (const t of timers) clearTimeout(t)
  closing = true
  driver.close()

  const sorted = latencies === null ? null : latencies.subarray(0, recorded).sort()
  const seconds = windowEnd > windowStart ? (windowEnd - windowStart) / 1000 : 0
  return {
    ops: opsAtEnd,
    seconds,
    p50Ms: sorted === null || sorted.length === 0 ? null : percentile(sorted, 0.5),
    p99Ms: sorted === null || sorted.length === 0 ? null : percentile(sorted, 0.99),
    p90Ms: sorted === null || sorted.length === 0 ? null : percentile(sorted, 0.9),
    p999Ms: sorted === null || sorted.length === 0 ? null : percentile(sorted, 0.999),
    maxMs: sorted === null || sorted.length === 0 ? null : sorted[sorted.length - 1]!,
    clientCpuUs: cpuEnd - cpuStart,
    errors,
    firstError
  }
}
