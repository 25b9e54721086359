import { createClient } from 'fastify-grpc-ws/client'
import WebSocket from 'ws'

// Node 20 has no global WebSocket: give the client the one from ws.
export const client = createClient(process.env.GRPC_WS_URL ?? 'ws://127.0.0.1:3000/grpc', { WebSocket })
