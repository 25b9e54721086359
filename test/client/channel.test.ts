import * as grpc from '@grpc/grpc-js'
import type { FastifyRequest } from 'fastify'
import t from 'tap'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'
import { unary, unaryError } from '../helpers/parity.js'
import { startPluginApp, type PluginApp, type PluginAppOptions } from '../helpers/plugin-app.js'
import { TestClient } from '../helpers/test-service.js'

async function startApp (port = 0, setup?: PluginAppOptions['setup']): Promise<PluginApp> {
  return await startPluginApp({}, { port, setup })
}

function clientOn (channel: grpc.ChannelInterface): any {
  return new TestClient('ignored', grpc.credentials.createInsecure(), { channelOverride: channel })
}

t.test('Should refuse a URL that is not ws: or wss:', async t => {
  t.throws(() => createWebSocketChannel('http://127.0.0.1/grpc'), { code: 'FST_GRPCWS_INVALID_CLIENT_OPTION' })
  t.throws(() => createWebSocketChannel(42 as any), { code: 'FST_GRPCWS_INVALID_CLIENT_OPTION' })
})

t.test('Should connect lazily, queue calls until ready, and report its state', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const channel = createWebSocketChannel(url)
  t.equal(channel.getTarget(), url)
  t.equal(channel.getConnectivityState(false), grpc.connectivityState.IDLE, 'no socket before the first call')
  const client = clientOn(channel)
  const calls = [unary(client, { mode: 'echo', message: 'a' }), unary(client, { mode: 'echo', message: 'b' })]
  t.equal(channel.getConnectivityState(false), grpc.connectivityState.CONNECTING)
  const results = await Promise.all(calls)
  t.same(results.map(r => r.value.message), ['a', 'b'])
  t.equal(channel.getConnectivityState(false), grpc.connectivityState.READY)
  t.equal(app.grpc.connectionCount, 1, 'both calls shared one socket')
  client.close()
  t.equal(channel.getConnectivityState(false), grpc.connectivityState.SHUTDOWN)
  t.throws(() => channel.createCall('/test.Test/Unary', Infinity, undefined, null, undefined), /shut down/)
})

t.test('Should wait for readiness with waitForReady and watchConnectivityState', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const client = clientOn(createWebSocketChannel(url))
  t.teardown(() => client.close())
  await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 5000, (err: Error | undefined) => { err === undefined ? resolve() : reject(err) }))
  t.equal(client.getChannel().getConnectivityState(false), grpc.connectivityState.READY)
  const err = await new Promise<Error | undefined>(resolve => client.getChannel().watchConnectivityState(grpc.connectivityState.READY, Date.now() + 50, resolve))
  t.match(err?.message, /Deadline passed/)
})

t.test('Should fail calls with UNAVAILABLE when the server cannot be reached, then reconnect', async t => {
  const { app, url, port } = await startApp()
  await app.close()
  const client = clientOn(createWebSocketChannel(url))
  t.teardown(() => client.close())
  const err = await unaryError(client, { mode: 'echo' })
  t.equal(err.code, grpc.status.UNAVAILABLE)
  const again = await startApp(port)
  t.teardown(async () => await again.app.close())
  const { value } = await unary(client, { mode: 'echo', message: 'back' })
  t.equal(value.message, 'back', 'a new call opens a new socket')
})

t.test('Should fail calls in flight with UNAVAILABLE when the socket drops', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const client = clientOn(createWebSocketChannel(url))
  t.teardown(() => client.close())
  await unary(client, { mode: 'echo' })
  const pending = unaryError(client, { mode: 'never' })
  await new Promise(resolve => setTimeout(resolve, 30))
  for (const socket of app.websocketServer.clients) socket.terminate()
  const err = await pending
  t.equal(err.code, grpc.status.UNAVAILABLE)
  t.match(err.details, /Connection closed/)
})

t.test('Should fail calls with UNAVAILABLE after close()', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const channel = createWebSocketChannel(url)
  const client = clientOn(channel)
  const pending = unaryError(client, { mode: 'never' })
  await new Promise(resolve => setTimeout(resolve, 30))
  channel.close()
  const err = await pending
  t.equal(err.code, grpc.status.UNAVAILABLE)
})

