// Forwarding to gRPC servers in other languages: a grpc-go server (built
// here offline, GOPATH mode, from Debian's packages; found by reflection,
// v1alpha only) and a Python grpcio server (a GenericRpcHandler, listed
// methods). Each case runs with the same assertions direct to the server,
// through the plugin's WebSocket route, and through the plugin's grpcServer.
// Run by `npm run test:upstreams`; it fails, saying what to install, when
// go or python3-grpcio is missing.
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import fastifyGrpcWs, { type UpstreamOption } from '../../index.js'
import { createWebSocketChannel } from '../../lib/client/grpc-js/index.js'

const here = fileURLToPath(new URL('.', import.meta.url))
const GO_PACKAGES = 'golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev'
const METHODS = ['Unary', 'ServerStream', 'ClientStream', 'Bidi', 'Cancelled']

function requireGo (): void {
  const go = spawnSync('go', ['version'])
  const sources = ['google.golang.org/grpc', 'google.golang.org/protobuf', 'github.com/golang/protobuf'].every(p => existsSync(`/usr/share/gocode/src/${p}`))
  if (go.status !== 0 || !sources) throw new Error(`go and Debian's grpc-go sources are needed: apt-get install -y ${GO_PACKAGES}`)
}

function requirePython (): void {
  const python = spawnSync('/usr/bin/python3', ['-c', 'import grpc'])
  if (python.status !== 0) throw new Error('Debian\'s /usr/bin/python3 with grpcio is needed: apt-get install -y python3-grpcio')
}

/** Builds interop-server.go with no network: GO111MODULE=off, GOPATH over /usr/share/gocode. */
function buildGo (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'fastify-grpc-ws-go-'))
  t.teardown(() => { rmSync(dir, { recursive: true, force: true }) })
  mkdirSync(join(dir, 'src', 'interop'), { recursive: true })
  copyFileSync(join(here, 'interop-server.go'), join(dir, 'src', 'interop', 'main.go'))
  const binary = join(dir, 'interop-server')
  const built = spawnSync('go', ['build', '-o', binary, '.'], {
    cwd: join(dir, 'src', 'interop'),
    env: { ...process.env, GO111MODULE: 'off', GOPATH: `${dir}:/usr/share/gocode`, GOPROXY: 'off', GOFLAGS: '' },
    encoding: 'utf8',
    timeout: 300_000
  })
  if (built.status !== 0) throw new Error(`go build failed: ${built.stderr}`)
  return binary
}

/** Starts a server that prints `listening <port>`; resolves with its address. */
async function listen (t: Test, child: ChildProcess): Promise<string> {
  t.teardown(() => { child.kill('SIGKILL') })
  return await new Promise((resolve, reject) => {
    let out = ''
    const timer = setTimeout(() => { reject(new Error(`no port within 30 s: ${out}`)) }, 30_000)
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const match = /listening (\d+)/.exec(out)
      if (match !== null) { clearTimeout(timer); resolve(`127.0.0.1:${match[1]!}`) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`the server exited with ${String(code)}: ${out}`)) })
  })
}

const identity = (b: Buffer): Buffer => b
type Way = 'direct' | 'plugin-websocket' | 'plugin-http2'

