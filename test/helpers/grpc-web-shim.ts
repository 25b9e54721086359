/**
 * A grpc-js-shaped client for the parity suite over the plugin's gRPC-Web
 * route (binary, HTTP/1.1): `Unary(request, metadata?, options?, callback)`
 * and `ServerStream(request, metadata?, options?)` with grpc-js's events
 * ('metadata', 'data', 'error', 'status'), `cancel()`, deadlines (sent as
 * grpc-timeout, and enforced on the client as grpc-js does), so the parity
 * scenarios for those two kinds run unchanged over HTTP too. Any scenario
 * using another kind does not opt this way in.
 */
import * as grpc from '@grpc/grpc-js'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import { testDefinition } from './test-service.js'

const httpHeaders = new Set(['content-type', 'content-length', 'date', 'connection', 'keep-alive', 'transfer-encoding'])
const statusNames = Object.fromEntries(Object.entries(grpc.status).map(([k, v]) => [v, k]))

// As grpc-js's client builds it from HTTP/2 headers: repeated text values
// joined with ', ', binary values separate Buffers.
function toMetadata (pairs: Array<[string, string]>): grpc.Metadata {
  const md = new grpc.Metadata()
  for (const [key, value] of pairs) {
    if (key.endsWith('-bin')) for (const v of value.split(',')) md.add(key, Buffer.from(v.trim(), 'base64'))
    else if (md.get(key).length > 0) md.set(key, `${String(md.get(key)[0])}, ${value}`)
    else md.set(key, value)
  }
  return md
}

function frame (bytes: Buffer): Buffer {
  const out = Buffer.alloc(5 + bytes.length)
  out.writeUInt32BE(bytes.length, 1)
  bytes.copy(out, 5)
  return out
}

export function grpcWebShim (base: string): any {
  const agent = new http.Agent({ keepAlive: true })
  function start (method: grpc.MethodDefinition<any, any>, request: unknown, args: unknown[], streaming: boolean): any {
    let metadata = new grpc.Metadata()
    let options: grpc.CallOptions = {}
    let callback: ((err: grpc.ServiceError | null, value?: unknown) => void) | undefined
    for (const arg of args) {
      if (arg instanceof grpc.Metadata) metadata = arg
      else if (typeof arg === 'function') callback = arg as typeof callback
      else if (arg !== undefined && arg !== null) options = arg as grpc.CallOptions
    }
    const call = new EventEmitter() as EventEmitter & { cancel: () => void }
    let finished = false
    let value: unknown
    const headers: Record<string, string[]> = { 'content-type': ['application/grpc-web+proto'], 'x-grpc-web': ['1'] }
    for (const [key, values] of Object.entries(metadata.toJSON())) headers[key] = values.map(v => Buffer.isBuffer(v) ? v.toString('base64') : String(v))
    let timer: ReturnType<typeof setTimeout> | undefined
    if (options.deadline !== undefined) {
      const ms = Math.max(0, Math.ceil(new Date(options.deadline).getTime() - Date.now()))
      headers['grpc-timeout'] = [`${ms}m`]
      timer = setTimeout(() => { end(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded', new grpc.Metadata()) }, ms)
    }
    const req = http.request(base + method.path, { method: 'POST', headers, agent })
    const end = (code: number, details: string, trailers: grpc.Metadata): void => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      if (code !== grpc.status.OK) req.destroy()
      const status = { code, details, metadata: trailers }
      if (code !== grpc.status.OK) {
        const err = Object.assign(new Error(`${code} ${statusNames[code] ?? 'UNKNOWN'}: ${details}`), status) as grpc.ServiceError
        if (callback !== undefined) callback(err)
        else call.emit('error', err)
      } else if (callback !== undefined) {
        // As grpc-js's client: a unary OK without a message is an error.
        if (value === undefined) {
          const err = Object.assign(new Error('12 UNIMPLEMENTED: No message received'), { code: grpc.status.UNIMPLEMENTED, details: 'No message received', metadata: trailers }) as grpc.ServiceError
          callback(err)
          call.emit('status', { code: grpc.status.UNIMPLEMENTED, details: 'No message received', metadata: trailers })
          return
        }
        callback(null, value)
      } else {
        call.emit('end')
      }
      call.emit('status', status)
    }
    call.cancel = () => { end(grpc.status.CANCELLED, 'Cancelled on client', new grpc.Metadata()) }
    req.on('error', () => { end(grpc.status.UNAVAILABLE, 'connection failed', new grpc.Metadata()) })
    req.on('response', res => {
      if (res.statusCode !== 200) {
        end(grpc.status.UNKNOWN, `HTTP ${String(res.statusCode)}`, new grpc.Metadata())
        return
      }
      const pairs: Array<[string, string]> = []
      for (let i = 0; i < res.rawHeaders.length; i += 2) {
        const key = res.rawHeaders[i]!.toLowerCase()
        if (!httpHeaders.has(key)) pairs.push([key, res.rawHeaders[i + 1]!])
      }
      call.emit('metadata', toMetadata(pairs))
      let buffered = Buffer.alloc(0)
      res.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk])
        while (!finished && buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
          const length = buffered.readUInt32BE(1)
          const flags = buffered[0]!
          const payload = buffered.subarray(5, 5 + length)
          buffered = buffered.subarray(5 + length)
          if ((flags & 0x80) === 0) {
            const message = method.responseDeserialize(payload)
            if (streaming) call.emit('data', message)
            else value = message
            continue
          }
          const lines = payload.toString('latin1').split('\r\n').filter(l => l !== '').map(l => [l.slice(0, l.indexOf(':')).trim(), l.slice(l.indexOf(':') + 1).trim()] as [string, string])
          const code = Number(lines.find(([k]) => k === 'grpc-status')?.[1] ?? grpc.status.UNKNOWN)
          const details = decodeURIComponent(lines.find(([k]) => k === 'grpc-message')?.[1] ?? '')
          end(code, details, toMetadata(lines.filter(([k]) => k !== 'grpc-status' && k !== 'grpc-message')))
        }
      })
      res.on('end', () => { end(grpc.status.INTERNAL, 'the response ended without trailers', new grpc.Metadata()) })
    })
    req.end(frame(method.requestSerialize(request)))
    return call
  }
  return {
    Unary: (request: unknown, ...args: unknown[]) => start(testDefinition.Unary!, request, args, false),
    ServerStream: (request: unknown, ...args: unknown[]) => start(testDefinition.ServerStream!, request, args, true),
    Missing: (request: unknown, ...args: unknown[]) => start(testDefinition.Missing!, request, args, false),
    makeUnaryRequest: (path: string, serialize: (x: any) => Buffer, deserialize: (b: Buffer) => any, request: unknown, ...args: unknown[]) =>
      start({ ...testDefinition.Unary!, path, requestSerialize: serialize, responseDeserialize: deserialize }, request, args, false),
    close: () => { agent.destroy() }
  }
}
