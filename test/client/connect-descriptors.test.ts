// serviceDescFromDefinition: protobuf-es descriptors from @grpc/proto-loader's
// definitions, for Connect clients without a codegen step.
import * as loader from '@grpc/proto-loader'
import t from 'tap'
import { fileURLToPath } from 'node:url'
import { serviceDescFromDefinition } from '../../lib/client/connect/index.js'
import { testDefinition } from '../helpers/test-service.js'

const protoPath = fileURLToPath(new URL('../fixtures/test.proto', import.meta.url))
const packageDefinition = loader.loadSync(protoPath)

t.test('Should turn a package definition into a DescService with every method and its kind', async t => {
  const service = serviceDescFromDefinition(packageDefinition, 'test.Test')
  t.equal(service.typeName, 'test.Test')
  t.same(service.methods.map(m => [m.localName, m.methodKind, m.input.typeName, m.output.typeName]), [
    ['unary', 'unary', 'test.Request', 'test.Response'],
    ['serverStream', 'server_streaming', 'test.Request', 'test.Response'],
    ['clientStream', 'client_streaming', 'test.Request', 'test.Response'],
    ['bidi', 'bidi_streaming', 'test.Request', 'test.Response'],
    ['missing', 'unary', 'test.Request', 'test.Response']
  ])
  t.same(service.method.unary!.input.fields.map(f => f.localName), ['mode', 'message', 'payload', 'code', 'details', 'count', 'size', 'delayMs', 'id'])
})

t.test('Should take a service definition (a grpc-js client\'s .service) too', async t => {
  t.equal(serviceDescFromDefinition(testDefinition as any, 'test.Test').methods.length, 5)
})

t.test('Should fail with FST_GRPCWS_NO_DESCRIPTOR without descriptors or without the service', async t => {
  const code = 'FST_GRPCWS_NO_DESCRIPTOR'
  t.throws(() => serviceDescFromDefinition(packageDefinition, 'test.Nope'), { code, message: /no service "test.Nope".*services: test.Test/ })
  t.throws(() => serviceDescFromDefinition({ 'test.Test': { Unary: { path: '/test.Test/Unary' } } }, 'test.Test'), { code, message: /no fileDescriptorProtos/ })
  t.throws(() => serviceDescFromDefinition({}, 'test.Test'), { code, message: /no fileDescriptorProtos/ })
  t.throws(() => serviceDescFromDefinition(null as any, 'test.Test'), { code })
  t.throws(() => serviceDescFromDefinition(packageDefinition, ''), { code })
})
