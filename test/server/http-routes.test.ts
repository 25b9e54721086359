/**
 * The HTTP routes (gRPC-Web and Connect) seen from a raw HTTP/1.1 client:
 * bad input gets a clear status or HTTP error and nothing else is affected;
 * text mode's padding between frames; response flow control; body limits
 * and the body timeout; hooks, fastifyRequestOf, interceptors, origin
 * policy and the options that turn each protocol off.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify, { type FastifyInstance } from 'fastify'
import { EventEmitter } from 'node:events'
import http from 'node:http'
import t from 'tap'
import fastifyGrpcWs, { fastifyRequestOf, type FastifyGrpcWsOptions } from '../../index.js'
import { JsonCodecs } from '../../lib/server/http/json.js'
import { bounded } from '../helpers/bounded.js'
import { createTestService, testDefinition, type Request } from '../helpers/test-service.js'

const events = new EventEmitter()
events.setMaxListeners(0)

// A service whose definition carries no descriptors (identity serializers):
// binary works, JSON cannot.
const plainDefinition: Record<string, grpc.MethodDefinition<Buffer, Buffer>> = {
  Who: {
    path: '/plain.Plain/Who',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b
  }
}
// A google.rpc.Status with one google.rpc.ErrorInfo detail {reason: 'QUOTA'}, by hand.
const ld = (field: number, bytes: Buffer): Buffer => Buffer.concat([Buffer.from([(field << 3) | 2, bytes.length]), bytes])
const errorInfo = ld(1, Buffer.from('QUOTA'))
const statusDetails = Buffer.concat([Buffer.from([0x08, 9]), ld(2, Buffer.from('no quota')),
  ld(3, Buffer.concat([ld(1, Buffer.from('type.googleapis.com/google.rpc.ErrorInfo')), ld(2, errorInfo)]))])
plainDefinition.Fail = { ...plainDefinition.Who!, path: '/plain.Plain/Fail' }
// A hand-written definition may mark a method free of side effects as proto-loader does.
plainDefinition.Peek = { ...plainDefinition.Who!, path: '/plain.Plain/Peek', options: { idempotency_level: 'NO_SIDE_EFFECTS' } } as grpc.MethodDefinition<Buffer, Buffer>

const plainImplementation = {
  Fail (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
    const metadata = new grpc.Metadata()
    metadata.set('grpc-status-details-bin', statusDetails)
    metadata.set('x-more', 'kept')
    callback({ code: grpc.status.FAILED_PRECONDITION, details: 'no quota', metadata } as any)
  },
  Peek (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
    plainImplementation.Who(call, callback)
  },
  Who (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) {
    const request = fastifyRequestOf(call) as unknown as { user?: string, method?: string } | undefined
    callback(null, Buffer.from(JSON.stringify({ user: request?.user ?? null, method: request?.method ?? null, got: call.request.toString() })))
  }
}

async function start (options: Partial<FastifyGrpcWsOptions> = {}, setup?: (app: FastifyInstance) => void): Promise<string> {
  const app = Fastify()
  setup?.(app)
  await app.register(fastifyGrpcWs, {
    ...options,
    services: [{ definition: testDefinition, implementation: createTestService(events) }, { definition: plainDefinition, implementation: plainImplementation }]
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(async () => { await app.close() })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

interface Answer { status: number, headers: http.IncomingHttpHeaders, body: Buffer }

/** One POST; `write` may stream the body itself (and must end it, or not). */
function post (url: string, headers: Record<string, string>, body: Buffer | string | ((req: http.ClientRequest) => void)): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    if (typeof body === 'function') body(req)
    else req.end(body)
  })
}

/** One GET. */
function get (url: string, headers: Record<string, string> = {}, method = 'GET', agent?: false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers, agent }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }) })
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

function frame (bytes: Uint8Array, flags = 0, length = bytes.byteLength): Buffer {
  const out = Buffer.alloc(5 + bytes.byteLength)
  out[0] = flags
  out.writeUInt32BE(length, 1)
  out.set(bytes, 5)
  return out
}

const request = (r: Request): Buffer => testDefinition.Unary!.requestSerialize(r)

