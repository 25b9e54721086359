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
