import t from 'tap'
import { GrpcError, Metadata, Status } from '../../lib/client/web/index.js'

t.test('Should keep entries in order, lower-case keys, and several values per key', async t => {
  const md = new Metadata().append('X-One', 'a').append('x-two', 'b').append('x-one', 'c')
  t.same([...md], [['x-one', 'a'], ['x-two', 'b'], ['x-one', 'c']])
  t.equal(md.get('X-ONE'), 'a', 'get is the first value')
  t.same(md.getAll('x-one'), ['a', 'c'])
  t.equal(md.has('x-two'), true)
  t.equal(md.get('x-none'), undefined)
  t.equal(md.has('x-none'), false)
  md.set('x-one', 'z')
  t.same(md.toJSON(), { 'x-two': ['b'], 'x-one': ['z'] })
  md.delete('X-Two')
  t.same([...md], [['x-one', 'z']])
})

t.test('Should build from an object, an iterable of pairs, or another Metadata', async t => {
  const bin = new Uint8Array([1, 2])
  const fromObject = new Metadata({ 'x-a': 'one', 'x-b': ['two', 'three'], 'x-c-bin': bin })
  t.same([...fromObject], [['x-a', 'one'], ['x-b', 'two'], ['x-b', 'three'], ['x-c-bin', bin]])
  t.same([...new Metadata(new Map([['x-m', 'v']]))], [['x-m', 'v']])
  t.same([...new Metadata(fromObject)], [...fromObject])
  t.same([...new Metadata()], [])
})

t.test('Should refuse illegal keys and values with a TypeError', async t => {
  t.throws(() => new Metadata().append('bad key', 'v'), { name: 'TypeError', message: /illegal characters/ })
  t.throws(() => new Metadata().append('', 'v'), { name: 'TypeError', message: /empty/ })
  t.throws(() => new Metadata().append('x-bin', 'text'), { name: 'TypeError', message: /binary value/ })
  t.throws(() => new Metadata().append('x-text', new Uint8Array(1)), { name: 'TypeError', message: /string value/ })
  t.throws(() => new Metadata().append('x-text', 'new\nline'), { name: 'TypeError', message: /printable ASCII/ })
})

t.test('Should give GrpcError the code, details, metadata and grpc-js\'s message format', async t => {
  const md = new Metadata({ 'x-k': 'v' })
  const cause = new Error('root')
  const err = new GrpcError(Status.NOT_FOUND, 'no such thing', md, { cause })
  t.ok(err instanceof Error)
  t.same([err.name, err.code, err.codeName, err.details, err.message], ['GrpcError', 5, 'NOT_FOUND', 'no such thing', '5 NOT_FOUND: no such thing'])
  t.equal(err.metadata.get('x-k'), 'v')
  t.equal(err.cause, cause)
  t.same(new GrpcError(42, 'odd').toString(), 'GrpcError: 42 UNKNOWN_STATUS_42: odd')
  t.same([...new GrpcError(1, 'x').metadata], [], 'empty metadata by default')
})
