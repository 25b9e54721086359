import { createClient, createServiceClient, type ServerStreaming, type Unary } from 'fastify-grpc-ws/client'
import protobuf from 'protobufjs/light.js'
import descriptor from './echo.json' with { type: 'json' }

interface EchoRequest { message?: string, count?: number }
interface EchoResponse { message: string }
interface Echo {
  echo: Unary<EchoRequest, EchoResponse>
  serverStream: ServerStreaming<EchoRequest, EchoResponse>
}

const client = createClient('/grpc')   // the page's host: ws: or wss: like the page
const echo = createServiceClient<Echo>(client, protobuf.Root.fromJSON(descriptor).lookupService('echo.Echo'))

const reply = await echo.echo({ message: 'hi' }, { timeout: 5000 })
console.log(reply.message)
for await (const tick of echo.serverStream({ message: 'tick', count: 3 })) console.log(tick.message)
