/**
 * The contract with grpc-js internals (lib/grpc-internals.ts). If a grpc-js
 * upgrade breaks any of these, this file fails first and says which.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { acceptEncoded, callBackend, callChain, createMetricsRecorder, EncodedMessage, handlerOfCall, lookupHandler, readSendErrorDetails, runCallBackends, runHandler, sendErrorDetails } from '../lib/grpc-internals.js'
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

t.test('Should hand a call backend the call itself, from runHandler and from a Server given to runCallBackends (after its interceptors)', async t => {
  const identity = (b: Buffer): Buffer => b
  const backend = callBackend((call, handler) => {
    call.start({
      onReceiveMetadata () { call.startRead() },
      onReceiveMessage (bytes: Buffer) {
        call.sendMessage(Buffer.from(`${handler.path} ${bytes.toString()}`), () => { call.sendStatus({ code: grpc.status.OK, details: 'OK', metadata: null }) })
      },
      onReceiveHalfClose () {},
      onCancel () {}
    })
  })
  const intercepted: string[] = []
  const interceptor: grpc.ServerInterceptor = (descriptor, call) => { intercepted.push(descriptor.path); return new grpc.ServerInterceptingCall(call) }
  const server = new grpc.Server({ 'grpc.enable_channelz': 0, interceptors: [interceptor] })
  server.register('/raw.Raw/Backend', backend, identity, identity, 'bidi')
  server.addService(testDefinition, { Unary (_call: unknown, callback: grpc.sendUnaryData<unknown>) { callback(null, { message: 'plain' }) } })
  // The dispatcher's way: runHandler with the call.
  const handler = lookupHandler(server, '/raw.Raw/Backend')!
  let started: unknown
  const call = { start (l: unknown) { started = l } } as unknown as grpc.ServerInterceptingCallInterface
  t.equal(runHandler(server, call, handler), true)
  t.type(started, 'object', 'the backend started the very call it was given')

  // A Server that was not given to runCallBackends runs it as a plain handler, which fails the call.
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const channel = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.teardown(() => { channel.close(); server.forceShutdown() })
  const unary = async (): Promise<string> => await new Promise((resolve, reject) => {
    channel.makeUnaryRequest('/raw.Raw/Backend', identity, identity, Buffer.from('hi'), (err: grpc.ServiceError | null, value?: Buffer) => {
      if (err !== null) reject(err); else resolve(value!.toString())
    })
  })
  const err = await unary().then(() => null, (e: grpc.ServiceError) => e)
  t.equal(err?.code, grpc.status.INTERNAL, 'run as a grpc-js handler: INTERNAL')

  runCallBackends(server)
  runCallBackends(server)
  t.equal(await unary(), '/raw.Raw/Backend hi', 'over HTTP/2 the backend gets the call, once (idempotent)')
  t.same(intercepted, ['/raw.Raw/Backend', '/raw.Raw/Backend'], 'after the server\'s interceptors')
  const client = new TestClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as any
  t.teardown(() => { client.close() })
  const plain = await new Promise<any>((resolve, reject) => { client.Unary({}, (e: unknown, r: unknown) => { e ? reject(e) : resolve(r) }) })
  t.equal(plain.message, 'plain', 'other handlers still run as before')
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
