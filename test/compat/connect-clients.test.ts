/**
 * Stock Connect clients, unmodified and without generated code (the
 * DescService comes from the grpc-js definition's descriptors), against the
 * plugin's Connect route in Node 20 over HTTP/1.1 loopback: connect-web's
 * createConnectTransport (fetch) in binary and in JSON, and connect-node's
 * Connect transport (which streams request bodies: client streaming) in
 * binary. Each runs the interop list of test/helpers/http-interop.ts.
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
