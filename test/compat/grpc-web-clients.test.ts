/**
 * Stock gRPC-Web clients, unmodified and without generated code, against
 * the plugin's gRPC-Web route in Node 20 over HTTP/1.1 loopback:
 * connect-web's createGrpcWebTransport (fetch), connect-node's gRPC-Web
 * transport (which streams request bodies: client streaming), the official
 * grpc-web client (XHR, through xhr2) in text and in binary mode,
 * @improbable-eng/grpc-web's NodeHttpTransport and its
 * CrossBrowserHttpTransport (which takes Node 20's fetch, as it would a
 * browser's) and nice-grpc-web's FetchTransport. Each runs the interop list of test/helpers/http-interop.ts.
 *
 * Client quirks: the official client, improbable and nice-grpc-web have no
 * deadline option that reaches the server, so they send `grpc-timeout`
 * (official: a `deadline` metadata entry, which it turns into grpc-timeout);
 * improbable, nice-grpc-web and the official client take `-bin` metadata as
 * base64 text or bytes as each documents.
 */
import { createGrpcWebTransport } from '@connectrpc/connect-web'
import { createGrpcWebTransport as createNodeGrpcWebTransport } from '@connectrpc/connect-node'
import t from 'tap'
import { connectClient, improbableClient, niceClient, officialClient } from '../helpers/http-clients.js'
import { interop, startHttpEnv } from '../helpers/http-interop.js'

const env = await startHttpEnv(t)
interop(t, env, connectClient('connect-web gRPC-Web', createGrpcWebTransport({ baseUrl: env.base })))
interop(t, env, connectClient('connect-node gRPC-Web HTTP/1.1', createNodeGrpcWebTransport({ baseUrl: env.base, httpVersion: '1.1' }), { clientStreaming: true }))
interop(t, env, officialClient(env.base, 'text'))
interop(t, env, officialClient(env.base, 'binary'))
interop(t, env, improbableClient(env.base))
interop(t, env, improbableClient(env.base, 'cross-browser'))
interop(t, env, niceClient(env.base))
