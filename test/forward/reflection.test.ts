// The reflection client against reflection services that answer oddly: a
// grpc-js Server whose v1 (or v1alpha) reflection path answers the bytes a
// test gives it.
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { discover, DiscoveryError } from '../../lib/server/upstream/reflection.js'

const identity = (b: Buffer): Buffer => b
const V1 = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'
const V1ALPHA = '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'

function field (n: number, bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.from([(n << 3) | 2, bytes.length]), bytes])
}

async function reflectionServer (t: any, path: string, answer: (request: Buffer) => Buffer): Promise<grpc.Client> {
  const server = new grpc.Server()
  server.register(path, (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', (b: Buffer) => { call.write(answer(b)) })
    call.on('end', () => { call.end() })
  }, identity, identity, 'bidi')
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.teardown(() => { client.close(); server.forceShutdown() })
  return client
}

// FileDescriptorProto { package = 2 "p"; service = 6 { name = 1 "S"; method = 2 { name = 1 "M"; server_streaming = 6 true } } }
const file = Buffer.concat([field(2, Buffer.from('p')), field(6, Buffer.concat([field(1, Buffer.from('S')), field(2, Buffer.concat([field(1, Buffer.from('M')), Buffer.from([0x30, 1])]))]))])
const listing = field(6, Buffer.concat([field(1, field(1, Buffer.from('p.S'))), field(1, field(1, Buffer.from('grpc.reflection.v1.ServerReflection')))]))
const files = field(4, field(1, file))

t.test('Should read services and methods, falling back to v1alpha', async t => {
  // Request field 7 is list_services, 4 file_containing_symbol.
  const client = await reflectionServer(t, V1ALPHA, request => request[0] === 0x3a ? listing : files)
  t.same(await discover(client, 'all', 5000), [{ name: 'p.S', methods: [{ name: 'M', clientStreaming: false, serverStreaming: true }] }])
  t.same((await discover(client, ['p.S'], 5000)).map(s => s.name), ['p.S'])
})

t.test('Should fail with the reason on error responses and malformed answers', async t => {
  const cases: Array<[Buffer, RegExp]> = [
    // ErrorResponse { error_code = 5, error_message = "nope" }
    [field(7, Buffer.concat([Buffer.from([0x08, 5]), field(2, Buffer.from('nope'))])), /does not know service p\.S \(5 nope\)/],
    [Buffer.from([0x22, 10, 1]), /malformed reflection response: truncated field/],
    [Buffer.from([0x08, 0x80]), /malformed reflection response: truncated varint/],
    [Buffer.from([0x0b]), /malformed reflection response: wire type 3/],
    [field(4, field(1, field(2, Buffer.from('other')))), /answered for p\.S without a service of that name/]
  ]
  for (const [answer, reason] of cases) {
    const client = await reflectionServer(t, V1, () => answer)
    await t.rejects(discover(client, ['p.S'], 5000), reason)
  }
  const listFails = await reflectionServer(t, V1, () => field(7, Buffer.concat([Buffer.from([0x08, 12]), field(2, Buffer.from('no list'))])))
  await t.rejects(discover(listFails, 'all', 5000), /could not list services \(12 no list\)/)
  const silent = await reflectionServer(t, V1, () => Buffer.alloc(0).subarray(0, 0))
  const err = await discover(silent, ['p.S'], 5000).catch((e: unknown) => e)
  t.ok(err instanceof DiscoveryError)
})

t.test('Should time out a reflection service that never answers', async t => {
  const server = new grpc.Server()
  server.register(V1, () => {}, identity, identity, 'bidi')
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure())
  t.teardown(() => { client.close(); server.forceShutdown() })
  await t.rejects(discover(client, 'all', 200), /reflection failed: 4 DEADLINE_EXCEEDED/)
})
