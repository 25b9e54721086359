/**
 * A typed client for a whole service, built from a protobufjs reflection
 * Service (protobufjs/light with JSON descriptors, or a parsed .proto).
 * protobufjs is not imported here: the shapes below are the few members the
 * helper uses, so the client bundle does not grow by the codec.
 */
import type { GrpcWsClient } from './client.js'
import type { BidiCall, CallOptions, MethodDescriptor, StreamCall, UnaryCall } from './types.js'

/** The members of a protobufjs `Type` used here. */
export interface ProtobufType {
  encode (message: any): { finish (): Uint8Array }
  decode (bytes: Uint8Array): any
  fromObject (object: Record<string, any>): any
  toObject (message: any, options?: object): any
}

/** The members of a protobufjs `Method` used here. */
export interface ProtobufMethod {
  name: string
  requestStream?: boolean
  responseStream?: boolean
  resolvedRequestType: ProtobufType | null
  resolvedResponseType: ProtobufType | null
}

/** The members of a protobufjs `Service` used here. */
export interface ProtobufService {
  fullName: string
  methodsArray: ProtobufMethod[]
  resolveAll (): unknown
}

// The kind of each method, with its request and response types, declared by
// the application: `{ sayHello: Unary<HelloRequest, HelloReply> }`.
export interface Unary<I, O> { kind: 'unary', types?: [I, O] }
export interface ServerStreaming<I, O> { kind: 'server-streaming', types?: [I, O] }
export interface ClientStreaming<I, O> { kind: 'client-streaming', types?: [I, O] }
export interface BidiStreaming<I, O> { kind: 'bidi', types?: [I, O] }
export type MethodKind = Unary<any, any> | ServerStreaming<any, any> | ClientStreaming<any, any> | BidiStreaming<any, any>

/** The client for a service shape `S`: one function per method, typed by its kind. */
export type ServiceClient<S extends { [K in keyof S]: MethodKind }> = {
  [K in keyof S]:
  S[K] extends Unary<infer I, infer O> ? (request: I, options?: CallOptions) => UnaryCall<O>
    : S[K] extends ServerStreaming<infer I, infer O> ? (request: I, options?: CallOptions) => StreamCall<O>
      : S[K] extends ClientStreaming<infer I, infer O> ? (requests: AsyncIterable<I> | Iterable<I>, options?: CallOptions) => UnaryCall<O>
        : S[K] extends BidiStreaming<infer I, infer O> ? (options?: CallOptions) => BidiCall<I, O>
          : never
}

export interface ServiceClientOptions {
  /**
   * How responses become plain objects: protobufjs `toObject` options.
   * Default `{ defaults: true, longs: String }`, as grpc-js's proto-loader
   * with `longs: String`: 64-bit integers as decimal strings (exact, where a
   * number is not past 2^53), enums as numbers, bytes as Uint8Array. E.g.
   * add `enums: String, oneofs: true`; replacing it drops the defaults.
   */
  conversion?: object
}

/** The method descriptors of a protobufjs service, keyed by method name. */
export function methodsOf (service: ProtobufService, options: ServiceClientOptions = {}): Record<string, MethodDescriptor<any, any>> {
  service.resolveAll()
  const conversion = options.conversion ?? { defaults: true, longs: String }
  const methods: Record<string, MethodDescriptor<any, any>> = {}
  for (const method of service.methodsArray) {
    const requestType = method.resolvedRequestType!
    const responseType = method.resolvedResponseType!
    methods[method.name] = {
      path: `/${service.fullName.replace(/^\./, '')}/${method.name}`,
      requestStream: !!method.requestStream,
      responseStream: !!method.responseStream,
      serialize: request => requestType.encode(requestType.fromObject(request)).finish(),
      deserialize: bytes => responseType.toObject(responseType.decode(bytes), conversion)
    }
  }
  return methods
}

/**
 * One function per method of `service`, under its lowerCamelCase name
 * (`SayHello` → `sayHello`, as protobufjs names them) and its own name. The
 * kind of each call comes from the service; its types from `S`.
 */
export function createServiceClient<S extends { [K in keyof S]: MethodKind }> (client: GrpcWsClient, service: ProtobufService, options?: ServiceClientOptions): ServiceClient<S> {
  const out: Record<string, (...args: any[]) => unknown> = {}
  for (const [name, method] of Object.entries(methodsOf(service, options))) {
    let call: (...args: any[]) => unknown
    if (method.requestStream) {
      call = method.responseStream
        ? (options?: CallOptions) => client.bidi(method, options)
        : (requests: Iterable<unknown>, options?: CallOptions) => client.clientStream(method, requests, options)
    } else {
      call = method.responseStream
        ? (request: unknown, options?: CallOptions) => client.serverStream(method, request, options)
        : (request: unknown, options?: CallOptions) => client.unary(method, request, options)
    }
    out[name] = out[name[0]!.toLowerCase() + name.slice(1)] = call
  }
  return out as ServiceClient<S>
}
