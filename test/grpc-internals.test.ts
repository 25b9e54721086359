/**
 * The contract with grpc-js internals (lib/grpc-internals.ts). If a grpc-js
 * upgrade breaks any of these, this file fails first and says which.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { acceptEncoded, callChain, createMetricsRecorder, EncodedMessage, handlerOfCall, lookupHandler, readSendErrorDetails, runHandler, sendErrorDetails } from '../lib/grpc-internals.js'
import { TestClient, testDefinition } from './helpers/test-service.js'

t.test('Should find handlers registered by addService in the Server\'s private map', async t => {
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 })
  const Unary = (): void => {}
  server.addService(testDefinition, { Unary })
  const handler = lookupHandler(server, '/test.Test/Unary')
  t.ok(handler, 'Server#handlers still maps paths to handlers')
  t.equal(handler!.type, 'unary')
  t.equal(handler!.path, '/test.Test/Unary')
  t.type(handler!.func, 'function')
  t.type(handler!.serialize, 'function')
  t.type(handler!.deserialize, 'function')
  t.equal(lookupHandler(server, '/test.Test/ServerStream')!.type, 'serverStream')
  t.equal(lookupHandler(server, '/test.Test/ClientStream')!.type, 'clientStream')
  t.equal(lookupHandler(server, '/test.Test/Bidi')!.type, 'bidi')
  t.equal(lookupHandler(server, '/nope/Nope'), undefined)
})

t.test('Should run a handler through Server#_runHandlerForCall with grpc-js call objects', async t => {
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 })
  let seen: any
  server.addService(testDefinition, {
    Unary (call: any, callback: grpc.sendUnaryData<any>) {
      seen = call
      callback(null, { message: 'ok' })
    }
  })
  const handler = lookupHandler(server, '/test.Test/Unary')!
  const sent: unknown[] = []
  let listener: any
  const call: grpc.ServerInterceptingCallInterface = {
    start (l: any) { listener = l; l.onReceiveMetadata(new grpc.Metadata()) },
    sendMetadata () { sent.push('metadata') },
    sendMessage (message: unknown, cb: () => void) { sent.push(message); cb() },
    sendStatus (status: any) { sent.push(status.code) },
    startRead () { queueMicrotask(() => { if (!sent.includes('read')) { sent.push('read'); listener.onReceiveMessage({ mode: 'x' }) } else listener.onReceiveHalfClose() }) },
    getPeer: () => 'peer',
    getDeadline: () => Infinity,
    getHost: () => 'host',
    getAuthContext: () => ({}),
    getConnectionInfo: () => ({}),
    getMetricsRecorder: () => createMetricsRecorder()
  } as any
  t.equal(runHandler(server, call, handler), true)
  await new Promise(resolve => setTimeout(resolve, 10))
  t.equal(seen?.constructor.name, 'ServerWritableStreamImpl')
  t.same(seen.request, { mode: 'x' })
  t.same(sent, ['read', { message: 'ok' }, 0])
  t.equal(runHandler(server, call, { ...handler, type: 'other' as any }), false, 'unknown kinds are refused')
})

t.test('Should build the per-call metrics recorder grpc-js gives handlers', async t => {
  const recorder = createMetricsRecorder()
  t.type(recorder.recordRequestCostMetric, 'function')
  t.type(recorder.recordCPUUtilizationMetric, 'function')
})

t.test('Should read the error-details switch grpc-js reads', async t => {
  t.equal(sendErrorDetails, process.env.GRPC_NODE_DEBUG_SEND_ERROR_DETAILS === 'true')
  // grpc-js 1.14.0 to 1.14.4 export no switch and always send the messages.
  t.equal(readSendErrorDetails({}), true, 'no export: details always sent')
  t.equal(readSendErrorDetails({ GRPC_NODE_DEBUG_SEND_ERROR_DETAILS: false }), false)
  t.equal(readSendErrorDetails({ GRPC_NODE_DEBUG_SEND_ERROR_DETAILS: true }), true)
})

t.test('Should say, as sendErrorDetails does, whether grpc-js puts a thrown message into the status over HTTP/2', async t => {
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 })
  server.addService(testDefinition, {
    Unary () { throw new Error('the secret reason') }
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { if (err) reject(err); else resolve(p) })
  })
  const client = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.teardown(() => { client.close(); server.forceShutdown() })
  const err = await new Promise<grpc.ServiceError>((resolve, reject) => {
    client.Unary({}, { deadline: Date.now() + 10_000 }, (e: grpc.ServiceError | null) => { if (e) resolve(e); else reject(new Error('the call succeeded')) })
  })
  t.equal(err.code, grpc.status.UNKNOWN)
  t.equal(err.details.includes('the secret reason'), sendErrorDetails, err.details)
})

t.test('Should find the client Call interface members a custom Channel must provide', async t => {
  // grpc-js's own internal Channel returns calls with exactly these members.
  const channel = new grpc.Channel('127.0.0.1:1', grpc.credentials.createInsecure(), {})
  const call = channel.createCall('/test.Test/Unary', Infinity, undefined, null, undefined)
  for (const member of ['cancelWithStatus', 'getPeer', 'start', 'sendMessageWithContext', 'startRead', 'halfClose', 'getCallNumber', 'setCredentials', 'getAuthContext']) {
    t.type((call as any)[member], 'function', member)
  }
  call.cancelWithStatus(grpc.status.CANCELLED, 'done')
  channel.close()
})

t.test('Should let a handler\'s serializer pass encoded bytes through, read at each send (topics)', async t => {
  const server = new grpc.Server({ 'grpc.enable_channelz': 0 })
  server.addService(testDefinition, { ServerStream () {} })
  const handler = lookupHandler(server, '/test.Test/ServerStream')!
  const before = handler.serialize
  const original = acceptEncoded(handler)
  t.equal(original, before, 'returns the original serializer')
  t.equal(acceptEncoded(handler), before, 'idempotent')
  const bytes = Buffer.from([10, 2, 104, 105])
  t.equal(handler.serialize(new EncodedMessage(bytes)), bytes, 'encoded bytes go through as they are')
  t.same(handler.serialize({ message: 'hi' }), original({ message: 'hi' }), 'other messages still go to the serializer')
})

t.test('Should find an HTTP/2 call\'s handler through its call and nextCall chain, interceptors included', async t => {
  const seen: any[] = []
  const interceptor: grpc.ServerInterceptor = (_d, call) => new grpc.ServerInterceptingCall(call)
  const server = new grpc.Server({ 'grpc.enable_channelz': 0, interceptors: [interceptor] })
  server.addService(testDefinition, {
    ServerStream (call: any) {
      seen.push({ chain: callChain(call).length, handler: handlerOfCall(call) })
      acceptEncoded(handlerOfCall(call)!)
      call.write(new EncodedMessage(Buffer.from(testDefinition.ServerStream!.responseSerialize({ message: 'pre-encoded' }))))
      call.end()
    }
  })
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  t.teardown(() => { server.forceShutdown() })
  const client = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any
  t.teardown(() => { client.close() })
  const got: string[] = []
  await new Promise<void>((resolve, reject) => {
    const call = client.serverStream({})
    call.on('data', (r: any) => { got.push(r.message) })
    call.on('end', resolve)
    call.on('error', reject)
  })
  t.same(got, ['pre-encoded'], 'the bytes reached the client as the message')
  t.equal(seen[0].chain, 2, 'the interceptor\'s ServerInterceptingCall, then BaseServerInterceptingCall')
  t.equal(seen[0].handler, lookupHandler(server, '/test.Test/ServerStream'), 'the very handler object the Server keeps')
  t.equal(handlerOfCall({}), undefined, 'nothing for an object without a call chain')
})
