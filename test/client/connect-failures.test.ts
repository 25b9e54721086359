// A connection that cannot be made says why, on both clients: UNAVAILABLE
// with the URL and the reason (ws's error: the refused connection, the HTTP
// status of a refused upgrade, TLS against a plain server, HTTP/2 where
// HTTP/1.1 was expected), and that error as `cause`. A URL that is not one
// throws the coded FST_GRPCWS_INVALID_CLIENT_OPTION.
import * as grpc from '@grpc/grpc-js'
import { createServer, type AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { createClient, GrpcError, Status } from '../../lib/client/web/index.js'
import { unaryError } from '../helpers/parity.js'
import { startPluginApp } from '../helpers/plugin-app.js'
import { startRawServer } from '../helpers/raw-server.js'
import { TestClient } from '../helpers/test-service.js'
import { rejection, webClient } from '../helpers/web-client.js'

interface Failure { code: number, details: string, cause: unknown, message: string }

type Transport = (url: string, origin?: string) => Promise<Failure>

/** One unary call through each client; what it fails with. */
const transports: Record<string, Transport> = {
  'browser client': async (url, origin) => {
    // ws takes an Origin as an option: a browser page would send its own.
    const Ctor = origin === undefined ? WebSocket : class extends WebSocket { constructor (u: string, p: string | string[]) { super(u, p, { origin }) } }
    // The WebSocket's own report: with the HTTP fallback on, these calls would
    // go over HTTP instead (web-http-fallback.test.ts checks what that says).
    const { client, test } = webClient(url, { WebSocket: Ctor, transports: ['websocket'] })
    try {
      const err = await rejection(async () => await test.unary({ mode: 'echo' }))
      if (!(err instanceof GrpcError)) throw err
      return { code: err.code, details: err.details, cause: err.cause, message: err.message }
    } finally { client.close() }
  },
  'grpc-js channel': async (url, origin) => {
    const client = new TestClient('ignored', grpc.credentials.createInsecure(), {
      channelOverride: createWebSocketChannel(url, origin === undefined ? {} : { webSocketOptions: { origin } })
    })
    try {
      const err = await unaryError(client, { mode: 'echo' }) as grpc.ServiceError & { cause?: unknown }
      return { code: err.code, details: err.details, cause: err.cause, message: err.message }
    } finally { client.close() }
  }
}

async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

function expectFailure (t: Test, failure: Failure, url: string, reason: RegExp, causeCode?: string): void {
  t.equal(failure.code, Status.UNAVAILABLE)
  t.ok(failure.details.startsWith(`Connection to ${url} failed: `), failure.details)
  t.match(failure.details, reason)
  t.equal(failure.message, `14 UNAVAILABLE: ${failure.details}`)
  t.type(failure.cause, Error, 'the underlying error is the cause')
  t.ok(failure.details.endsWith((failure.cause as Error).message.trim()), 'the message ends with the cause\'s')
  if (causeCode !== undefined) t.equal((failure.cause as { code?: string }).code, causeCode)
}

for (const [name, call] of Object.entries(transports)) {
  t.test(`${name}: a closed port gives ECONNREFUSED with the URL`, async t => {
    const url = `ws://127.0.0.1:${await closedPort()}/grpc`
    const failure = await call(url)
    expectFailure(t, failure, url, /: connect ECONNREFUSED 127\.0\.0\.1:\d+$/, 'ECONNREFUSED')
  })

  t.test(`${name}: a wrong path gives the HTTP 404 of the refused upgrade`, async t => {
    const { app, port } = await startPluginApp()
    t.teardown(async () => await app.close())
    const url = `ws://127.0.0.1:${port}/wrong`
    expectFailure(t, await call(url), url, /: Unexpected server response: 404$/)
  })

  t.test(`${name}: a refused origin gives HTTP 403`, async t => {
    const { app, url } = await startPluginApp({ allowedOrigins: ['https://app.example'] })
    t.teardown(async () => await app.close())
    expectFailure(t, await call(url, 'https://evil.example'), url, /: Unexpected server response: 403$/)
  })

  t.test(`${name}: the connection limit gives HTTP 503`, async t => {
    const { app, url } = await startPluginApp({ maxConnections: 1 })
    const holder = new WebSocket(url, 'grpc-ws.v1')
    await new Promise((resolve, reject) => { holder.once('open', resolve).once('error', reject) })
    t.teardown(async () => {
      holder.terminate()
      await app.close()
    })
    expectFailure(t, await call(url), url, /: Unexpected server response: 503$/)
  })

  t.test(`${name}: wss: against a plain server gives the TLS error`, async t => {
    const { app, port } = await startPluginApp()
    t.teardown(async () => await app.close())
    const url = `wss://127.0.0.1:${port}/grpc`
    expectFailure(t, await call(url), url, /wrong version number/, 'EPROTO')
  })

  t.test(`${name}: a grpc-js HTTP/2 port gives the HTTP/1.1 parse error`, async t => {
    const server = new grpc.Server()
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => { err === null ? resolve(bound) : reject(err) })
    })
    t.teardown(() => { server.forceShutdown() })
    const url = `ws://127.0.0.1:${port}/grpc`
    expectFailure(t, await call(url), url, /: Parse Error: Expected HTTP\//, 'HPE_INVALID_CONSTANT')
  })

  t.test(`${name}: a close before SETTINGS names its code and reason`, async t => {
    const server = await startRawServer({}, { sendSettings: false, onConnection: conn => { conn.socket.close(1013, 'busy, try later') } })
    t.teardown(async () => await server.close())
    const failure = await call(server.url)
    t.same([failure.code, failure.details], [Status.UNAVAILABLE, `Connection to ${server.url} closed before it was ready (code 1013: busy, try later)`])
  })
}

t.test('Should throw FST_GRPCWS_INVALID_CLIENT_OPTION for a URL that is not a WebSocket URL', async t => {
  for (const url of ['127.0.0.1:3100', 'not a url', 'http://127.0.0.1/grpc', 'ftp://127.0.0.1/grpc']) {
    t.throws(() => createWebSocketChannel(url), {
      code: 'FST_GRPCWS_INVALID_CLIENT_OPTION',
      message: `fastify-grpc-ws: invalid client option "url": expected a ws: or wss: URL, got ${url}`
    }, url)
  }
  // No page to resolve a path against here (Node): only absolute URLs.
  for (const url of ['not a url', '/grpc', 'ftp://127.0.0.1/grpc', '127.0.0.1:3100']) {
    t.throws(() => createClient(url, { WebSocket }), {
      code: 'FST_GRPCWS_INVALID_CLIENT_OPTION',
      message: `fastify-grpc-ws: invalid client option "url": not a ws:, wss:, http: or https: URL: ${url}`
    }, url)
  }
  for (const thrower of [() => createWebSocketChannel('x'), () => createClient('x', { WebSocket })]) {
    let thrown: unknown
    try { thrower() } catch (err) { thrown = err }
    t.type(thrown, TypeError, 'a TypeError, as the other option errors')
  }
  t.equal(createClient('https://127.0.0.1:8443/grpc', { WebSocket }).url, 'wss://127.0.0.1:8443/grpc', 'http(s) maps to ws(s)')
})
