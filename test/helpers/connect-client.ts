/**
 * Connect clients (`createClient` from @connectrpc/connect) of the test
 * service over the WebSocket transport, as Node tests use them: over `ws`,
 * with the service's descriptors taken from the grpc-js definition.
 */
import { createClient } from '@connectrpc/connect'
import WebSocket from 'ws'
import { createWebSocketTransport, serviceDescFromDefinition, type WebSocketTransport, type WebSocketTransportOptions } from '../../lib/client/connect/index.js'
import { testDefinition } from './test-service.js'

export const testDesc = serviceDescFromDefinition(testDefinition as any, 'test.Test')

/** The test service's methods under Connect's names (unary, serverStream, clientStream, bidi, missing). */
export type ConnectTestClient = Record<'unary' | 'serverStream' | 'clientStream' | 'bidi' | 'missing', (...args: any[]) => any>

export function connectClient (url: string, options: Omit<WebSocketTransportOptions, 'baseUrl'> = {}): { transport: WebSocketTransport, test: ConnectTestClient } {
  const transport = createWebSocketTransport(options.client !== undefined ? options : { baseUrl: url, WebSocket, ...options })
  return { transport, test: createClient(testDesc, transport) as unknown as ConnectTestClient }
}
