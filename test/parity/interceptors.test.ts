import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { collect, parity, startEnv, unary, unaryError } from '../helpers/parity.js'

// One interceptor array, given to new grpc.Server({ interceptors }) and to
// the plugin: authentication written once for both transports.
const seenPaths: string[] = []
const requireToken: grpc.ServerInterceptor = (methodDescriptor, call) => {
  seenPaths.push(methodDescriptor.path)
  return new grpc.ServerInterceptingCall(call, {
    start (next) {
      next({
        onReceiveMetadata (metadata, mdNext) {
          if (metadata.get('authorization')[0] !== 'Bearer good') {
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'missing or bad token' })
            return
          }
          mdNext(metadata)
        }
      })
    },
    sendMetadata (metadata, next) {
      metadata.set('x-intercepted', 'yes')
      next(metadata)
    }
  })
}

const env = await startEnv(t, { plugin: { interceptors: [requireToken] }, server: { interceptors: [requireToken] } })

function withToken (token: string): grpc.Metadata {
  const md = new grpc.Metadata()
  md.set('authorization', `Bearer ${token}`)
  return md
}

parity(t, env, 'Should run server interceptors on every call', async (t, { client }) => {
  seenPaths.length = 0
  const { value, headers } = await unary(client, { mode: 'echo', message: 'let in' }, withToken('good'))
  t.equal(value.message, 'let in')
  t.same(headers?.get('x-intercepted'), ['yes'], 'the interceptor saw the response headers')
  t.same(seenPaths, ['/test.Test/Unary'], 'the interceptor got the method descriptor')
})

parity(t, env, 'Should let an interceptor refuse a call before the handler runs', async (t, { client }) => {
  const err = await unaryError(client, { mode: 'echo' }, withToken('bad'))
  t.equal(err.code, grpc.status.UNAUTHENTICATED)
  t.equal(err.details, 'missing or bad token')
})

const throwing: grpc.ServerInterceptor = () => { throw new Error('interceptor bug') }
const throwingEnv = await startEnv(t, { plugin: { interceptors: [throwing] } })

t.test('Should answer INTERNAL when a server interceptor throws, and keep serving [websocket]', async t => {
  // Over HTTP/2 grpc-js 1.14 lets such a throw become an uncaught exception
  // (checked by hand), so only the WebSocket side is run here: there the
  // call ends with INTERNAL and the connection stays up.
  const { client } = throwingEnv.transports.find(tr => tr.name === 'websocket')!
  const err = await unaryError(client, { mode: 'echo' })
  t.equal(err.code, grpc.status.INTERNAL)
  t.match(err.details, /interceptor bug/)
  const again = await unaryError(client, { mode: 'echo' })
  t.equal(again.code, grpc.status.INTERNAL, 'the same socket still answers')
})

// What an interceptor learns of the connection, on both transports.
const seen: Array<{ info: ReturnType<grpc.ServerInterceptingCallInterface['getConnectionInfo']>, peer: string }> = []
const recordConnection: grpc.ServerInterceptor = (_methodDescriptor, call) => {
  seen.push({ info: call.getConnectionInfo(), peer: call.getPeer() })
  return new grpc.ServerInterceptingCall(call)
}
const connectionEnv = await startEnv(t, { plugin: { interceptors: [recordConnection] }, server: { interceptors: [recordConnection] } })

parity(t, connectionEnv, 'Should give interceptors the connection the call came on', async (t, { client, name }) => {
  seen.length = 0
  await unary(client, { mode: 'echo', message: 'where from' })
  t.equal(seen.length, 1)
  const { info, peer } = seen[0]!
  const serverPort = Number(name === 'http2' ? connectionEnv.http2Address.split(':').at(-1) : new URL(connectionEnv.wsUrl).port)
  t.equal(info.localAddress, '127.0.0.1')
  t.equal(info.localPort, serverPort, 'the server side is the port the client dialled')
  t.equal(info.remoteAddress, '127.0.0.1')
  t.type(info.remotePort, 'number')
  t.not(info.remotePort, serverPort)
  t.equal(peer, `${info.remoteAddress}:${info.remotePort}`, 'getPeer() names the same socket')
})

// An interceptor whose listener throws on one call's request message.
const throwsOnBoom: grpc.ServerInterceptor = (_methodDescriptor, call) => new grpc.ServerInterceptingCall(call, {
  start (next) {
    next({
      onReceiveMessage (message, messageNext) {
        if ((message as { message?: string }).message === 'boom') throw new Error('listener bug')
        messageNext(message)
      }
    })
  }
})
const boomEnv = await startEnv(t, { plugin: { interceptors: [throwsOnBoom] }, server: { interceptors: [throwsOnBoom] } })

parity(t, boomEnv, 'Should keep the other calls of a connection going when an interceptor throws on one call\'s message', async (t, { client, name }) => {
  // grpc-js over HTTP/2 leaves this throw as an unhandled rejection and the
  // call to its deadline; the assertion both transports share is that
  // nothing else on the connection notices.
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  const stream = client.ServerStream({ mode: 'count', count: 3, message: 'before' })
  const streamed = collect(stream)
  const boom = await unaryError(client, { mode: 'echo', message: 'boom' }, new grpc.Metadata(), { deadline: Date.now() + 1500 })
  const after = await unary(client, { mode: 'echo', message: 'after' })
  t.equal(after.value.message, 'after', 'a call after it succeeds on the same channel')
  const { messages, status } = await streamed
  t.equal(status.code, grpc.status.OK, 'a stream open meanwhile finishes')
  t.equal(messages.length, 3)
  if (name === 'websocket') {
    t.equal(boom.code, grpc.status.INTERNAL, 'over WebSocket the throwing call ends at once with INTERNAL')
    t.match(boom.details, /^Server call listener threw error/)
  } else {
    t.equal(boom.code, grpc.status.DEADLINE_EXCEEDED, 'grpc-js leaves the call to its deadline')
    t.match(String(unhandled[0]), /listener bug/)
  }
})
