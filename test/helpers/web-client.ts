/**
 * The browser client (`fastify-grpc-ws/client`) as Node tests use it: over
 * `ws`, with the test service typed from protobufjs reflection.
 */
import protobuf from 'protobufjs'
import { fileURLToPath } from 'node:url'
import WebSocket from 'ws'
import {
  createClient, createServiceClient, type BidiStreaming, type ClientOptions, type ClientStreaming,
  type GrpcWsClient, type ServerStreaming, type ServiceClient, type Unary
} from '../../lib/client/web/index.js'
import type { Request, Response } from './test-service.js'

const protoPath = fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))
export const testRoot = protobuf.loadSync(protoPath)
export const testService = testRoot.lookupService('test.Test')

export interface TestService {
  unary: Unary<Request, Response>
  serverStream: ServerStreaming<Request, Response>
  clientStream: ClientStreaming<Request, Response>
  bidi: BidiStreaming<Request, Response>
  missing: Unary<Request, Response>
}

/** The typed test service over `client`. */
export function typed (client: GrpcWsClient): ServiceClient<TestService> {
  // As grpc-js's proto-loader in test-service.ts: defaults filled in, longs as strings.
  return createServiceClient<TestService>(client, testService, { conversion: { defaults: true, longs: String } })
}

/** A client over `ws` (unless `options.WebSocket` says otherwise) and the typed test service on it. */
export function webClient (url: string, options: ClientOptions = {}): { client: GrpcWsClient, test: ServiceClient<TestService> } {
  const client = createClient(url, { WebSocket, ...options })
  return { client, test: typed(client) }
}

/** Runs `body` and returns the GrpcError it rejects with (fails the test if it resolves). */
export async function rejection (body: () => Promise<unknown>): Promise<any> {
  try {
    await body()
  } catch (err) {
    return err
  }
  throw new Error('expected a failure, got a result')
}