/** A gRPC-Web response body: its messages and its trailers. */
function parseGrpcWeb (body: Buffer): { messages: Buffer[], trailers: Record<string, string> } {
  const messages: Buffer[] = []
  const trailers: Record<string, string> = {}
  for (let at = 0; at < body.length;) {
    const flags = body[at]!
    const length = body.readUInt32BE(at + 1)
    const payload = body.subarray(at + 5, at + 5 + length)
    at += 5 + length
    if ((flags & 0x80) === 0) {
      messages.push(payload)
      continue
    }
    for (const line of payload.toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':')
      if (colon > 0) trailers[line.slice(0, colon)] = line.slice(colon + 1).trim()
    }
  }
  return { messages, trailers }
}

const GRPC_WEB = { 'content-type': 'application/grpc-web+proto' }
const base = await start({ maxReceiveMessageSize: 64 * 1024, bodyTimeout: 400 })
const unaryUrl = `${base}/grpc/test.Test/Unary`

async function stillServes (t: any): Promise<void> {
  const ok = await post(unaryUrl, GRPC_WEB, frame(request({ mode: 'echo', message: 'still here' })))
  const { messages, trailers } = parseGrpcWeb(ok.body)
  t.equal(trailers['grpc-status'], '0', 'a good call afterwards succeeds')
  t.equal(testDefinition.Unary!.responseDeserialize(messages[0]!).message, 'still here')
}

t.test('a unary gRPC-Web call is one response with a Content-Length: message frame, then the trailers frame', async t => {
  const answer = await post(unaryUrl, GRPC_WEB, frame(request({ mode: 'echo', message: 'hi' })))
  t.equal(answer.status, 200)
  t.equal(answer.headers['content-type'], 'application/grpc-web+proto')
  t.equal(Number(answer.headers['content-length']), answer.body.length)
  const { messages, trailers } = parseGrpcWeb(answer.body)
  t.equal(messages.length, 1)
  t.same(trailers, { 'grpc-status': '0', 'grpc-message': 'OK' }, 'grpc-js says OK, as over HTTP/2')
})

t.test('wrong content types get HTTP 415 naming what is served; nothing else is affected', async t => {
  for (const type of ['text/plain', 'application/grpc', 'application/grpc-web+json', 'application/octet-stream']) {
    const answer = await post(unaryUrl, { 'content-type': type }, 'x')
    t.equal(answer.status, 415, type)
    t.match(JSON.parse(answer.body.toString()).message, type === 'application/grpc-web+json' ? /only the proto codec/ : /application\/grpc-web/, type)
  }
  const none = await post(unaryUrl, {}, 'x')
  t.equal(none.status, 415, 'no content type')
  await stillServes(t)
})

t.test('a truncated frame ends the call with INTERNAL', async t => {
  const whole = frame(request({ mode: 'echo', message: 'cut short' }))
  const answer = await post(unaryUrl, GRPC_WEB, whole.subarray(0, whole.length - 3))
  const { trailers } = parseGrpcWeb(answer.body)
  t.equal(trailers['grpc-status'], String(grpc.status.INTERNAL))
  t.match(decodeURIComponent(trailers['grpc-message']!), /ended inside a message/)
  await stillServes(t)
})

t.test('a frame over maxReceiveMessageSize gets RESOURCE_EXHAUSTED from its prefix alone', async t => {
  // The prefix claims 1 MiB; the body never sends it.
  const answer = await post(unaryUrl, GRPC_WEB, req => { req.write(frame(Buffer.alloc(16), 0, 1024 * 1024)) })
  const { trailers } = parseGrpcWeb(answer.body)
  t.equal(trailers['grpc-status'], String(grpc.status.RESOURCE_EXHAUSTED))
  t.match(decodeURIComponent(trailers['grpc-message']!), /larger than max \(1048576 vs 65536\)/)
  t.equal(answer.headers.connection, 'close', 'the unread rest of the body goes with the connection')
  await stillServes(t)
})

t.test('a compressed frame, and a frame with unknown flags, get INTERNAL', async t => {
  for (const flags of [1, 0x40]) {
    const answer = await post(unaryUrl, GRPC_WEB, frame(request({ mode: 'echo' }), flags))
    t.equal(parseGrpcWeb(answer.body).trailers['grpc-status'], String(grpc.status.INTERNAL), `flags ${flags}`)
  }
})

