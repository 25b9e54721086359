/**
 * One Fastify app serving the Echo service twice from one handler set:
 * over WebSocket at ws://127.0.0.1:3000/grpc (browsers, Node) and over
 * native gRPC on 127.0.0.1:50051 (backends).
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import Fastify from 'fastify'
import fastifyGrpcWs from 'fastify-grpc-ws'
import { fileURLToPath } from 'node:url'

const packageDefinition = loader.loadSync(fileURLToPath(new URL('echo.proto', import.meta.url)), { keepCase: true, defaults: true })
export const EchoClient = (grpc.loadPackageDefinition(packageDefinition) as any).echo.Echo as grpc.ServiceClientConstructor

// Plain grpc-js handlers: they cannot tell which transport called them.
const echo = {
  Echo (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) {
    callback(null, { message: `${call.request.message as string} (from ${call.getPeer()})` })
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
}

export async function startServer (wsPort = 3000, grpcPort = 50051): Promise<{ close: () => Promise<void>, wsUrl: string, grpcAddress: string }> {
  const grpcServer = new grpc.Server()
  const app = Fastify({ logger: { level: 'warn' } })
  await app.register(fastifyGrpcWs, {
    path: '/grpc',
    services: [{ definition: EchoClient.service, implementation: echo }],
    grpcServer
  })
  await app.listen({ port: wsPort, host: '127.0.0.1' })
  const boundGrpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync(`127.0.0.1:${grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, port) => { err === null ? resolve(port) : reject(err) })
  })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : wsPort
  return {
    wsUrl: `ws://127.0.0.1:${port}/grpc`,
    grpcAddress: `127.0.0.1:${boundGrpcPort}`,
    async close () {
      await app.close()
      await new Promise<void>(resolve => { grpcServer.tryShutdown(() => { resolve() }) })
    }
  }
}
