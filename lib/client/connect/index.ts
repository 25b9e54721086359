/**
 * `fastify-grpc-ws/connect`: Connect (`@connectrpc/connect` v2) clients over
 * the plugin's multiplexed WebSocket: all four kinds of call, in browsers
 * too. Browser-safe; @connectrpc/connect and @bufbuild/protobuf are the
 * app's own (optional peer dependencies).
 */
export { createWebSocketTransport, type WebSocketTransport, type WebSocketTransportOptions } from './transport.js'
export { serviceDescFromDefinition, type LoadedDefinition } from './descriptors.js'
export type { CodedError } from './errors.js'
