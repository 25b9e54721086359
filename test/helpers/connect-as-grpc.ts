/**
 * The Connect way in for the parity suite: a Connect client over
 * createWebSocketTransport, wrapped in the surface of a stock grpc-js client
 * (callbacks, 'metadata' / 'data' / 'error' / 'status' events, write / end /
 * cancel, grpc.Metadata), so the scenarios written against grpc-js run over
 * it unchanged. Only the translation lives here: headers ↔ Metadata,
 * ConnectError → ServiceError, deadlines → timeoutMs, cancel → AbortSignal.
 */
import * as grpc from '@grpc/grpc-js'
import { ConnectError, decodeBinaryHeader, encodeBinaryHeader } from '@connectrpc/connect'
import { EventEmitter } from 'node:events'
import { connectClient } from './connect-client.js'
import type { Request, Response } from './test-service.js'

function headersOf (metadata: grpc.Metadata | undefined): Headers {
  const headers = new Headers()
  for (const [key, values] of Object.entries(metadata?.toJSON() ?? {})) {
    for (const value of values) headers.append(key, typeof value === 'string' ? value : encodeBinaryHeader(value))
  }
  return headers
}

function metadataOf (headers: Headers | undefined): grpc.Metadata {
  const metadata = new grpc.Metadata()
  headers?.forEach((value, key) => {
    if (key.endsWith('-bin')) for (const part of value.split(',')) metadata.add(key, Buffer.from(decodeBinaryHeader(part.trim())))
    else metadata.add(key, value)
  })
  return metadata
}

function serviceError (err: unknown): grpc.ServiceError {
  const e = ConnectError.from(err)
  return Object.assign(new Error(`${e.code} ${grpc.status[e.code] as string}: ${e.rawMessage}`), { code: e.code as number as grpc.status, details: e.rawMessage, metadata: metadataOf(e.metadata) })
}

/** Connect messages as grpc-js gives them (proto-loader objects, bytes as Buffer). */
const plain = (m: { message: string, payload: Uint8Array }): Response => ({ message: m.message, payload: Buffer.from(m.payload) })

/** grpc-js's (metadata?, options?) and (options?) argument shapes. */
function callArgs (args: unknown[]): { metadata?: grpc.Metadata, options: grpc.CallOptions } {
  const metadata = args[0] instanceof grpc.Metadata ? args.shift() as grpc.Metadata : undefined
  return { metadata, options: (args[0] ?? {}) as grpc.CallOptions }
}

function callOptions (metadata: grpc.Metadata | undefined, options: grpc.CallOptions, signal?: AbortSignal): Record<string, unknown> {
  const out: Record<string, unknown> = { headers: headersOf(metadata), signal }
  if (options.deadline !== undefined) {
    const at = options.deadline instanceof Date ? options.deadline.getTime() : Number(options.deadline)
    // Connect reads timeoutMs <= 0 as "no deadline"; past deadlines are for the grpc-js ways only.
    out.timeoutMs = Math.max(1, at - Date.now())
  }
  return out
}

/** Requests written with write(), pulled by Connect as an async iterable. */
export class RequestQueue implements AsyncIterable<Request> {
  private readonly queue: Request[] = []
  private ended = false
  private wake: (() => void) | null = null
  write (request: Request): boolean {
    this.queue.push(request)
    this.wake?.()
    return true
  }

  end (): void {
    this.ended = true
    this.wake?.()
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<Request> {
    for (;;) {
      const next = this.queue.shift()
      if (next !== undefined) yield next
      else if (this.ended) return
      else await new Promise<void>(resolve => { this.wake = resolve })
      this.wake = null
    }
  }
}

/** pause() / resume() as a grpc-js stream's: a paused reader takes no more messages (nor gives credit back). */
export function pausable (emitter: EventEmitter): () => Promise<void> | null {
  let paused: Promise<void> | null = null
  let resume = (): void => {}
  Object.assign(emitter, {
    pause: () => { paused ??= new Promise<void>(resolve => { resume = resolve }) },
    resume: () => {
      paused = null
      resume()
    }
  })
  return () => paused
}

/** Iterates a Connect response stream, reporting it as grpc-js's events. */
function report (call: EventEmitter, responses: () => AsyncIterable<{ message: string, payload: Uint8Array }>, trailer: { value?: Headers }): void {
  const paused = pausable(call)
  void (async () => {
    try {
      for await (const m of responses()) {
        await paused()
        call.emit('data', plain(m))
      }
      call.emit('end')
      call.emit('status', { code: grpc.status.OK, details: '', metadata: metadataOf(trailer.value) })
    } catch (err) {
      const e = serviceError(err)
      call.emit('error', e)
      call.emit('status', { code: e.code, details: e.details, metadata: e.metadata })
    }
  })()
}

export function connectAsGrpcClient (url: string): any {
  const { transport, test } = connectClient(url)
  const unaryLike = (fn: (request: any, options: any) => Promise<any>, request: any, args: unknown[]): EventEmitter => {
    const callback = args.pop() as (err: grpc.ServiceError | null, value?: Response) => void
    const { metadata, options } = callArgs(args)
    const call = new EventEmitter()
    let header: Headers | undefined
    let trailer: Headers | undefined
    fn(request, { ...callOptions(metadata, options), onHeader: (h: Headers) => { header = h }, onTrailer: (h: Headers) => { trailer = h } }).then(value => {
      call.emit('metadata', metadataOf(header))
      callback(null, plain(value))
      call.emit('status', { code: grpc.status.OK, details: '', metadata: metadataOf(trailer) })
    }, err => {
      const e = serviceError(err)
      callback(e)
      call.emit('status', { code: e.code, details: e.details, metadata: e.metadata })
    })
    return call
  }
  const streaming = (start: (options: Record<string, unknown>) => AsyncIterable<any>, args: unknown[]): EventEmitter & { cancel: () => void } => {
    const { metadata, options } = callArgs(args)
    const controller = new AbortController()
    const call = Object.assign(new EventEmitter(), { cancel: () => { controller.abort() } })
    const trailer: { value?: Headers } = {}
    const connectOptions = {
      ...callOptions(metadata, options, controller.signal),
      onHeader: (h: Headers) => { call.emit('metadata', metadataOf(h)) },
      onTrailer: (h: Headers) => { trailer.value = h }
    }
    report(call, () => start(connectOptions), trailer)
    return call
  }
  return {
    Unary: (request: Request, ...args: unknown[]) => unaryLike(test.unary, request, args),
    Missing: (request: Request, ...args: unknown[]) => unaryLike(test.missing, request, args),
    ServerStream: (request: Request, ...args: unknown[]) => streaming(options => test.serverStream(request, options), args),
    ClientStream: (...args: unknown[]) => {
      const requests = new RequestQueue()
      const call = unaryLike((_, options) => test.clientStream(requests, options), undefined, args)
      return Object.assign(call, { write: (r: Request) => requests.write(r), end: () => { requests.end() } })
    },
    Bidi: (...args: unknown[]) => {
      const requests = new RequestQueue()
      const call = streaming(options => test.bidi(requests, options), args)
      return Object.assign(call, { write: (r: Request) => requests.write(r), end: () => { requests.end() } })
    },
    close: () => { transport.client.close() }
  }
}
