/**
 * The HTTP routes when Fastify serves HTTP/2 (h2c): connect-node's gRPC-Web
 * and Connect transports over HTTP/2 run the interop list, client
 * streaming, and bidi in full duplex (each request sent only after the
 * previous answer), which HTTP/2 streams allow.
 */
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node'
import t from 'tap'
import { connectClient } from '../helpers/http-clients.js'
import { interop, startHttpEnv } from '../helpers/http-interop.js'

const env = await startHttpEnv(t, {}, { http2: true })
interop(t, env, connectClient('connect-node gRPC-Web HTTP/2', createGrpcWebTransport({ baseUrl: env.base, httpVersion: '2' }), { clientStreaming: true, bidi: true }))
interop(t, env, connectClient('connect-node Connect binary HTTP/2', createConnectTransport({ baseUrl: env.base, httpVersion: '2', useBinaryFormat: true }), { clientStreaming: true, bidi: true }))

