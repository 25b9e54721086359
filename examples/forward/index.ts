/**
 * `npm run example:forward`: starts an upstream gRPC server in another
 * process, a Fastify gateway forwarding to it, calls the gateway over its
 * WebSocket with a stock grpc-js client (one call of each kind), and stops.
 */
import { talk, webSocketClient } from '../echo/client.js'
import { startGateway, startUpstream } from './gateway.js'

const upstream = await startUpstream()
const gateway = await startGateway(upstream.target, Number(process.env.PORT ?? 3000))
console.log(`Upstream gRPC server at ${upstream.target}; gateway forwarding to it at ${gateway.wsUrl}\n`)

const client = webSocketClient(gateway.wsUrl)
await talk(client, 'websocket -> gateway -> upstream')
client.close()
await gateway.close()
await upstream.stop()
