/**
 * The test service's messages for the browser pages, without grpc-js or
 * proto-loader (Node-only): protobufjs/light over a JSON descriptor of
 * test/fixtures/test.proto (the 'test-descriptor' virtual module), and
 * what @improbable-eng/grpc-web and nice-grpc-web want in place of
 * generated code.
 */
import type { MethodDefinition } from 'nice-grpc-web'
import protobuf from 'protobufjs/light.js'
import descriptor from 'test-descriptor'

export interface Request { mode?: string, message?: string, payload?: Uint8Array, code?: number, details?: string, count?: number, size?: number, delayMs?: number, id?: string }
export interface Response { message: string, payload: Uint8Array }

const root = protobuf.Root.fromJSON(descriptor)
export const RequestType = root.lookupType('test.Request')
export const ResponseType = root.lookupType('test.Response')
const CONVERSION = { defaults: true, longs: String }

export const encodeRequest = (value: Request): Uint8Array => RequestType.encode(RequestType.fromObject(value)).finish()
export const decodeRequest = (bytes: Uint8Array): Request => RequestType.toObject(RequestType.decode(bytes), CONVERSION) as Request
export const encodeResponse = (value: Response): Uint8Array => ResponseType.encode(ResponseType.fromObject(value)).finish()
export const decodeResponse = (bytes: Uint8Array): Response => ResponseType.toObject(ResponseType.decode(bytes), CONVERSION) as Response

// improbable wants protoc-gen-ts style classes (serializeBinary,
// static deserializeBinary, toObject); these wrap protobufjs.
export class RequestMessage {
  constructor (readonly value: Request = {}) {}
  toObject (): Request { return this.value }
  serializeBinary (): Uint8Array { return encodeRequest(this.value) }
  static deserializeBinary (bytes: Uint8Array): RequestMessage { return new RequestMessage(decodeRequest(bytes)) }
}

export class ResponseMessage {
  constructor (readonly value: Response = { message: '', payload: new Uint8Array() }) {}
  toObject (): Response { return this.value }
  serializeBinary (): Uint8Array { return encodeResponse(this.value) }
  static deserializeBinary (bytes: Uint8Array): ResponseMessage { return new ResponseMessage(decodeResponse(bytes)) }
}

/** An improbable method descriptor, as protoc-gen-ts would generate it. */
export function improbableMethod (methodName: string, requestStream: boolean, responseStream: boolean, serviceName = 'test.Test') {
  return { methodName, service: { serviceName }, requestStream, responseStream, requestType: RequestMessage, responseType: ResponseMessage }
}
export type ImprobableMethod = ReturnType<typeof improbableMethod>

/** A nice-grpc-web method definition over the same types. */
export function niceMethod<RS extends boolean, SS extends boolean> (name: string, requestStream: RS, responseStream: SS, serviceName = 'test.Test'): MethodDefinition<Request, Request, Response, Response, RS, SS> {
  return {
    path: `/${serviceName}/${name}`,
    requestStream,
    responseStream,
    requestSerialize: encodeRequest,
    requestDeserialize: decodeRequest,
    responseSerialize: encodeResponse,
    responseDeserialize: decodeResponse,
    options: {}
  }
}
