/**
 * `fastify-grpc-ws/client`: call the plugin's services from a browser (or
 * from Node, with `ws`) over one multiplexed WebSocket, and over gRPC-Web
 * with fetch where a WebSocket cannot be opened. No Node built-ins, no
 * Buffer, no protobuf library inside.
 *
 * `fastify-grpc-ws/client/websocket` is the same client without the HTTP
 * fallback, for apps that never need it.
 */
export * from './websocket.js'
// Named exports win over the star's: createClient and its options here are the ones with the fallback.
export { createClient, HttpFallbackClient, type HttpFallbackOptions, type HttpFallbackOptions as ClientOptions } from './http.js'
