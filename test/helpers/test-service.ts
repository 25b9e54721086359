/**
 * The handler set every parity scenario runs against, served at once by a
 * grpc-js Server (HTTP/2) and by the plugin (WebSocket). Handlers report
 * what they saw through `events`, so tests can assert on the server side too.
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { EventEmitter } from 'node:events'
import { fileURLToPath } from 'node:url'

const protoPath = fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))
const packageDefinition = loader.loadSync(protoPath, { keepCase: false, longs: String, defaults: true })
export const TestClient = (grpc.loadPackageDefinition(packageDefinition) as any).test.Test as grpc.ServiceClientConstructor
export const testDefinition = TestClient.service

export interface Request {
  mode?: string
  message?: string
  payload?: Buffer
  code?: number
  details?: string
  count?: number
  size?: number
  delayMs?: number
  id?: string
}
export interface Response { message: string, payload: Buffer }

/** What a handler saw about its call, reported as JSON in `message`. */
export interface CallInfo {
  metadata: Record<string, Array<string | { bin: string }>>
  peer: string
  host: string
  deadline: number | string
  path: string
  authContext: unknown
  hasMetricsRecorder: boolean
  cancelledAtStart: boolean
  constructorName: string
}

function describeCall (call: any): CallInfo {
  const metadata: CallInfo['metadata'] = {}
  for (const [key, values] of Object.entries(call.metadata.toJSON() as Record<string, Array<string | Buffer>>)) {
    metadata[key] = values.map(v => Buffer.isBuffer(v) ? { bin: v.toString('hex') } : v)
  }
  const deadline = call.getDeadline()
  return {
    metadata,
    peer: call.getPeer(),
    host: call.getHost(),
    deadline: deadline === Infinity ? 'Infinity' : typeof deadline === 'number' ? deadline : `not a number: ${String(deadline)}`,
    path: call.getPath(),
    authContext: call.getAuthContext(),
    hasMetricsRecorder: typeof call.getMetricsRecorder()?.recordRequestCostMetric === 'function',
    cancelledAtStart: call.cancelled,
    constructorName: call.constructor.name
  }
}

function metadataFrom (prefix: string): grpc.Metadata {
  const md = new grpc.Metadata()
  md.set(`${prefix}-text`, 'value one')
  md.add(`${prefix}-repeated`, 'a')
  md.add(`${prefix}-repeated`, 'b')
  md.add(`${prefix}-bin`, Buffer.from([0, 1, 2, 254, 255]))
  md.add(`${prefix}-bin`, Buffer.from('second'))
  return md
}

const sleep = async (ms: number): Promise<void> => await new Promise(resolve => setTimeout(resolve, ms))

