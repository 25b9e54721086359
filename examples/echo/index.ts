/**
 * `npm start`: starts the echo server (WebSocket and HTTP/2), calls it with
 * a stock grpc-js client over each transport, and stops.
 */
import { http2Client, talk, webSocketClient } from './client.js'
import { startServer } from './server.js'

const port = Number(process.env.PORT ?? 3000)
const server = await startServer(port, Number(process.env.GRPC_PORT ?? 50051))
console.log(`Echo served over WebSocket at ${server.wsUrl} and over gRPC at ${server.grpcAddress}\n`)

const clients = [http2Client(server.grpcAddress), webSocketClient(server.wsUrl)]
await talk(clients[0], 'grpc over http/2')
console.log()
await talk(clients[1], 'grpc over websocket')
for (const client of clients) client.close()
await server.close()