t.test('Should add call credentials metadata, as the HTTP/2 channel does', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const client = clientOn(createWebSocketChannel(url))
  t.teardown(() => client.close())
  const seen: Array<{ method_name: string, service_url: string }> = []
  const credentials = grpc.credentials.createFromMetadataGenerator((params, callback) => {
    seen.push(params)
    const md = new grpc.Metadata()
    md.set('authorization', 'Bearer token')
    callback(null, md)
  })
  const { value } = await unary(client, { mode: 'info' }, new grpc.Metadata(), { credentials })
  t.same(JSON.parse(value.message).metadata.authorization, ['Bearer token'])
  t.equal(seen[0]?.method_name, '/test.Test/Unary')
  t.match(seen[0]?.service_url, /^https:\/\/127\.0\.0\.1\/test\.Test$/)
  const failing = grpc.credentials.createFromMetadataGenerator((_params, callback) => { callback(new Error('no token')) })
  const err = await unaryError(client, { mode: 'info' }, new grpc.Metadata(), { credentials: failing })
  t.equal(err.code, grpc.status.UNAVAILABLE)
  t.match(err.details, /no token/)
})

t.test('Should send request metadata set by a Node client on the upgrade, and a primary user agent', async t => {
  let upgradeHeader: string | undefined
  const { app, url } = await startApp(0, app => {
    app.addHook('onRequest', async (request: FastifyRequest) => { upgradeHeader = request.headers['x-upgrade'] as string })
  })
  t.teardown(async () => await app.close())
  const client = clientOn(createWebSocketChannel(url, { webSocketOptions: { headers: { 'x-upgrade': 'yes' } }, primaryUserAgent: 'my-app/1.0' }))
  t.teardown(() => client.close())
  const { value } = await unary(client, { mode: 'info' })
  t.equal(upgradeHeader, 'yes')
  t.match(JSON.parse(value.message).metadata['user-agent'][0], /^my-app\/1\.0 grpc-node-js\//)
})

t.test('Should deliver each of many concurrent calls its own metadata and one user-agent, whatever the size of its CALL frame', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const client = clientOn(createWebSocketChannel(url))
  t.teardown(() => client.close())
  // 300 calls in flight: CALL frames cut from shared blocks, across the
  // blocks' ends, with calls without metadata (the channel's shared entry)
  // and frames too large to share a block (over 4 KiB) in between.
  const calls = Array.from({ length: 300 }, async (_, i) => {
    const md = new grpc.Metadata()
    const value = i % 3 === 0 ? null : `${i}:`.padEnd(i % 50 === 1 ? 6000 : (i * 37) % 700, 'v')
    if (value !== null) md.set('x-n', value)
    if (i % 7 === 0) md.set('user-agent', 'replaced')
    const { value: reply } = await unary(client, { mode: 'info' }, md)
    return { value, seen: JSON.parse(reply.message).metadata }
  })
  const results = await Promise.all(calls)
  t.equal(results.filter(({ value, seen }) => value === null ? seen['x-n'] !== undefined : seen['x-n']?.[0] !== value).length, 0, 'every call saw its own metadata')
  t.equal(results.filter(({ seen }) => seen['user-agent']?.length !== 1 || !/^grpc-node-js\//.test(seen['user-agent'][0])).length, 0, "every call saw the channel's user-agent alone")
})

t.test('Should enforce the client receive limit with RESOURCE_EXHAUSTED', async t => {
  const { app, url } = await startApp()
  t.teardown(async () => await app.close())
  const client = clientOn(createWebSocketChannel(url, { maxReceiveMessageSize: 1000 }))
  t.teardown(() => client.close())
  const err = await unaryError(client, { mode: 'size', size: 5000 })
  t.equal(err.code, grpc.status.RESOURCE_EXHAUSTED)
  t.match(err.details, /Received message larger than max/)
  const { value } = await unary(client, { mode: 'echo', message: 'still usable' })
  t.equal(value.message, 'still usable')
})