export function createTestService (events: EventEmitter) {
  function watch (call: any, id: string | undefined): void {
    if (id === undefined || id === '') return
    call.on('cancelled', (reason: unknown) => events.emit(id, { event: 'cancelled', reason, cancelled: call.cancelled }))
  }

  function unaryAnswer (request: Request, call: any, callback: grpc.sendUnaryData<any>): void {
    switch (request.mode) {
      case 'info':
        callback(null, { message: JSON.stringify(describeCall(call)) })
        return
      case 'echo':
        callback(null, { message: request.message, payload: request.payload })
        return
      case 'size':
        callback(null, { payload: Buffer.alloc(request.size ?? 0, 7) })
        return
      case 'status': {
        const md = new grpc.Metadata()
        md.set('x-error-text', 'error value')
        md.set('x-error-bin', Buffer.from([9, 8, 7]))
        callback({ code: request.code, details: request.details, metadata: md } as any)
        return
      }
      case 'error-object':
        callback(new Error(request.details))
        return
      case 'throw':
        throw new Error('thrown by the handler')
      case 'trailers': {
        const trailer = new grpc.Metadata()
        trailer.set('x-trailer', 'trailer value')
        trailer.set('x-trailer-bin', Buffer.from([1, 2, 3]))
        callback(null, { message: 'with trailers' }, trailer)
        return
      }
      case 'headers': {
        call.sendMetadata(metadataFrom('x-header'))
        setTimeout(() => { callback(null, { message: 'after headers' }) }, request.delayMs ?? 0)
        return
      }
      case 'never':
        // Never answers: only a deadline or a cancel ends it.
        return
      case 'reject':
        // An async handler that rejects: grpc-js ignores the promise, so the
        // call hangs until its deadline and the rejection goes unhandled.
        void Promise.reject(new Error('rejected by the handler'))
        return
      case 'delay':
        setTimeout(() => { callback(null, { message: request.message }) }, request.delayMs ?? 0)
        return
      default:
        callback({ code: grpc.status.INVALID_ARGUMENT, details: `unknown mode ${String(request.mode)}` })
    }
  }

  return {
    Unary (call: grpc.ServerUnaryCall<Request, Partial<Response>>, callback: grpc.sendUnaryData<any>) {
      watch(call, call.request.id)
      unaryAnswer(call.request, call, callback)
    },

    ServerStream (call: grpc.ServerWritableStream<Request, Partial<Response>>) {
      const request = call.request
      watch(call, request.id)
      switch (request.mode) {
        case 'count': {
          for (let i = 0; i < (request.count ?? 0); i++) call.write({ message: String(i), payload: Buffer.alloc(request.size ?? 0, i & 0xff) })
          call.end()
          return
        }
        case 'headers-first': {
          call.sendMetadata(metadataFrom('x-header'))
          setTimeout(() => {
            call.write({ message: 'first' })
            call.end()
          }, request.delayMs ?? 0)
          return
        }
        case 'flood':
        case 'numbered-flood': {
          // Writes `count` messages of `size` bytes (numbered from 1 in
          // `message` for 'numbered-flood'), honouring backpressure, and
          // reports how often write() returned false, and how many it had
          // written each time it did (`<id>:refused`).
          const numbered = request.mode === 'numbered-flood'
          let sent = 0
          let refusals = 0
          const payload = Buffer.alloc(request.size ?? 0, 1)
          const pump = (): void => {
            while (sent < (request.count ?? 0)) {
              if (call.cancelled) return
              sent++
              if (!call.write(numbered ? { message: String(sent), payload } : { payload })) {
                refusals++
                events.emit(`${request.id ?? ''}:refused`, { sent })
                call.once('drain', pump)
                return
              }
            }
            events.emit(`${request.id ?? ''}:flood`, { refusals })
            call.end()
          }
          pump()
          return
        }
        case 'endless':
          // Writes until cancelled.
          {
            const timer = setInterval(() => {
              if (call.cancelled) { clearInterval(timer); return }
              call.write({ message: 'tick' })
            }, 5)
            call.on('cancelled', () => clearInterval(timer))
          }
          return
        case 'status-after-write': {
          call.write({ message: 'one' })
          const md = new grpc.Metadata()
          md.set('x-error-text', 'error value')
          call.emit('error', { code: request.code, details: request.details, metadata: md })
          return
        }
        case 'end-trailers': {
          call.write({ message: 'one' })
          const trailer = new grpc.Metadata()
          trailer.set('x-trailer', 'stream trailer')
          call.end(trailer)
          return
        }
        default:
          call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `unknown mode ${String(request.mode)}` })
      }
    },

    ClientStream (call: grpc.ServerReadableStream<Request, Partial<Response>>, callback: grpc.sendUnaryData<any>) {
      const received: string[] = []
      let bytes = 0
      let first: Request | undefined
      call.on('data', (request: Request) => {
        if (first === undefined) {
          first = request
          watch(call, request.id)
        }
        received.push(request.message ?? '')
        bytes += request.payload?.length ?? 0
      })
      call.on('end', () => {
        if (first?.mode === 'never') return
        callback(null, { message: received.join(','), payload: Buffer.from(String(bytes)) })
      })
    },

    Bidi (call: grpc.ServerDuplexStream<Request, Partial<Response>>) {
      let first = true
      call.on('data', (request: Request) => {
        if (first) {
          first = false
          watch(call, request.id)
        }
        if (request.mode === 'status') {
          call.emit('error', { code: request.code, details: request.details })
          return
        }
        call.write({ message: (request.message ?? '').toUpperCase(), payload: request.payload })
      })
      call.on('end', () => { call.end() })
    }
  }
}

export { sleep }