t.test('text mode: a request of frames each base64-encoded with its padding, and a text response', async t => {
  const parts = ['a', 'bb', 'ccc'].map(message => frame(request({ message })).toString('base64'))
  t.ok(parts.slice(0, -1).some(p => p.endsWith('=')), 'padding falls between frames')
  const answer = await post(`${base}/grpc/test.Test/ClientStream`, { 'content-type': 'application/grpc-web-text', accept: 'application/grpc-web-text' }, parts.join(''))
  t.equal(answer.headers['content-type'], 'application/grpc-web-text+proto')
  const { messages, trailers } = parseGrpcWeb(Buffer.from(answer.body.toString('latin1'), 'base64'))
  t.equal(trailers['grpc-status'], '0')
  t.equal(testDefinition.ClientStream!.responseDeserialize(messages[0]!).message, 'a,bb,ccc')
  // Streamed over several writes, split inside the base64 groups.
  const text = parts.join('')
  const streamed = await post(`${base}/grpc/test.Test/ClientStream`, { 'content-type': 'application/grpc-web-text+proto' }, req => {
    for (let i = 0; i < text.length; i += 3) req.write(text.slice(i, i + 3))
    req.end()
  })
  const again = parseGrpcWeb(Buffer.from(streamed.body.toString('latin1'), 'base64'))
  t.equal(testDefinition.ClientStream!.responseDeserialize(again.messages[0]!).message, 'a,bb,ccc')
})

t.test('text mode: a streamed response is whole frames in base64, each decodable', async t => {
  const body = frame(request({ mode: 'count', count: 3, size: 1 })).toString('base64')
  const answer = await post(`${base}/grpc/test.Test/ServerStream`, { 'content-type': 'application/grpc-web-text' }, body)
  // Decoding group by group, as the official client does, across the padding.
  const decoded = Buffer.concat(answer.body.toString('latin1').match(/[^=]*=*/g)!.filter(s => s !== '').map(s => Buffer.from(s, 'base64')))
  const { messages, trailers } = parseGrpcWeb(decoded)
  t.equal(trailers['grpc-status'], '0')
  t.same(messages.map(m => testDefinition.ServerStream!.responseDeserialize(m).message), ['0', '1', '2'])
})

t.test('invalid base64 gets INTERNAL naming the byte', async t => {
  for (const body of ['AAAA!AAA', 'AA=A', 'AAAAA']) {
    const answer = await post(unaryUrl, { 'content-type': 'application/grpc-web-text' }, body)
    const { trailers } = parseGrpcWeb(Buffer.from(answer.body.toString('latin1'), 'base64'))
    t.equal(trailers['grpc-status'], String(grpc.status.INTERNAL), body)
    t.match(decodeURIComponent(trailers['grpc-message']!), /base64/, body)
  }
  await stillServes(t)
})

t.test('a body that never ends: DEADLINE_EXCEEDED after bodyTimeout, and the connection is let go', async t => {
  const started = Date.now()
  let request: http.ClientRequest | undefined
  const answer = await bounded('the answer', post(unaryUrl, GRPC_WEB, req => {
    request = req
    // Half a message, then nothing: the body stays open.
    req.write(frame(request_(), 0, 100).subarray(0, 20))
  }))
  t.ok(Date.now() - started >= 350, 'not before the timeout')
  const { trailers } = parseGrpcWeb(answer.body)
  t.equal(trailers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED))
  t.match(decodeURIComponent(trailers['grpc-message']!), /bodyTimeout/)
  t.equal(answer.headers.connection, 'close')
  request?.destroy()
  await stillServes(t)
})
const request_ = (): Buffer => Buffer.alloc(100, 1)

t.test('a slow body that keeps trickling is cut at bodyTimeout in all for a one-message request', async t => {
  const answer = await bounded('the answer', post(unaryUrl, GRPC_WEB, req => {
    req.write(frame(Buffer.alloc(0), 0, 50).subarray(0, 5))
    const timer = setInterval(() => { if (!req.destroyed) req.write(Buffer.from([1])) }, 50)
    req.on('close', () => { clearInterval(timer) })
    setTimeout(() => { clearInterval(timer); req.destroy() }, 3000).unref()
  }))
  t.equal(parseGrpcWeb(answer.body).trailers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED))
})

