/**
 * Subscribers for the fan-out tests: a grpc-ws.v1 call (the project's
 * client) or an HTTP/2 call (stock grpc-js client) to the fan-out app's
 * ServerStream, reading everything until the call ends.
 */
import { once } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import type { webClient } from './web-client.js'

/** Waits for `check` to hold, for at most `ms`. */
export async function until (check: () => boolean, ms = 10000): Promise<void> {
  const end = Date.now() + ms
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting')
    await sleep(5)
  }
}

export interface Received { messages: string[], done: Promise<{ code: number, details: string } | null> }

/** A grpc-ws.v1 subscriber: reads everything until the call ends. */
export function wsSubscriber (test: ReturnType<typeof webClient>['test'], request: object): { call: any, received: Received, headers: Promise<unknown> } {
  const call = test.serverStream(request)
  const messages: string[] = []
  const done = (async () => {
    try {
      for await (const r of call) messages.push(r.message)
      return null
    } catch (err: any) {
      return { code: err.code, details: err.details ?? err.message }
    }
  })()
  return { call, received: { messages, done }, headers: call.headers }
}

/** An HTTP/2 subscriber (stock grpc-js client): reads everything until the call ends. */
export function h2Subscriber (client: any, request: object): { call: any, received: Received, headers: Promise<unknown> } {
  const call = client.serverStream(request)
  const messages: string[] = []
  const headers = once(call, 'metadata')
  headers.catch(() => {}) // a call that fails before its headers: `done` says how
  const done = new Promise<{ code: number, details: string } | null>(resolve => {
    call.on('data', (r: any) => { messages.push(r.message) })
    call.on('error', (err: any) => { resolve({ code: err.code, details: err.details }) })
    call.on('end', () => { resolve(null) })
  })
  return { call, received: { messages, done }, headers }
}