async function ways (t: Test, target: string, services: UpstreamOption['services']): Promise<Array<{ way: Way, client: grpc.Client }>> {
  const grpcServer = new grpc.Server()
  const app = Fastify()
  await app.register(fastifyGrpcWs, { upstreams: [{ target, services }], grpcServer })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const wsUrl = `ws://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc`
  const clients: Array<{ way: Way, client: grpc.Client }> = [
    { way: 'direct', client: new grpc.Client(target, grpc.credentials.createInsecure()) },
    { way: 'plugin-websocket', client: new grpc.Client('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(wsUrl) }) },
    { way: 'plugin-http2', client: new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) }
  ]
  t.teardown(async () => {
    for (const { client } of clients) client.close()
    await app.close()
    grpcServer.forceShutdown()
  })
  return clients
}

interface Outcome { messages: Buffer[], headers: grpc.Metadata | null, status: grpc.StatusObject }

function outcome (call: grpc.ClientReadableStream<Buffer> | grpc.ClientDuplexStream<Buffer, Buffer>): Promise<Outcome> {
  const messages: Buffer[] = []
  let headers: grpc.Metadata | null = null
  call.on('metadata', md => { headers = md })
  call.on('data', (b: Buffer) => messages.push(b))
  call.on('error', () => {})
  return new Promise(resolve => call.on('status', status => { resolve({ messages, headers, status }) }))
}

function md (pairs: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata()
  for (const [k, v] of Object.entries(pairs)) m.set(k, v)
  return m
}

function stream (client: grpc.Client, method: string, requests: Buffer[], metadata = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<Outcome> {
  const call = client.makeBidiStreamRequest(`/interop.Echo/${method}`, identity, identity, metadata, options)
  const done = outcome(call)
  for (const r of requests) call.write(r)
  call.end()
  return done
}

function cases (t: Test, server: string, target: () => string, services: () => UpstreamOption['services']): void {
  t.test(`${server}: the interop cases, direct and through the plugin`, async t => {
    for (const { way, client } of await ways(t, target(), services())) {
      t.test(`Should answer a unary call with headers, binary trailers and the bytes unchanged [${server}, ${way}]`, async t => {
        const r = await stream(client, 'Unary', [Buffer.from([0, 1, 2, 250, 255])])
        t.equal(r.status.code, grpc.status.OK)
        t.same(r.messages.map(b => [...b]), [[0, 1, 2, 250, 255]])
        t.same(r.headers?.get('x-server'), [server])
        t.same(r.headers?.get('x-header-bin').map(b => [...(b as Buffer)]), [[1, 2, 3]])
        t.same(r.status.metadata.get('x-trailer'), ['done'])
        t.same(r.status.metadata.get('x-trailer-bin').map(b => [...(b as Buffer)]), [[0, 255]])
      })
      t.test(`Should stream responses, take a request stream, and echo a bidi stream [${server}, ${way}]`, async t => {
        const s = await stream(client, 'ServerStream', [Buffer.from('tick')], md({ 'x-count': '4' }))
        t.same(s.messages.map(String), ['tick', 'tick', 'tick', 'tick'])
        const c = await stream(client, 'ClientStream', [Buffer.from('a'), Buffer.from('b'), Buffer.from('c')])
        t.same(c.messages.map(String), ['abc'])
        // Full duplex: the second request goes only after the first reply.
        const call = client.makeBidiStreamRequest('/interop.Echo/Bidi', identity, identity)
        const done = outcome(call)
        call.write(Buffer.from('one'))
        await new Promise(resolve => call.once('data', resolve))
        call.write(Buffer.from('two'))
        call.end()
        const b = await done
        t.same(b.messages.map(String), ['one', 'two'])
        t.equal(b.status.code, grpc.status.OK)
      })
      t.test(`Should pass statuses through with their messages and trailers [${server}, ${way}]`, async t => {
        for (const code of [grpc.status.NOT_FOUND, grpc.status.RESOURCE_EXHAUSTED, grpc.status.UNAVAILABLE]) {
          const r = await stream(client, 'Unary', [Buffer.from('x')], md({ 'x-status': String(code), 'x-message': `not here: ${code}` }))
          t.equal(r.status.code, code)
          t.equal(r.status.details, `not here: ${code}`)
          t.same(r.status.metadata.get('x-trailer'), ['done'])
        }
      })
      t.test(`Should carry the client deadline to the server [${server}, ${way}]`, async t => {
        const r = await stream(client, 'Unary', [Buffer.from('x')], new grpc.Metadata(), { deadline: Date.now() + 5000 })
        const left = Number(r.headers?.get('x-deadline-ms')[0])
        t.ok(left > 4000 && left <= 5000, `the server saw ${left} ms left`)
        const late = await stream(client, 'Unary', [Buffer.from('x')], md({ 'x-sleep-ms': '3000' }), { deadline: Date.now() + 300 })
        t.equal(late.status.code, grpc.status.DEADLINE_EXCEEDED)
      })
      t.test(`Should carry a client cancel to the server [${server}, ${way}]`, async t => {
        const count = async (): Promise<number> => Number(String((await stream(client, 'Cancelled', [Buffer.alloc(0)])).messages[0]))
        // Calls of the tests before (the deadline test's late call, cancelled at its
        // deadline) may still reach the count: start from a count that holds for 200 ms.
        let before = await count()
        for (let i = 0; i < 20; i++) {
          await new Promise(resolve => setTimeout(resolve, 200))
          const now = await count()
          if (now === before) break
          before = now
        }
        const call = client.makeServerStreamRequest('/interop.Echo/ServerStream', identity, identity, Buffer.from('tick'), md({ 'x-count': 'endless' }))
        const done = outcome(call)
        call.once('data', () => { call.cancel() })
        t.equal((await done).status.code, grpc.status.CANCELLED)
        let after = before
        for (let i = 0; i < 60 && after === before; i++) {
          await new Promise(resolve => setTimeout(resolve, 50))
          after = await count()
        }
        t.equal(after, before + 1, 'the server handler saw its call cancelled')
      })
    }
  })
}

let goTarget = ''
let pythonTarget = ''
t.before(async () => {
  requireGo()
  requirePython()
  goTarget = await listen(t, spawn(buildGo(t), [], { stdio: ['ignore', 'pipe', 'inherit'] }))
  pythonTarget = await listen(t, spawn('/usr/bin/python3', [join(here, 'interop-server.py')], { stdio: ['pipe', 'pipe', 'inherit'] }))
})

cases(t, 'go', () => goTarget, () => 'reflection')
cases(t, 'python', () => pythonTarget, () => [{ name: 'interop.Echo', methods: METHODS }])