t.test('a client that stops reading makes the handler\'s write() return false', async t => {
  const id = 'http-flood'
  const flooded = bounded('the flood event', new Promise<any>(resolve => events.once(`${id}:flood`, resolve)), 10000)
  const received = await bounded('the stream', new Promise<number>((resolve, reject) => {
    const req = http.request(`${base}/grpc/test.Test/ServerStream`, { method: 'POST', headers: GRPC_WEB }, res => {
      res.pause()
      // Read nothing for a while, then everything.
      setTimeout(() => {
        let bytes = 0
        res.on('data', (c: Buffer) => { bytes += c.length })
        res.on('end', () => { resolve(bytes) })
        res.resume()
      }, 500)
    })
    req.on('error', reject)
    req.end(frame(request({ mode: 'flood', id, count: 200, size: 64 * 1024 })))
  }), 10000)
  t.ok((await flooded).refusals > 0, 'write() returned false at least once')
  t.ok(received > 200 * 64 * 1024, 'every message arrived in the end')
})

t.test('grpc-timeout: an invalid value gets INTERNAL; a valid one cancels the handler at the deadline', async t => {
  const bad = await post(unaryUrl, { ...GRPC_WEB, 'grpc-timeout': '10 seconds' }, frame(request({ mode: 'echo' })))
  t.equal(parseGrpcWeb(bad.body).trailers['grpc-status'], String(grpc.status.INTERNAL))
  const cancelled = bounded('cancelled', new Promise<any>(resolve => events.once('http-deadline', resolve)))
  const late = await post(unaryUrl, { ...GRPC_WEB, 'grpc-timeout': '150m' }, frame(request({ mode: 'never', id: 'http-deadline' })))
  t.equal(parseGrpcWeb(late.body).trailers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED))
  t.equal((await cancelled).event, 'cancelled')
})

t.test('a client that goes away mid-call: the handler sees \'cancelled\'', async t => {
  const cancelled = bounded('cancelled', new Promise<any>(resolve => events.once('http-gone', resolve)))
  const req = http.request(unaryUrl, { method: 'POST', headers: GRPC_WEB })
  req.on('error', () => {})
  req.end(frame(request({ mode: 'never', id: 'http-gone' })))
  setTimeout(() => { req.destroy() }, 100)
  t.equal((await cancelled).event, 'cancelled')
})

t.test('unknown paths: UNIMPLEMENTED over gRPC-Web, Connect\'s unimplemented (HTTP 501) over Connect', async t => {
  const web = await post(`${base}/grpc/nope.Nope/Call`, GRPC_WEB, frame(Buffer.alloc(0)))
  t.equal(parseGrpcWeb(web.body).trailers['grpc-status'], String(grpc.status.UNIMPLEMENTED))
  const connect = await post(`${base}/grpc/nope.Nope/Call`, { 'content-type': 'application/proto' }, '')
  t.equal(connect.status, 501)
  t.same(JSON.parse(connect.body.toString()), { code: 'unimplemented', message: 'The server does not implement the method /nope.Nope/Call' })
})

t.test('Connect: bad input gets the protocol\'s errors', async t => {
  const json = { 'content-type': 'application/json' }
  const invalid = await post(unaryUrl, json, '{"mode": ')
  t.equal(invalid.status, 400)
  t.equal(JSON.parse(invalid.body.toString()).code, 'invalid_argument')
  const wrongField = await post(unaryUrl, json, '{"nope": 1}')
  t.equal(wrongField.status, 400)
  t.match(JSON.parse(wrongField.body.toString()).message, /test\.Request/)
  const version = await post(unaryUrl, { ...json, 'connect-protocol-version': '2' }, '{}')
  t.equal(version.status, 400)
  t.match(JSON.parse(version.body.toString()).message, /connect-protocol-version/)
  const timeout = await post(unaryUrl, { ...json, 'connect-timeout-ms': 'soon' }, '{}')
  t.equal(timeout.status, 400)
  const streamingType = await post(`${base}/grpc/test.Test/ServerStream`, json, '{}')
  t.equal(streamingType.status, 415, 'a unary content type for a streaming method')
  const tooBig = await post(unaryUrl, { 'content-type': 'application/proto' }, Buffer.alloc(70 * 1024))
  t.equal(tooBig.status, 429)
  t.equal(JSON.parse(tooBig.body.toString()).code, 'resource_exhausted')
  const deadline = await post(unaryUrl, { ...json, 'connect-timeout-ms': '100' }, '{"mode":"never"}')
  t.equal(deadline.status, 504)
  t.equal(JSON.parse(deadline.body.toString()).code, 'deadline_exceeded')
  await stillServes(t)
})

const getUrl = (path: string, query: string): string => `${base}/grpc/${path}?${query}`
const b64url = (r: Request): string => request(r).toString('base64url')

