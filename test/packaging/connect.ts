/**
 * Type-checked by scripts/test-package.mjs inside the temporary apps: the
 * `fastify-grpc-ws/connect` entry point with the app's own Connect and
 * protobuf-es (its optional peers), descriptors from proto-loader; the
 * browser client's two entries (with and without the HTTP fallback).
 */
import { createClient, type Transport } from '@connectrpc/connect'
import type { DescService } from '@bufbuild/protobuf'
import * as loader from '@grpc/proto-loader'
import { createWebSocketTransport, serviceDescFromDefinition, type WebSocketTransport } from 'fastify-grpc-ws/connect'
import { createClient as createWebClient, type ClientOptions } from 'fastify-grpc-ws/client'
import { createClient as createWebSocketOnlyClient, type GrpcWsClient } from 'fastify-grpc-ws/client/websocket'
import WebSocket from 'ws'

export function echoClient (url: string): { transport: WebSocketTransport, echo: ReturnType<typeof createClient<DescService>> } {
  const service: DescService = serviceDescFromDefinition(loader.loadSync('echo.proto'), 'echo.Echo')
  const transport = createWebSocketTransport({ baseUrl: url, WebSocket, defaultTimeoutMs: 5000, interceptors: [next => async req => await next(req)] })
  const options: ClientOptions = { WebSocket, transports: ['websocket', 'http'], retryMs: 5000 }
  const shared: Transport = createWebSocketTransport({ client: createWebClient(url, options) })
  // The WebSocket-only entry's client can be shared too.
  const plain: GrpcWsClient = createWebSocketOnlyClient(url, { WebSocket })
  const sharedPlain: Transport = createWebSocketTransport({ client: plain })
  void shared
  void sharedPlain
  return { transport, echo: createClient(service, transport) }
}
