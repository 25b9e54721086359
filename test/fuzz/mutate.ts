/**
 * Structure-aware input generation for the parser fuzz targets: a valid
 * encoding from an arbitrary, then a few mutations aimed at what parsers get
 * wrong (length fields at their boundaries, truncation, bit flips, repeated
 * and dropped spans). Pure fast-check, so failures shrink.
 */
import fc from 'fast-check'

/** Values a u32 length or count field is worth trying; `fit` stands for "exactly what remains". */
const U32_EDGES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 255, 256, 0xfffe, 0xffff, 0x10000, 0x7ffffffe, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff]
const U16_EDGES = [0, 1, 2, 6, 7, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff]
const BYTE_EDGES = [0x00, 0x01, 0x02, 0x09, 0x0a, 0x0d, 0x1f, 0x20, 0x2c, 0x2d, 0x3a, 0x41, 0x5f, 0x61, 0x7e, 0x7f, 0x80, 0xc3, 0xfe, 0xff]

export type Mutation =
  | { op: 'flip', at: number, bit: number }
  | { op: 'byte', at: number, value: number }
  | { op: 'u16', at: number, value: number | 'fit', delta: number }
  | { op: 'u32', at: number, value: number | 'fit', delta: number }
  | { op: 'truncate', at: number }
  | { op: 'append', bytes: Uint8Array }
  | { op: 'delete', at: number, length: number }
  | { op: 'repeat', at: number, length: number, times: number }

// Positions are drawn as naturals and taken modulo the input's length when applied.
const position = fc.nat({ max: 1 << 16 })

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ op: fc.constant('byte' as const), at: position, value: fc.oneof(fc.constantFrom(...BYTE_EDGES), fc.integer({ min: 0, max: 255 })) }),
  fc.record({ op: fc.constant('u16' as const), at: position, value: fc.oneof(fc.constantFrom(...U16_EDGES), fc.constant('fit' as const)), delta: fc.integer({ min: -2, max: 2 }) }),
  fc.record({ op: fc.constant('u32' as const), at: position, value: fc.oneof(fc.constantFrom(...U32_EDGES), fc.constant('fit' as const)), delta: fc.integer({ min: -2, max: 2 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: position }),
  fc.record({ op: fc.constant('append' as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ op: fc.constant('delete' as const), at: position, length: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant('repeat' as const), at: position, length: fc.integer({ min: 1, max: 16 }), times: fc.integer({ min: 1, max: 64 }) })
)

function writeBE (out: Uint8Array, at: number, size: number, value: number): void {
  for (let i = 0; i < size && at + i < out.length; i++) out[at + i] = Math.floor(value / 2 ** (8 * (size - 1 - i))) & 0xff
}

/** Applies one mutation to a copy of `input`. */
export function mutate (input: Uint8Array, m: Mutation): Uint8Array {
  const n = input.length
  const at = n === 0 ? 0 : m.op === 'append' ? 0 : m.at % n
  switch (m.op) {
    case 'flip': {
      if (n === 0) return input
      const out = input.slice()
      out[at] = out[at]! ^ (1 << m.bit)
      return out
    }
    case 'byte': {
      if (n === 0) return Uint8Array.of(m.value)
      const out = input.slice()
      out[at] = m.value
      return out
    }
    case 'u16':
    case 'u32': {
      if (n === 0) return input
      const size = m.op === 'u16' ? 2 : 4
      const max = m.op === 'u16' ? 0xffff : 0xffffffff
      // 'fit': the bytes that follow the field, as a length field would say to be exact.
      const base = m.value === 'fit' ? Math.max(0, n - at - size) : m.value
      const out = input.slice()
      writeBE(out, at, size, Math.min(max, Math.max(0, base + m.delta)))
      return out
    }
    case 'truncate':
      return input.slice(0, at)
    case 'append': {
      const out = new Uint8Array(n + m.bytes.length)
      out.set(input)
      out.set(m.bytes, n)
      return out
    }
    case 'delete': {
      const cut = Math.min(m.length, n - at)
      const out = new Uint8Array(n - cut)
      out.set(input.subarray(0, at))
      out.set(input.subarray(at + cut), at)
      return out
    }
    case 'repeat': {
      const span = input.subarray(at, at + m.length)
      const out = new Uint8Array(n + span.length * (m.times - 1))
      out.set(input.subarray(0, at))
      for (let i = 0; i < m.times; i++) out.set(span, at + i * span.length)
      out.set(input.subarray(at + span.length), at + m.times * span.length)
      return out
    }
  }
}

export interface Mutated<V> {
  /** The value encoded. */
  value: V
  /** Its valid encoding, before mutation. */
  original: Uint8Array
  mutations: Mutation[]
  bytes: Uint8Array
}

/**
 * Inputs built from valid encodings of `values`: a fifth left as they are
 * (so round trips are checked on every run), the rest with one to four
 * mutations.
 */
export function mutated<V> (values: fc.Arbitrary<V>, encode: (value: V) => Uint8Array, maxMutations = 4): fc.Arbitrary<Mutated<V>> {
  const mutations = fc.oneof(
    { weight: 1, arbitrary: fc.constant([] as Mutation[]) },
    { weight: 4, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: maxMutations }) }
  )
  return fc.tuple(values, mutations).map(([value, ms]) => {
    const original = encode(value)
    return { value, original, mutations: ms, bytes: ms.reduce(mutate, original) }
  })
}

/** Split points for feeding a byte stream in pieces: sizes of the pieces, the last taking the rest. */
export const cutsArb = fc.oneof(
  fc.constant([] as number[]),
  fc.array(fc.integer({ min: 0, max: 32 }), { maxLength: 40 }),
  fc.array(fc.constantFrom(0, 1, 2, 4, 5, 9, 10, 11), { maxLength: 60 })
)

/** `bytes` cut into pieces of the sizes in `cuts` (empty pieces included), then the rest. */
export function split (bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const pieces: Uint8Array[] = []
  let at = 0
  for (const size of cuts) {
    const end = Math.min(bytes.length, at + size)
    pieces.push(bytes.subarray(at, end))
    at = end
  }
  pieces.push(bytes.subarray(at))
  return pieces
}

export function hex (bytes: Uint8Array): string {
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}
