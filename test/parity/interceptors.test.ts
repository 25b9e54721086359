import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { parity, startEnv, unary, unaryError } from '../helpers/parity.js'

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
