/**
 * The browser client's way in for the parity suite: `fastify-grpc-ws/client`
 * over `ws` (typed from protobufjs, as web-client.ts), wrapped in the surface
 * of a stock grpc-js client (callbacks, 'metadata' / 'data' / 'error' /
 * 'status' events, write / end / cancel, grpc.Metadata), so the scenarios
 * written against grpc-js run over it unchanged. Only the translation lives
 * here.
 */
import * as grpc from '@grpc/grpc-js'
import { EventEmitter } from 'node:events'
import { GrpcError, type Metadata } from '../../lib/client/web/index.js'
import { RequestQueue, pausable } from './connect-as-grpc.js'
import type { Request, Response } from './test-service.js'
import { webClient } from './web-client.js'

function entriesOf (metadata: grpc.Metadata | undefined): Array<[string, string | Uint8Array]> {
  const entries: Array<[string, string | Uint8Array]> = []
  for (const [key, values] of Object.entries(metadata?.toJSON() ?? {})) for (const value of values) entries.push([key, value])
  return entries
}

function grpcMetadata (metadata: Metadata | undefined): grpc.Metadata {
  const out = new grpc.Metadata()
  for (const [key, value] of metadata ?? []) out.add(key, typeof value === 'string' ? value : Buffer.from(value))
  return out
}

function serviceError (err: unknown): grpc.ServiceError {
  if (!(err instanceof GrpcError)) throw err
  return Object.assign(new Error(err.message), { code: err.code as grpc.status, details: err.details, metadata: grpcMetadata(err.metadata) })
}

const plain = (m: { message: string, payload: Uint8Array }): Response => ({ message: m.message, payload: Buffer.from(m.payload) })

/** grpc-js's (metadata?, options?) and (options?) argument shapes, as the client's CallOptions. */
function callOptions (args: unknown[]): Record<string, unknown> {
  const metadata = args[0] instanceof grpc.Metadata ? args.shift() as grpc.Metadata : undefined
  const options = (args[0] ?? {}) as grpc.CallOptions
  return { metadata: entriesOf(metadata), deadline: options.deadline === undefined ? undefined : options.deadline instanceof Date ? options.deadline : Number(options.deadline) }
}

/** Iterates a response stream, reporting it as grpc-js's events. */
function report (emitter: EventEmitter, call: AsyncIterable<any> & { headers: Promise<Metadata>, trailers: Promise<Metadata> }): void {
  const paused = pausable(emitter)
  void (async () => {
    void call.headers.then(headers => { emitter.emit('metadata', grpcMetadata(headers)) })
    try {
      for await (const m of call) {
        await paused()
        emitter.emit('data', plain(m))
      }
      emitter.emit('end')
      emitter.emit('status', { code: grpc.status.OK, details: '', metadata: grpcMetadata(await call.trailers) })
    } catch (err) {
      const e = serviceError(err)
      emitter.emit('error', e)
      emitter.emit('status', { code: e.code, details: e.details, metadata: e.metadata })
    }
  })()
}

export function webAsGrpcClient (url: string): any {
  const { client, test } = webClient(url)
  const unaryLike = (start: (options: Record<string, unknown>) => Promise<any> & { headers: Promise<Metadata>, trailers: Promise<Metadata> }, args: unknown[]): EventEmitter => {
    const callback = args.pop() as (err: grpc.ServiceError | null, value?: Response) => void
    const emitter = new EventEmitter()
    const call = start(callOptions(args))
    call.then(async value => {
      emitter.emit('metadata', grpcMetadata(await call.headers))
      callback(null, plain(value))
      emitter.emit('status', { code: grpc.status.OK, details: '', metadata: grpcMetadata(await call.trailers) })
    }, err => {
      const e = serviceError(err)
      callback(e)
      emitter.emit('status', { code: e.code, details: e.details, metadata: e.metadata })
    })
    return emitter
  }
  return {
    Unary: (request: Request, ...args: unknown[]) => unaryLike(options => test.unary(request, options), args),
    Missing: (request: Request, ...args: unknown[]) => unaryLike(options => test.missing(request, options), args),
    ServerStream: (request: Request, ...args: unknown[]) => {
      const call = test.serverStream(request, callOptions(args))
      const emitter = Object.assign(new EventEmitter(), { cancel: () => { call.cancel() } })
      report(emitter, call)
      return emitter
    },
    ClientStream: (...args: unknown[]) => {
      const requests = new RequestQueue()
      const emitter = unaryLike(options => test.clientStream(requests, options), args)
      return Object.assign(emitter, { write: (r: Request) => requests.write(r), end: () => { requests.end() } })
    },
    Bidi: (...args: unknown[]) => {
      const call = test.bidi(callOptions(args))
      const emitter = Object.assign(new EventEmitter(), {
        write: (r: Request) => { void call.send(r); return true },
        end: () => { call.close() },
        cancel: () => { call.cancel() }
      })
      report(emitter, call)
      return emitter
    },
    close: () => { client.close() }
  }
}