t.test('Connect GET: proto (base64) and JSON (percent-encoded) messages in the query, parameters in any order, the connection kept', async t => {
  const proto = await get(getUrl('test.Test/Unary', `connect=v1&encoding=proto&base64=1&message=${b64url({ mode: 'echo', message: 'by GET' })}`))
  t.equal(proto.status, 200)
  t.equal(proto.headers['content-type'], 'application/proto')
  t.equal(testDefinition.Unary!.responseDeserialize(proto.body).message, 'by GET')
  t.not(proto.headers.connection, 'close', 'a GET has no body to leave unread')
  const json = await get(getUrl('test.Test/Unary', `message=${encodeURIComponent('{"mode":"echo","message":"ü by GET"}')}&unknown=1&encoding=json`))
  t.equal(json.status, 200)
  t.equal(json.headers['content-type'], 'application/json')
  t.same(JSON.parse(json.body.toString()), { message: 'ü by GET' })
  // Padded (the padding percent-encoded) and standard base64 are taken too; an empty message is an empty request.
  const bytes = request({ mode: 'echo', message: 'padded?' })
  const padded = await get(getUrl('test.Test/Unary', `encoding=proto&base64=1&message=${encodeURIComponent(bytes.toString('base64'))}`))
  t.equal(testDefinition.Unary!.responseDeserialize(padded.body).message, 'padded?')
  const empty = await get(getUrl('plain.Plain/Peek', 'encoding=proto&base64=1&message='))
  t.equal(empty.status, 200)
  t.equal(JSON.parse(empty.body.toString()).got, '', 'an empty request')
  // The same metadata and deadline headers as a POST.
  const info = JSON.parse(JSON.parse((await get(getUrl('test.Test/Unary', `encoding=json&message=${encodeURIComponent('{"mode":"info"}')}`), { 'x-text': 'v', 'x-bin': 'AAEC' })).body.toString()).message)
  t.same(info.metadata['x-text'], ['v'])
  t.same(info.metadata['x-bin'], [{ bin: '000102' }])
  const deadline = await get(getUrl('test.Test/Unary', `encoding=json&message=${encodeURIComponent('{"mode":"never"}')}`), { 'connect-timeout-ms': '100' })
  t.equal(deadline.status, 504)
  t.equal(JSON.parse(deadline.body.toString()).code, 'deadline_exceeded')
})

t.test('Connect GET: a bad query gets the protocol\'s errors; nothing else is affected', async t => {
  const cases: Array<[string, string, number, string, RegExp]> = [
    ['no encoding', `message=${b64url({})}&base64=1`, 415, 'unimplemented', /encoding=proto or encoding=json: got none/],
    ['an unknown encoding', 'encoding=xml&message=x', 415, 'unimplemented', /got "xml"/],
    ['no message', 'encoding=proto', 400, 'invalid_argument', /message parameter/],
    ['invalid base64', 'encoding=proto&base64=1&message=no*base64', 400, 'invalid_argument', /not valid base64/],
    ['base64 of an impossible length', 'encoding=proto&base64=1&message=AAAAA', 400, 'invalid_argument', /not valid base64/],
    ['a broken percent-escape', 'encoding=json&message=%7B%zz', 400, 'invalid_argument', /percent-encoding/],
    ['invalid JSON', `encoding=json&message=${encodeURIComponent('{"mode": ')}`, 400, 'invalid_argument', /Invalid JSON for test\.Request/],
    ['bytes that are not the message', 'encoding=proto&base64=1&message=_w', 500, 'internal', /./],
    ['another protocol version', 'connect=v2&encoding=json&message={}', 400, 'invalid_argument', /connect must be "v1"/],
    ['compression', `compression=gzip&base64=1&encoding=proto&message=${b64url({})}`, 501, 'unimplemented', /supported: identity/]
  ]
  for (const [what, query, status, code, message] of cases) {
    const answer = await get(getUrl('test.Test/Unary', query))
    t.equal(answer.status, status, `${what}: HTTP ${status}`)
    const error = JSON.parse(answer.body.toString())
    t.equal(error.code, code, `${what}: ${code}`)
    t.match(error.message, message, `${what}: says why`)
  }
  await stillServes(t)
})

