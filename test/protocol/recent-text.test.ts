import t from 'tap'
import fc from 'fast-check'
import { utf8Encode } from '../../lib/protocol/bytes.js'
import { RecentText } from '../../lib/protocol/recent-text.js'
import { parseCall, buildCall } from '../../lib/protocol/payload.js'
import { FRAME_HEADER_SIZE } from '../../lib/protocol/frame.js'

// Strings equal by value cannot be told apart in JS: a cache entry is
// recognised by a text remembered for bytes that do not decode to it.

t.test('RecentText gives back what it remembered for equal bytes, without decoding them', async t => {
  const cache = new RecentText(2, 64)
  cache.remember(utf8Encode('/echo.Echo/Echo'), 'remembered')
  t.equal(cache.decode(utf8Encode('/echo.Echo/Echo')), 'remembered')
  t.equal(cache.decode(utf8Encode('/echo.Echo/Echp')), '/echo.Echo/Echp', 'one byte off: decoded')
  t.equal(cache.decode(utf8Encode('/echo.Echo/Ech')), '/echo.Echo/Ech', 'a prefix: decoded')
})

t.test('RecentText keeps a copy: changing the bytes remembered does not change what they match', async t => {
  const cache = new RecentText(2, 64)
  const bytes = utf8Encode('/a.A/X')
  cache.remember(bytes, 'X')
  bytes[5] = 0x59 // 'Y'
  t.equal(cache.decode(bytes), '/a.A/Y')
  t.equal(cache.decode(utf8Encode('/a.A/X')), 'X')
})

t.test('RecentText forgets the oldest when full, and holds a text once', async t => {
  const cache = new RecentText(2, 64)
  cache.remember(utf8Encode('/s.S/A'), 'A')
  cache.remember(utf8Encode('/s.S/B'), 'B')
  cache.remember(utf8Encode('/s.S/B'), 'B') // already held: not a second entry
  t.equal(cache.decode(utf8Encode('/s.S/A')), 'A', 'still held after a repeat')
  cache.remember(utf8Encode('/s.S/C'), 'C')
  t.equal(cache.decode(utf8Encode('/s.S/A')), '/s.S/A', 'the oldest went')
  t.equal(cache.decode(utf8Encode('/s.S/B')), 'B')
  t.equal(cache.decode(utf8Encode('/s.S/C')), 'C')
  t.equal(cache.decode(utf8Encode('/s.S/Ü')), '/s.S/Ü', 'what it does not hold decodes as UTF-8')
})

t.test('RecentText does not keep bytes longer than its bound', async t => {
  const cache = new RecentText(2, 8)
  cache.remember(utf8Encode('/long.Service/Method'), 'long')
  t.equal(cache.decode(utf8Encode('/long.Service/Method')), '/long.Service/Method')
  cache.remember(utf8Encode('/s.S/M'), 'short')
  t.equal(cache.decode(utf8Encode('/s.S/M')), 'short')
})

t.test('parseCall through a RecentText reads the same path as without one, for any paths', async t => {
  fc.assert(fc.property(fc.array(fc.string({ maxLength: 40 }), { minLength: 1, maxLength: 12 }), paths => {
    const cache = new RecentText(4, 256)
    for (const path of paths) {
      const frame = buildCall(1, { path, timeoutMs: 0, initialWindowSize: 65535, metadata: [] })
      const payload = frame.subarray(FRAME_HEADER_SIZE)
      const parsed = parseCall(payload, cache)
      if (parsed.path !== path || parseCall(payload).path !== path) return false
      cache.remember(parsed.pathBytes, parsed.path)
    }
    return true
  }), { numRuns: 300 })
})
