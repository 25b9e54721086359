/**
 * Conversion between grpc-js Metadata and the wire's entry list (Node only).
 */
import { Metadata } from '@grpc/grpc-js'
import { isBinaryKey, type MetadataEntry } from './protocol/metadata.js'

/**
 * Wire entries to grpc-js Metadata, the way grpc-js builds it from HTTP/2
 * headers: repeated ASCII keys arrive joined with ', ' (HTTP/2 joins them),
 * repeated binary keys stay separate Buffers. Doing the same here is what
 * keeps a handler from telling the transports apart.
 */
export function toGrpcMetadata (entries: readonly MetadataEntry[]): Metadata {
  const md = new Metadata()
  // Repeated ASCII keys are joined first and set once: setting the growing
  // joined value each time would re-validate it, quadratic in the repeats.
  let repeated = null as Map<string, string[]> | null
  // The values of the previous entry's key while it repeats: no lookup an entry.
  let last: string | null = null
  let lastValues: string[] | undefined
  for (const [key, value] of entries) {
    if (key === last && lastValues !== undefined) {
      lastValues.push(value as string)
    } else if (isBinaryKey(key)) {
      const bytes = value as Uint8Array
      md.add(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      last = null
    } else if ((lastValues = repeated?.get(key)) !== undefined) {
      lastValues.push(value as string)
      last = key
    } else if (md.get(key).length === 0) {
      md.set(key, value as string)
      last = key
    } else {
      repeated ??= new Map()
      lastValues = [md.get(key)[0] as string, value as string]
      repeated.set(key, lastValues)
      last = key
    }
  }
  if (repeated !== null) for (const [key, values] of repeated) md.set(key, values.join(', '))
  return md
}

/** grpc-js Metadata to wire entries, in insertion order, one entry a value. */
export function fromGrpcMetadata (md: Metadata | null | undefined): MetadataEntry[] {
  const entries: MetadataEntry[] = []
  if (md == null) return entries
  // toJSON() hands out grpc-js's own arrays: no copy.
  const map = md.toJSON()
  for (const key in map) {
    // grpc-js accepts ':' in keys; pseudo-header keys never leave a process
    // over HTTP/2 either, and the wire has no room for others.
    if (key.includes(':')) continue
    for (const value of map[key]!) entries.push([key, value])
  }
  return entries
}
