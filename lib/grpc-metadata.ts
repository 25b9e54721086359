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
  for (const [key, value] of entries) {
    if (isBinaryKey(key)) {
      const bytes = value as Uint8Array
      md.add(key, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
    } else {
      const had = md.get(key)
      if (had.length === 0) md.set(key, value as string)
      else md.set(key, `${had[0] as string}, ${value as string}`)
    }
  }
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
