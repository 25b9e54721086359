import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import fastifyGrpcWs from 'fastify-grpc-ws'
import { EchoClient, implementation } from './service.js'

const app = Fastify({ logger: true })
const grpcServer = new grpc.Server()   // optional: the same handlers over native gRPC (HTTP/2)
await app.register(fastifyGrpcWs, {
  path: '/grpc',                       // the WebSocket route
  services: [{ definition: EchoClient.service, implementation }],
  grpcServer
})
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 3000) })

grpcServer.bindAsync(`127.0.0.1:${process.env.GRPC_PORT ?? 50051}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err !== null) throw err
  app.log.info(`gRPC (HTTP/2) listening at 127.0.0.1:${port}`)
})
