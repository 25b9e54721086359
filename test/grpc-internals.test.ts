/**
 * The contract with grpc-js internals (lib/grpc-internals.ts). If a grpc-js
 * upgrade breaks any of these, this file fails first and says which.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { createMetricsRecorder, lookupHandler, readSendErrorDetails, runHandler, sendErrorDetails } from '../lib/grpc-internals.js'
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

t.test('Should deliver a channel Call\'s messages one per startRead, and an OK status only after the last was read (the forwarder relies on both)', async t => {
  const identity = (b: Buffer): Buffer => b
  const server = new grpc.Server()
  server.register('/raw.Raw/Bidi', (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (b: Buffer) => { call.write(b); call.write(b) })
    call.on('end', () => { call.end() })
  }, identity, identity, 'bidi')
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const channel = new grpc.Channel(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {})
  t.teardown(() => { channel.close(); server.forceShutdown() })
  const call = channel.createCall('/raw.Raw/Bidi', Infinity, undefined, null, undefined)
  const events: string[] = []
  const status = new Promise<grpc.StatusObject>(resolve => {
    call.start(new grpc.Metadata(), {
      onReceiveMetadata: () => { events.push('metadata') },
      onReceiveMessage: (b: Buffer) => { events.push(`message ${b.toString()}`) },
      onReceiveStatus: s => { events.push('status'); resolve(s) }
    })
  })
  // The next message only after the previous one's callback.
  await new Promise<void>(resolve => { call.sendMessageWithContext({ callback: () => { resolve() } }, Buffer.from('a')) })
  await new Promise<void>(resolve => { call.sendMessageWithContext({ callback: () => { resolve() } }, Buffer.from('b')) })
  call.halfClose()
  // The server has answered and ended long before this reads anything.
  await new Promise(resolve => setTimeout(resolve, 200))
  t.same(events, ['metadata'], 'nothing is delivered before a read')
  for (let i = 1; i <= 4; i++) {
    call.startRead()
    await new Promise(resolve => setTimeout(resolve, 20))
    t.equal(events.filter(e => e.startsWith('message')).length, i, `one message for read ${i}`)
    if (i < 4) t.notOk(events.includes('status'), `no OK status while a message is unread (after read ${i})`)
  }
  t.equal((await status).code, grpc.status.OK)
  t.same(events, ['metadata', 'message a', 'message a', 'message b', 'message b', 'status'])
})
