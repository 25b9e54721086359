import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { EventEmitter } from 'node:events'
import { Writable } from 'node:stream'
import t from 'tap'
import WebSocket from 'ws'
import { startAuthServer } from '../examples/auth/server.js'
import { EchoClient } from '../examples/echo/server.js'
import fastifyGrpcWs, { fastifyRequestOf } from '../index.js'
import { createWebSocketChannel } from '../lib/client/grpc-js/index.js'
import { createClient, Status, type MethodDescriptor } from '../lib/client/web/index.js'
import { SUBPROTOCOL } from '../lib/protocol/frame.js'
import { unary } from './helpers/parity.js'
import { startUpgradeProxy } from './helpers/upgrade-proxy.js'
import { TestClient, createTestService, testDefinition } from './helpers/test-service.js'

const server = await startAuthServer()
t.teardown(server.close)

async function upgrade (url: string, protocols: string[], headers: Record<string, string> = {}): Promise<number> {
  const socket = new WebSocket(url, protocols, { headers })
  return await new Promise<number>(resolve => {
    socket.once('open', () => { socket.terminate(); resolve(101) })
    socket.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); socket.terminate() })
    socket.once('error', () => {})
  })
}

function echo (client: any, message: string, metadata = new grpc.Metadata()): Promise<{ message?: string, code?: number, details?: string }> {
  return new Promise(resolve => client.Echo({ message }, metadata, (err: grpc.ServiceError | null, value: any) => {
    resolve(err === null ? { message: value.message } : { code: err.code, details: err.details })
  }))
}

t.test('Should refuse an upgrade without a token with HTTP 401, a bad token with 403', async t => {
  t.equal(await upgrade(server.wsUrl, [SUBPROTOCOL]), 401)
  t.equal(await upgrade(`${server.wsUrl}?token=wrong`, [SUBPROTOCOL]), 403)
})

t.test('Should accept the token as a query parameter, a cookie, or a subprotocol value', async t => {
  t.equal(await upgrade(`${server.wsUrl}?token=secret-token`, [SUBPROTOCOL]), 101)
  t.equal(await upgrade(server.wsUrl, [SUBPROTOCOL], { cookie: 'theme=dark; session=secret-token' }), 101)
  t.equal(await upgrade(server.wsUrl, [SUBPROTOCOL, 'bearer.other-token']), 101)
})

t.test('Should reach the user the upgrade authenticated from the handler and the interceptor', async t => {
  const client = new EchoClient('ignored', grpc.credentials.createInsecure(), {
    channelOverride: createWebSocketChannel(server.wsUrl, { webSocketOptions: { protocol: undefined, headers: { cookie: 'session=other-token' } } })
  })
  t.teardown(() => client.close())
  t.same(await echo(client, 'hello'), { message: 'hello, grace' })
})

t.test('Should check the HTTP fallback\'s calls in the same hook: the token from the query, none → UNAUTHENTICATED (HTTP 401)', async t => {
  const proxy = await startUpgradeProxy(t, Number(new URL(server.wsUrl).port))
  const url = `ws://127.0.0.1:${proxy.port}/grpc`
  const method = EchoClient.service.Echo
  const echoMethod: MethodDescriptor<{ message: string }, { message: string }> = {
    path: method.path,
    serialize: request => method.requestSerialize(request),
    deserialize: bytes => method.responseDeserialize(Buffer.from(bytes))
  }
  const signedIn = createClient(`${url}?token=secret-token`, { WebSocket })
  const anonymous = createClient(url, { WebSocket })
  t.teardown(() => { signedIn.close(); anonymous.close() })
  t.equal((await signedIn.unary(echoMethod, { message: 'hi' })).message, 'hi, ada')
  t.equal(signedIn.transport, 'http', 'over the fallback: the proxy refused the upgrade')
  const err = await anonymous.unary(echoMethod, { message: 'hi' }).then(() => null, (e: unknown) => e as { code: number, details: string })
  t.equal(err?.code, Status.UNAUTHENTICATED)
  t.match(err?.details, /^HTTP 401 from http:\/\/127\.0\.0\.1:\d+\/grpc\/echo\.Echo\/Echo, and the WebSocket could not be opened/)
})

t.test('Should run the same interceptor over HTTP/2, with the token in metadata', async t => {
  const client = new EchoClient(server.grpcAddress, grpc.credentials.createInsecure())
  t.teardown(() => client.close())
  t.same(await echo(client, 'hi'), { code: grpc.status.UNAUTHENTICATED, details: 'sign in first' })
  const md = new grpc.Metadata()
  md.set('authorization', 'Bearer secret-token')
  t.same(await echo(client, 'hi', md), { message: 'hi, ada' })
})

t.test('Should give handlers no Fastify request for calls over HTTP/2', async t => {
  t.equal(fastifyRequestOf({ metadata: new grpc.Metadata() }), undefined)
})

t.test('Should log through Fastify, per connection and per call, without metadata values', async t => {
  const lines: any[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done() } })
  const app = Fastify({ logger: { level: 'debug', stream } })
  await app.register(fastifyGrpcWs, { services: [{ definition: testDefinition, implementation: createTestService(new EventEmitter()) }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => await app.close())
  const url = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => client.close())
  const md = new grpc.Metadata()
  md.set('authorization', 'Bearer very-secret')
  md.set('x-key-bin', Buffer.from('binary-secret'))
  await unary(client, { mode: 'echo' }, md)
  const ended = lines.find(l => l.msg === 'call ended')
  t.ok(ended, 'a call is logged when it ends')
  t.equal(ended.method, '/test.Test/Unary')
  t.equal(ended.code, 0)
  t.match(ended.peer, /^127\.0\.0\.1:\d+$/, 'on the connection\'s child logger')
  t.ok(ended.reqId, 'which is a child of the upgrade request\'s logger')
  const all = JSON.stringify(lines)
  t.notOk(all.includes('very-secret'), 'authorization values are never logged')
  t.notOk(all.includes('binary-secret') || all.includes(Buffer.from('binary-secret').toString('base64')), '-bin values are never logged')
  const raw = new WebSocket(url, [SUBPROTOCOL])
  await new Promise(resolve => raw.once('open', resolve))
  raw.send('text')
  await new Promise(resolve => raw.once('close', resolve))
  t.ok(lines.some(l => l.msg === 'protocol error: closing the connection' && l.closeCode === 1003), 'protocol errors are logged with their close code')
})
