/**
 * Type-checked by scripts/test-package.mjs inside the temporary apps: the
 * `fastify-grpc-ws/connect` entry point with the app's own Connect and
 * protobuf-es (its optional peers), descriptors from proto-loader.
 */
import { createClient, type Transport } from '@connectrpc/connect'
import type { DescService } from '@bufbuild/protobuf'
import * as loader from '@grpc/proto-loader'
import { createWebSocketTransport, serviceDescFromDefinition, type WebSocketTransport } from 'fastify-grpc-ws/connect'
import { createClient as createWebClient } from 'fastify-grpc-ws/client'
import WebSocket from 'ws'

export function echoClient (url: string): { transport: WebSocketTransport, echo: ReturnType<typeof createClient<DescService>> } {
  const service: DescService = serviceDescFromDefinition(loader.loadSync('echo.proto'), 'echo.Echo')
  const transport = createWebSocketTransport({ baseUrl: url, WebSocket, defaultTimeoutMs: 5000, interceptors: [next => async req => await next(req)] })
  const shared: Transport = createWebSocketTransport({ client: createWebClient(url, { WebSocket }) })
  void shared
  return { transport, echo: createClient(service, transport) }
}
