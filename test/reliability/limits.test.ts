import * as grpc from '@grpc/grpc-js'
import { EventEmitter } from 'node:events'
import t from 'tap'
import WebSocket from 'ws'
import type { FastifyGrpcWsOptions } from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { FrameType, SUBPROTOCOL } from '../../lib/protocol/frame.js'
import { buildCall, buildEmpty, NO_TIMEOUT } from '../../lib/protocol/payload.js'
import { buildMessageFrame } from '../../lib/protocol/outbound.js'
import { handlerEvent, parity, startEnv, unary, unaryError } from '../helpers/parity.js'
import { RawPeer } from '../helpers/raw-peer.js'
import { startPluginApp, type PluginApp } from '../helpers/plugin-app.js'
import { TestClient, testDefinition } from '../helpers/test-service.js'

const events = new EventEmitter()
events.setMaxListeners(0)

async function start (options: Partial<FastifyGrpcWsOptions>): Promise<PluginApp> {
  return await startPluginApp(options, { events })
}

async function upgradeStatus (url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  const socket = new WebSocket(url, [SUBPROTOCOL], options)
  return await new Promise<number>(resolve => {
    socket.once('open', () => { socket.terminate(); resolve(101) })
    socket.once('unexpected-response', (_req, res) => { resolve(res.statusCode ?? 0); socket.terminate() })
    socket.once('error', () => {})
  })
}

// Message size limits, the same on both transports.
const sizeEnv = await startEnv(t, {
  plugin: { maxReceiveMessageSize: 1024, maxSendMessageSize: 2048 },
  server: { 'grpc.max_receive_message_length': 1024, 'grpc.max_send_message_length': 2048 }
})

parity(t, sizeEnv, 'Should refuse a request over maxReceiveMessageSize with RESOURCE_EXHAUSTED and stay usable', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'echo', payload: Buffer.alloc(2000) })
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
  t.match(err.details, /Received message larger than max/)
  const { value } = await unary(client, { mode: 'echo', message: 'small' })
  t.equal(value.message, 'small', 'the next call on the same channel works')
})

parity(t, sizeEnv, 'Should refuse a response over maxSendMessageSize with RESOURCE_EXHAUSTED', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'size', size: 4000 })
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
  t.match(err.details, /Sent message larger than max/)
})

t.test('Should refuse upgrades beyond maxConnections with HTTP 503', async t => {
  const { app, url } = await start({ maxConnections: 2 })
  t.teardown(async () => await app.close())
  const peers = [await new RawPeer(url).open(), await new RawPeer(url).open()]
  t.teardown(() => { for (const p of peers) p.close() })
  t.equal(await upgradeStatus(url), 503)
  peers[0]!.close()
  await new Promise(resolve => setTimeout(resolve, 50))
  t.equal(await upgradeStatus(url), 101, 'a freed place can be taken again')
})

t.test('Should refuse cross-origin browser upgrades unless allowed', async t => {
  const same = await start({})
  t.teardown(async () => await same.app.close())
  const host = new URL(same.url).host
  t.equal(await upgradeStatus(same.url), 101, 'no Origin (a backend) is allowed')
  t.equal(await upgradeStatus(same.url, { origin: `http://${host}` }), 101, 'same origin is allowed')
  t.equal(await upgradeStatus(same.url, { origin: 'https://evil.example' }), 403, 'another origin is refused by default')
  t.equal(await upgradeStatus(same.url, { origin: 'not a url' }), 403)

  const listed = await start({ allowedOrigins: ['https://app.example'] })
  t.teardown(async () => await listed.app.close())
  t.equal(await upgradeStatus(listed.url, { origin: 'https://app.example' }), 101)
  t.equal(await upgradeStatus(listed.url, { origin: 'https://evil.example' }), 403)

  const fn = await start({ allowedOrigins: origin => origin.endsWith('.trusted.example') })
  t.teardown(async () => await fn.app.close())
  t.equal(await upgradeStatus(fn.url, { origin: 'https://a.trusted.example' }), 101)
  t.equal(await upgradeStatus(fn.url, { origin: 'https://trusted.example.evil' }), 403)

  const any = await start({ allowedOrigins: '*' })
  t.teardown(async () => await any.app.close())
  t.equal(await upgradeStatus(any.url, { origin: 'https://anywhere.example' }), 101)
})

t.test('Should close a connection left idle, and the channel reconnects for the next call', async t => {
  const { app, url } = await start({ idleTimeout: 100 })
  t.teardown(async () => await app.close())
  const peer = await new RawPeer(url).open()
  t.teardown(() => peer.close())
  t.equal(await peer.closed(2000), 1000)
  t.equal(peer.closeReason, 'idle timeout')
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => client.close())
  await unary(client, { mode: 'echo' })
  await new Promise(resolve => setTimeout(resolve, 300))
  const { value } = await unary(client, { mode: 'echo', message: 'after idle' })
  t.equal(value.message, 'after idle')
})

t.test('Should keep a connection with a call open past the idle timeout', async t => {
  const { app, url } = await start({ idleTimeout: 100 })
  t.teardown(async () => await app.close())
  const client = new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
  t.teardown(() => client.close())
  const { value } = await unary(client, { mode: 'delay', delayMs: 400, message: 'slow but alive' })
  t.equal(value.message, 'slow but alive')
})

t.test('Should detect a stalled peer by the ping timeout and cancel its calls', async t => {
  const { app, url } = await start({ pingInterval: 50, pingTimeout: 100 })
  t.teardown(async () => await app.close())
  // A peer that never answers pings, as a frozen tab or a dead network would.
  const stalled = await new RawPeer(url, { autoPong: false }).open()
  t.teardown(() => stalled.close())
  const cancelled = handlerEvent(events, 'stalled-call')
  stalled.send(
    buildCall(1, { path: '/test.Test/Unary', timeoutMs: NO_TIMEOUT, initialWindowSize: 65536, metadata: [] }),
    buildMessageFrame(1, 0, testDefinition.Unary!.requestSerialize({ mode: 'never', id: 'stalled-call' })),
    buildEmpty(FrameType.HALF_CLOSE, 1)
  )
  const event = await cancelled
  t.equal(event.event, 'cancelled', 'the handler sees cancelled')
  t.not(await stalled.closed(2000), null, 'the socket is closed')
  // A peer that answers pings stays.
  const healthy = await new RawPeer(url).open()
  t.teardown(() => healthy.close())
  await new Promise(resolve => setTimeout(resolve, 400))
  t.equal(healthy.closeCode, null, 'a peer that answers pings is kept')
  t.ok(healthy.frames.every(f => f.type !== FrameType.TRAILERS))
})
