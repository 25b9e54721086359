import * as grpc from '@grpc/grpc-js'
import { createWebSocketChannel } from 'fastify-grpc-ws/grpc-js'
import { EchoClient, type EchoResponse } from './service.js'

const wsUrl = process.env.GRPC_WS_URL ?? 'ws://127.0.0.1:3000/grpc'
const grpcAddress = process.env.GRPC_ADDRESS ?? '127.0.0.1:50051'

// One stock client class, over WebSocket (channelOverride) and over HTTP/2.
const overWebSocket = new EchoClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl) })
const overHttp2 = new EchoClient(grpcAddress, grpc.credentials.createInsecure())

function echo (client: EchoClient, message: string): Promise<EchoResponse> {
  return new Promise((resolve, reject) => {
    client.Echo({ message }, { deadline: Date.now() + 5000 }, (err, reply) => {
      if (err !== null || reply === undefined) reject(err ?? new Error('no reply'))
      else resolve(reply)
    })
  })
}

console.log('websocket:', (await echo(overWebSocket, 'hi')).message)
console.log('http/2:', (await echo(overHttp2, 'hi')).message)
overWebSocket.close()
overHttp2.close()