t.test('Connect GET: only for unary methods marked NO_SIDE_EFFECTS (else 405, Allow: POST); a hand-written definition can mark one', async t => {
  const who = await get(getUrl('plain.Plain/Who', 'encoding=proto&message=x'))
  t.equal(who.status, 405)
  t.equal(who.headers.allow, 'POST')
  t.match(JSON.parse(who.body.toString()).message, /idempotency_level = NO_SIDE_EFFECTS/)
  const stream = await get(getUrl('test.Test/ServerStream', `encoding=proto&base64=1&message=${b64url({ mode: 'count', count: 1 })}`))
  t.equal(stream.status, 405)
  t.match(JSON.parse(stream.body.toString()).message, /serverStream method: GET serves unary methods only/)
  const peek = await get(getUrl('plain.Plain/Peek', 'encoding=proto&message=raw%20bytes'))
  t.equal(peek.status, 200)
  t.same(JSON.parse(peek.body.toString()), { user: null, method: 'GET', got: 'raw bytes' }, 'fastifyRequestOf(call) is the GET')
  t.equal((await get(getUrl('test.Test/Unary', 'encoding=proto&message='), {}, 'HEAD')).status, 404, 'no HEAD route')
  t.equal((await get(getUrl('test.Test/Unary', 'encoding=proto&message='), {}, 'PUT')).status, 404, 'nor PUT')
})

t.test('Connect GET: an unknown method is UNIMPLEMENTED (501) when the query asks for Connect, else the app\'s 404', async t => {
  const connect = await get(getUrl('nope.Nope/Call', 'encoding=json&message={}'))
  t.equal(connect.status, 501)
  t.same(JSON.parse(connect.body.toString()), { code: 'unimplemented', message: 'The server does not implement the method /nope.Nope/Call' })
  const plain = await get(`${base}/grpc/some/page`)
  t.equal(plain.status, 404)
  t.equal(JSON.parse(plain.body.toString()).error, 'Not Found', 'Fastify\'s not-found answer')
})

t.test('Connect GET: maxReceiveMessageSize bounds the decoded message; a URL over Node\'s header bound gets 431', async t => {
  const small = await start({ maxReceiveMessageSize: 1024 })
  const message = b64url({ mode: 'echo', payload: Buffer.alloc(2000) })
  const tooBig = await get(`${small}/grpc/test.Test/Unary?encoding=proto&base64=1&message=${message}`)
  t.equal(tooBig.status, 429)
  t.equal(JSON.parse(tooBig.body.toString()).code, 'resource_exhausted')
  const fits = await get(`${small}/grpc/test.Test/Unary?encoding=proto&base64=1&message=${b64url({ mode: 'echo', payload: Buffer.alloc(900) })}`)
  t.equal(fits.status, 200)
  // Node's maxHeaderSize (16 KiB by default) holds the request line too.
  // A connection of its own: Fastify closes it after the 431.
  const long = await get(getUrl('test.Test/Unary', `encoding=proto&base64=1&message=${b64url({ mode: 'echo', payload: Buffer.alloc(20 * 1024) })}`), {}, 'GET', false)
  t.equal(long.status, 431)
  await stillServes(t)
})

t.test('Connect GET: hooks, origin policy and the options apply as to POST', async t => {
  const url = await start({}, app => {
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer good') return await reply.code(401).send({ error: 'Unauthorized' })
    })
  })
  const peek = `${url}/grpc/plain.Plain/Peek?encoding=proto&message=x`
  t.equal((await get(peek)).status, 401, 'refused by the hook')
  t.equal((await get(peek, { authorization: 'Bearer good' })).status, 200)
  t.equal((await get(peek, { authorization: 'Bearer good', origin: 'http://evil.example' })).status, 403, 'a cross-origin page')
  const noConnect = await start({ connect: false })
  t.equal((await get(`${noConnect}/grpc/plain.Plain/Peek?encoding=proto&message=x`)).status, 404, 'connect: false')
  const noCompatRoute = await start({ grpcWebSocketsPrefix: false })
  const own = await get(`${noCompatRoute}/grpc/plain.Plain/Peek?encoding=proto&message=x`)
  t.equal(own.status, 200, 'without the grpc-websockets route, the HTTP routes hold GET themselves')
  t.equal(JSON.parse(own.body.toString()).got, 'x')
})

t.test('Connect: a definition without descriptors serves binary, and answers JSON with 415 saying why', async t => {
  const url = `${base}/grpc/plain.Plain/Who`
  const binary = await post(url, { 'content-type': 'application/proto' }, 'raw bytes')
  t.equal(binary.status, 200)
  t.equal(JSON.parse(binary.body.toString()).got, 'raw bytes')
  const json = await post(url, { 'content-type': 'application/json' }, '{}')
  t.equal(json.status, 415)
  t.match(JSON.parse(json.body.toString()).message, /no descriptors for JSON/)
})

