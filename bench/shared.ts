/**
 * The part of the benchmark's shared code that browsers load too (the
 * browser benchmark's page bundles it): Uint8Array only, no Node built-ins.
 */

/** Deterministic bytes, so runs are comparable. */
export function payloadBytes (size: number): Uint8Array {
  const b = new Uint8Array(size)
  let x = 0x9e3779b9
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5
    b[i] = x & 0xff
  }
  return b
}

export function percentile (sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))
  return sorted[i]!
}
