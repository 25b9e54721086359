/**
 * `fastify-grpc-ws/client/websocket`: the browser client over one
 * multiplexed WebSocket only, without the HTTP fallback that
 * `fastify-grpc-ws/client` adds. No Node built-ins, no Buffer, no protobuf
 * library inside.
 */
export { createClient, GrpcWsClient, type ClientOptions, type ConnectionState, type Transport } from './client.js'
export { GrpcError, Status, type StatusCode } from './errors.js'
export { Metadata, type MetadataInit, type MetadataValue } from './metadata.js'
export {
  createServiceClient, methodsOf, type BidiStreaming, type ClientStreaming, type MethodKind, type ProtobufMethod,
  type ProtobufService, type ProtobufType, type ServerStreaming, type ServiceClient, type ServiceClientOptions, type Unary
} from './service.js'
export type { BidiCall, CallInfo, CallOptions, MethodDescriptor, StreamCall, UnaryCall } from './types.js'
export type { BackoffOptions } from '../backoff.js'
export type { WebSocketConstructor, WebSocketLike } from '../session.js'
