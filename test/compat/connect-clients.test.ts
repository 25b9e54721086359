/**
 * Stock Connect clients, unmodified and without generated code (the
 * DescService comes from the grpc-js definition's descriptors), against the
 * plugin's Connect route in Node 20 over HTTP/1.1 loopback: connect-web's
 * createConnectTransport (fetch) in binary and in JSON, the same with
 * `useHttpGet: true` (its unary calls to test.Test/Unary, marked
 * `idempotency_level = NO_SIDE_EFFECTS`, go as GET with the message in the
 * URL), and connect-node's Connect transport (which streams request
 * bodies: client streaming) in binary and JSON. Each runs the interop list
 * of test/helpers/http-interop.ts; the GET ones with a request small
 * enough for a URL (Node's 16 KiB bound on the request line and headers).
 */
import { createConnectTransport } from '@connectrpc/connect-web'
import { createConnectTransport as createNodeConnectTransport } from '@connectrpc/connect-node'
import t from 'tap'
import { connectClient } from '../helpers/http-clients.js'
import { interop, startHttpEnv } from '../helpers/http-interop.js'

const env = await startHttpEnv(t)
interop(t, env, connectClient('connect-web Connect binary', createConnectTransport({ baseUrl: env.base, useBinaryFormat: true })))
interop(t, env, connectClient('connect-web Connect JSON', createConnectTransport({ baseUrl: env.base })))
interop(t, env, connectClient('connect-node Connect binary HTTP/1.1', createNodeConnectTransport({ baseUrl: env.base, httpVersion: '1.1', useBinaryFormat: true }), { clientStreaming: true }))
interop(t, env, connectClient('connect-node Connect JSON HTTP/1.1', createNodeConnectTransport({ baseUrl: env.base, httpVersion: '1.1' }), { clientStreaming: true }))

// A URL carries about 12 KiB of base64 below Node's 16 KiB header bound.
const getEnv = await startHttpEnv(t)
const maxUnaryRequest = 8 * 1024
interop(t, getEnv, connectClient('connect-web Connect binary GET', createConnectTransport({ baseUrl: getEnv.base, useBinaryFormat: true, useHttpGet: true }), { maxUnaryRequest }))
interop(t, getEnv, connectClient('connect-web Connect JSON GET', createConnectTransport({ baseUrl: getEnv.base, useHttpGet: true }), { maxUnaryRequest }))

t.test('with useHttpGet, connect-web sent the calls to the side-effect-free method as GET, the others as POST', async t => {
  const methodsOf = (path: string): string[] => [...new Set(getEnv.requests.filter(r => r.includes(path)).map(r => r.split(' ')[0]!))]
  t.same(methodsOf('/test.Test/Unary'), ['GET'])
  t.same(methodsOf('/test.Nope/'), ['GET'], 'the unknown service, called with the descriptor of Unary')
  t.same(methodsOf('/test.Test/ServerStream'), ['POST'])
  t.same(methodsOf('/test.Test/Missing'), ['POST'], 'not marked free of side effects')
})
