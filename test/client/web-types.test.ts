// What each proto type arrives as through the browser client (its default
// conversion) and through a grpc-js client over HTTP/2 (proto-loader with
// `longs: String, defaults: true`), both to one echo handler: the same plain
// objects, 64-bit integers as exact decimal strings on both sides, inputs
// taken as strings, numbers or bigints.
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import Fastify from 'fastify'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'
import t from 'tap'
import WebSocket from 'ws'
import fastifyGrpcWs from '../../index.js'
import { createClient, createServiceClient, type Unary } from '../../lib/client/web/index.js'

const protoPath = fileURLToPath(new URL('../fixtures/types.proto', import.meta.url))
const packageDefinition = loader.loadSync(protoPath, { longs: String, defaults: true })
const TypesClient = (grpc.loadPackageDefinition(packageDefinition) as any).types.Types as grpc.ServiceClientConstructor

const received: unknown[] = []
const grpcServer = new grpc.Server()
const app = Fastify()
await app.register(fastifyGrpcWs, {
  grpcServer,
  services: [{
    definition: TypesClient.service,
    implementation: {
      Echo: (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) => {
        received.push(call.request)
        callback(null, call.request)
      }
    }
  }]
})
await app.listen({ port: 0, host: '127.0.0.1' })
const port = await new Promise<number>((resolve, reject) => {
  grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, bound) => { err === null ? resolve(bound) : reject(err) })
})
const grpcClient = new TypesClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
const webClient = createClient(`ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`, { WebSocket })
const web = createServiceClient<{ echo: Unary<object, any> }>(webClient, protobuf.loadSync(protoPath).lookupService('types.Types'))
t.teardown(async () => {
  webClient.close()
  grpcClient.close()
  await app.close()
  grpcServer.forceShutdown()
})

const overHttp2 = async (request: object): Promise<any> => await new Promise((resolve, reject) => {
  grpcClient.Echo(request, (err: grpc.ServiceError | null, value: any) => { err === null ? resolve(value) : reject(err) })
})

/** Received and sent by each side; bytes compared as arrays (a Buffer in Node, a Uint8Array in browsers). */
function plain (value: any): any {
  if (value instanceof Uint8Array) return { bytes: [...value] }
  if (Array.isArray(value)) return value.map(plain)
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]))
  return value
}

const full = {
  i64: '-9007199254740993',
  u64: '18446744073709551615',
  s64: '-42',
  f64: '9007199254740993',
  sf64: '-9223372036854775808',
  i32: -7,
  dbl: 1.5,
  flag: true,
  str: 'héllo',
  data: new Uint8Array([0, 1, 254, 255]),
  color: 2,
  number: '9007199254740993',
  list: ['1', '-2', '9007199254740993'],
  inner: { id: '123456789012345678' },
  counts: { a: '9007199254740993' }
}

t.test('Should give the same plain objects through the browser client and grpc-js over HTTP/2, longs as exact strings', async t => {
  received.length = 0
  const fromWeb = await web.echo(full)
  const fromGrpc = await overHttp2({ ...full, data: Buffer.from(full.data) })
  t.same(plain(fromWeb), plain(fromGrpc), 'the same object on both sides')
  t.strictSame(plain(fromWeb), plain(full), 'what was sent, every 64-bit integer exact, as a decimal string')
  for (const key of ['i64', 'u64', 's64', 'f64', 'sf64', 'number']) t.type(fromWeb[key], 'string', `${key} is a string`)
  t.equal(fromWeb.color, 2, 'enums as numbers, as proto-loader by default')
  t.ok(fromWeb.data instanceof Uint8Array, 'bytes as a Uint8Array')
  t.notOk('text' in fromWeb, 'of a oneof, only the member set')
  t.notOk('choice' in fromWeb, 'no oneof name without oneofs: true, as proto-loader by default')
  t.equal(received.length, 2)
  t.same(plain(received[0]), plain(received[1]), 'the handler received the same request from both')
  t.same(plain(received[0]), plain(full))
})

t.test('Should fill in the same defaults on both sides', async t => {
  const fromWeb = await web.echo({})
  const fromGrpc = await overHttp2({})
  t.same(plain(fromWeb), plain(fromGrpc))
  t.same(plain(fromWeb), {
    i64: '0', u64: '0', s64: '0', f64: '0', sf64: '0', i32: 0, dbl: 0, flag: false, str: '', data: { bytes: [] }, color: 0, list: [], inner: null, counts: {}
  })
})

t.test('Should take 64-bit inputs as strings, numbers or bigints', async t => {
  const fromBigints = await web.echo({ i64: -9007199254740993n, u64: 18446744073709551615n, sf64: -9223372036854775808n, list: [1n, -2n], counts: { a: 5n } })
  t.same([fromBigints.i64, fromBigints.u64, fromBigints.sf64, fromBigints.list, fromBigints.counts], ['-9007199254740993', '18446744073709551615', '-9223372036854775808', ['1', '-2'], { a: '5' }])
  const fromNumbers = await web.echo({ i64: -42, u64: 42, s64: Number.MAX_SAFE_INTEGER, f64: 7, number: 3 })
  t.same([fromNumbers.i64, fromNumbers.u64, fromNumbers.s64, fromNumbers.f64, fromNumbers.number], ['-42', '42', '9007199254740991', '7', '3'])
  t.same(await overHttp2({ i64: -42, u64: '42', number: 3 }).then(r => [r.i64, r.u64, r.number]), ['-42', '42', '3'], 'grpc-js takes numbers and strings too')
})

t.test('Should give enum names with enums: String, as proto-loader with the same option', async t => {
  const named = createServiceClient<{ echo: Unary<object, any> }>(webClient, protobuf.loadSync(protoPath).lookupService('types.Types'), { conversion: { defaults: true, longs: String, enums: String, oneofs: true } })
  const reply = await named.echo({ color: 'GREEN', text: 'picked' })
  t.same([reply.color, reply.text, reply.choice], ['GREEN', 'picked', 'text'])
})
