import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { fileURLToPath } from 'node:url'

// The messages, as proto-loader gives them with `defaults: true`.
export interface EchoRequest { message: string, count: number }
export interface EchoResponse { message: string }

// Plain grpc-js handlers: the same ones serve WebSocket and HTTP/2.
const echo: grpc.handleUnaryCall<EchoRequest, EchoResponse> = (call, callback) => {
  callback(null, { message: call.request.message })
}
const serverStream: grpc.handleServerStreamingCall<EchoRequest, EchoResponse> = call => {
  for (let i = 1; i <= call.request.count; i++) call.write({ message: `${call.request.message} #${i}` })
  call.end()
}
const clientStream: grpc.handleClientStreamingCall<EchoRequest, EchoResponse> = (call, callback) => {
  const words: string[] = []
  call.on('data', (request: EchoRequest) => words.push(request.message))
  call.on('end', () => { callback(null, { message: words.join(' ') }) })
}
const bidi: grpc.handleBidiStreamingCall<EchoRequest, EchoResponse> = call => {
  call.on('data', (request: EchoRequest) => call.write({ message: request.message.toUpperCase() }))
  call.on('end', () => { call.end() })
}
export const implementation: grpc.UntypedServiceImplementation = {
  Echo: echo, ServerStream: serverStream, ClientStream: clientStream, Bidi: bidi
}

// A typed client: the shape proto-loader-gen-types would generate, by hand.
export interface EchoClient extends grpc.Client {
  Echo (request: Partial<EchoRequest>, options: grpc.CallOptions, callback: grpc.requestCallback<EchoResponse>): grpc.ClientUnaryCall
  ServerStream (request: Partial<EchoRequest>, options?: grpc.CallOptions): grpc.ClientReadableStream<EchoResponse>
  ClientStream (options: grpc.CallOptions, callback: grpc.requestCallback<EchoResponse>): grpc.ClientWritableStream<Partial<EchoRequest>>
  Bidi (options?: grpc.CallOptions): grpc.ClientDuplexStream<Partial<EchoRequest>, EchoResponse>
}
interface EchoClientConstructor {
  new (address: string, credentials: grpc.ChannelCredentials, options?: grpc.ClientOptions): EchoClient
  service: grpc.ServiceDefinition
}

const packageDefinition = loader.loadSync(fileURLToPath(new URL('echo.proto', import.meta.url)), { defaults: true })
const proto = grpc.loadPackageDefinition(packageDefinition) as unknown as { echo: { Echo: EchoClientConstructor } }
export const EchoClient = proto.echo.Echo