t.test('Connect JSON: @bufbuild/protobuf is loaded by the first JSON request, once, not at registration', async t => {
  const load = JsonCodecs.prototype.load
  const loads: Array<Promise<void>> = []
  JsonCodecs.prototype.load = function (this: JsonCodecs) {
    const loading = load.call(this)
    loads.push(loading)
    return loading
  }
  t.teardown(() => { JsonCodecs.prototype.load = load })
  const url = `${await start()}/grpc/test.Test/Unary`
  const binary = await post(url, { 'content-type': 'application/proto' }, request({ mode: 'echo', message: 'binary' }))
  t.equal(testDefinition.Unary!.responseDeserialize(binary.body).message, 'binary')
  t.equal(loads.length, 0, 'registering the plugin and binary calls load nothing')
  // The first JSON requests arrive together: each waits for the one load.
  const first = await Promise.all([1, 2, 3].map(async i => await post(url, { 'content-type': 'application/json' }, `{"mode":"echo","message":"json ${i}"}`)))
  t.same(first.map(a => [a.status, JSON.parse(a.body.toString())]), [1, 2, 3].map(i => [200, { message: `json ${i}` }]))
  t.ok(loads.length >= 1, 'the JSON requests loaded it')
  t.equal(new Set(loads).size, 1, 'one load, shared by every request that waited for it')
  const seen = loads.length
  const later = await post(url, { 'content-type': 'application/json' }, '{"mode":"echo","message":"later"}')
  t.same(JSON.parse(later.body.toString()), { message: 'later' })
  t.equal(loads.length, seen, 'once loaded, JSON requests go straight on')
})

t.test('Connect streaming: end-stream message with the error and the trailers', async t => {
  const answer = await post(`${base}/grpc/test.Test/ServerStream`, { 'content-type': 'application/connect+proto' },
    frame(request({ mode: 'status-after-write', code: 5, details: 'ü' })))
  t.equal(answer.status, 200)
  t.equal(answer.headers['content-type'], 'application/connect+proto')
  const first = answer.body.readUInt32BE(1)
  t.equal(answer.body[0], 0)
  const end = answer.body.subarray(5 + first)
  t.equal(end[0], 2, 'the end-stream flag')
  t.same(JSON.parse(end.subarray(5).toString()), { error: { code: 'not_found', message: 'ü' }, metadata: { 'x-error-text': ['error value'] } })
})

t.test('origins: a cross-origin page is refused (403) unless allowedOrigins lets it in', async t => {
  const refused = await post(unaryUrl, { ...GRPC_WEB, origin: 'http://evil.example' }, frame(request({ mode: 'echo' })))
  t.equal(refused.status, 403)
  const sameOrigin = await post(unaryUrl, { ...GRPC_WEB, origin: base }, frame(request({ mode: 'echo' })))
  t.equal(parseGrpcWeb(sameOrigin.body).trailers['grpc-status'], '0')
})

t.test('an onRequest hook authenticates HTTP calls; fastifyRequestOf(call) is its request; interceptors run', async t => {
  const seen: string[] = []
  const interceptor: grpc.ServerInterceptor = (descriptor, call) => new grpc.ServerInterceptingCall(call, {
    start: next => { seen.push(descriptor.path); next({}) }
  })
  const url = await start({ interceptors: [interceptor] }, app => {
    app.decorateRequest('user', '')
    app.addHook('onRequest', async (request, reply) => {
      if (request.headers.authorization !== 'Bearer good') return await reply.code(401).send({ error: 'Unauthorized' })
      ;(request as unknown as { user: string }).user = 'alice'
    })
  })
  const who = `${url}/grpc/plain.Plain/Who`
  t.equal((await post(who, { 'content-type': 'application/proto' }, 'x')).status, 401, 'Connect refused by the hook')
  t.equal((await post(who, GRPC_WEB, frame(Buffer.from('x')))).status, 401, 'gRPC-Web refused by the hook')
  const connect = await post(who, { 'content-type': 'application/proto', authorization: 'Bearer good' }, 'x')
  t.same(JSON.parse(connect.body.toString()), { user: 'alice', method: 'POST', got: 'x' })
  const web = await post(who, { ...GRPC_WEB, authorization: 'Bearer good' }, frame(Buffer.from('y')))
  t.same(JSON.parse(parseGrpcWeb(web.body).messages[0]!.toString()), { user: 'alice', method: 'POST', got: 'y' })
  t.same(seen, ['/plain.Plain/Who', '/plain.Plain/Who'], 'the interceptor saw both calls')
})

