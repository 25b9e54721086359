/**
 * The upstream: a plain grpc-js server in a process of its own, knowing
 * nothing of WebSockets or Fastify, serving Echo with reflection (which the
 * gateway uses to learn its methods). It could be written in any language.
 * Prints `listening <port>` once bound; exits when its stdin closes.
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { ReflectionService } from '@grpc/reflection'
import { fileURLToPath } from 'node:url'

const packageDefinition = loader.loadSync(fileURLToPath(new URL('../echo/echo.proto', import.meta.url)), { keepCase: true, defaults: true })
const Echo = (grpc.loadPackageDefinition(packageDefinition) as any).echo.Echo as grpc.ServiceClientConstructor

const server = new grpc.Server()
server.addService(Echo.service, {
  Echo (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) {
    callback(null, { message: `${call.request.message as string} (from the upstream, via ${String(call.metadata.get('x-forwarded-host')[0] ?? 'no proxy')})` })
  },
  ServerStream (call: grpc.ServerWritableStream<any, any>) {
    for (let i = 1; i <= call.request.count; i++) call.write({ message: `${call.request.message as string} #${i}` })
    call.end()
  },
  ClientStream (call: grpc.ServerReadableStream<any, any>, callback: grpc.sendUnaryData<any>) {
    const words: string[] = []
    call.on('data', request => words.push(request.message))
    call.on('end', () => { callback(null, { message: words.join(' ') }) })
  },
  Bidi (call: grpc.ServerDuplexStream<any, any>) {
    call.on('data', request => call.write({ message: String(request.message).toUpperCase() }))
    call.on('end', () => { call.end() })
  }
})
new ReflectionService(packageDefinition).addToServer(server)
const port = await new Promise<number>((resolve, reject) => {
  server.bindAsync(`127.0.0.1:${process.env.UPSTREAM_PORT ?? 0}`, grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
})
console.log(`listening ${port}`)
process.stdin.on('end', () => { server.forceShutdown(); process.exit(0) })
process.stdin.resume()
