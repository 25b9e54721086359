import t from 'tap'
import { Status, statusName } from '../../lib/protocol/status.js'

const expected: Array<[string, number]> = [
  ['OK', 0],
  ['CANCELLED', 1],
  ['UNKNOWN', 2],
  ['INVALID_ARGUMENT', 3],
  ['DEADLINE_EXCEEDED', 4],
  ['NOT_FOUND', 5],
  ['ALREADY_EXISTS', 6],
  ['PERMISSION_DENIED', 7],
  ['RESOURCE_EXHAUSTED', 8],
  ['FAILED_PRECONDITION', 9],
  ['ABORTED', 10],
  ['OUT_OF_RANGE', 11],
  ['UNIMPLEMENTED', 12],
  ['INTERNAL', 13],
  ['UNAVAILABLE', 14],
  ['DATA_LOSS', 15],
  ['UNAUTHENTICATED', 16]
]

t.test('Status holds the gRPC wire codes 0..16 under their names', async t => {
  t.same(Object.entries(Status), expected)
})

t.test('statusName names every code 0..16', async t => {
  for (const [name, code] of expected) t.equal(statusName(code), name, `code ${code}`)
})

t.test('statusName gives UNKNOWN_STATUS_<n> for codes outside 0..16', async t => {
  t.equal(statusName(17), 'UNKNOWN_STATUS_17')
  t.equal(statusName(99), 'UNKNOWN_STATUS_99')
  t.equal(statusName(-1), 'UNKNOWN_STATUS_-1')
  t.equal(statusName(2147483647), 'UNKNOWN_STATUS_2147483647')
  t.equal(statusName(-2147483648), 'UNKNOWN_STATUS_-2147483648')
})