t.test('grpcWeb: false and connect: false turn each protocol off; both off, no route', async t => {
  const noWeb = await start({ grpcWeb: false })
  t.equal((await post(`${noWeb}/grpc/test.Test/Unary`, GRPC_WEB, frame(request({ mode: 'echo' })))).status, 415)
  t.equal((await post(`${noWeb}/grpc/test.Test/Unary`, { 'content-type': 'application/json' }, '{"mode":"echo"}')).status, 200)
  const noConnect = await start({ connect: false })
  t.equal((await post(`${noConnect}/grpc/test.Test/Unary`, { 'content-type': 'application/json' }, '{}')).status, 415)
  t.equal(parseGrpcWeb((await post(`${noConnect}/grpc/test.Test/Unary`, GRPC_WEB, frame(request({ mode: 'echo' })))).body).trailers['grpc-status'], '0')
  const neither = await start({ connect: false, grpcWeb: false })
  t.equal((await post(`${neither}/grpc/test.Test/Unary`, GRPC_WEB, frame(request({ mode: 'echo' })))).status, 404)
  await t.rejects(start({ grpcWeb: 'yes' as unknown as boolean }), { code: 'FST_GRPCWS_INVALID_OPTION' })
})

t.test('the HTTP routes follow grpcWebSocketsPrefix', async t => {
  const url = await start({ grpcWebSocketsPrefix: '/rpc' })
  const answer = await post(`${url}/rpc/test.Test/Unary`, GRPC_WEB, frame(request({ mode: 'echo', message: 'moved' })))
  t.equal(parseGrpcWeb(answer.body).trailers['grpc-status'], '0')
})

t.test('app.close(): a call in flight may finish within closeGracePeriod; one still running then ends with UNAVAILABLE', async t => {
  const app = Fastify()
  await app.register(fastifyGrpcWs, { closeGracePeriod: 300, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/grpc/test.Test/Unary`
  const cancelled = bounded('cancelled', new Promise<any>(resolve => events.once('http-shutdown', resolve)))
  const quick = post(url, GRPC_WEB, frame(request({ mode: 'delay', delayMs: 100, message: 'made it' })))
  const stuck = post(url, GRPC_WEB, frame(request({ mode: 'never', id: 'http-shutdown' })))
  await new Promise(resolve => setTimeout(resolve, 50))
  const closing = app.close()
  const [q, s] = await bounded('both answers', Promise.all([quick, stuck]))
  const done = parseGrpcWeb(q.body)
  t.equal(done.trailers['grpc-status'], '0', 'finished within the grace period')
  t.equal(testDefinition.Unary!.responseDeserialize(done.messages[0]!).message, 'made it')
  const ended = parseGrpcWeb(s.body).trailers
  t.equal(ended['grpc-status'], String(grpc.status.UNAVAILABLE))
  t.equal(decodeURIComponent(ended['grpc-message']!), 'Server shutting down')
  t.equal((await cancelled).event, 'cancelled')
  await bounded('app.close()', closing)
})

t.test('Connect: an error\'s grpc-status-details-bin becomes the error JSON\'s details; gRPC-Web passes it as a trailer', async t => {
  const url = `${base}/grpc/plain.Plain/Fail`
  const connect = await post(url, { 'content-type': 'application/proto' }, 'x')
  t.equal(connect.status, 400)
  t.same(JSON.parse(connect.body.toString()), {
    code: 'failed_precondition',
    message: 'no quota',
    details: [{ type: 'google.rpc.ErrorInfo', value: errorInfo.toString('base64').replace(/=+$/, '') }]
  })
  t.equal(connect.headers['trailer-x-more'], 'kept', 'the other trailers as trailer- headers')
  t.notOk('trailer-grpc-status-details-bin' in connect.headers, 'not twice')
  const web = parseGrpcWeb((await post(url, GRPC_WEB, frame(Buffer.from('x')))).body).trailers
  t.equal(web['grpc-status-details-bin'], statusDetails.toString('base64'))
})
