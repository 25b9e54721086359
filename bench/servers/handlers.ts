/**
 * The Echo handler set for grpc-js (served over HTTP/2 and, through the
 * plugin, over WebSocket). Streams respect write() back-pressure.
 */
import type * as grpc from '@grpc/grpc-js'

interface EchoMessage { message: string, payload: Buffer }

export const echoHandlers = {
  Echo (call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>, callback: grpc.sendUnaryData<EchoMessage>) {
    callback(null, call.request)
  },
  ServerStream (call: grpc.ServerWritableStream<EchoMessage, EchoMessage>) {
    const n = Math.min(Number(call.request.message) || 0, 50_000_000)
    const reply = { message: '', payload: call.request.payload }
    let sent = 0
    let stopped = false
    call.on('cancelled', () => { stopped = true })
    const pump = (): void => {
      while (!stopped && sent < n) {
        sent++
        if (!call.write(reply)) { call.once('drain', pump); return }
      }
      if (!stopped) call.end()
    }
    pump()
  },
  Bidi (call: grpc.ServerDuplexStream<EchoMessage, EchoMessage>) {
    let paused = false
    call.on('data', (request: EchoMessage) => {
      if (!call.write(request) && !paused) {
        paused = true
        call.pause()
        call.once('drain', () => { paused = false; call.resume() })
      }
    })
    call.on('end', () => { call.end() })
    call.on('error', () => {})
  }
}
