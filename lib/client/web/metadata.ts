/**
 * Call metadata for the browser client: ordered entries, lower-case keys,
 * string values, and raw `Uint8Array` values for keys ending in `-bin`
 * (never base64 on this wire).
 */
import { checkKey, checkValue, type MetadataEntry, type MetadataValue } from '../../protocol/metadata.js'

export type { MetadataValue }

/** Anything a call accepts as metadata. */
export type MetadataInit =
  | Metadata
  | Record<string, MetadataValue | readonly MetadataValue[]>
  | Iterable<readonly [string, MetadataValue]>

export class Metadata implements Iterable<[string, MetadataValue]> {
  private list: MetadataEntry[] = []

  /** Throws a TypeError on an illegal key or value, as grpc-js's Metadata does. */
  constructor (init?: MetadataInit) {
    if (init === undefined) return
    if (init instanceof Metadata || Symbol.iterator in init) {
      for (const [key, value] of init as Iterable<[string, MetadataValue]>) this.append(key, value)
      return
    }
    for (const [key, values] of Object.entries(init as Record<string, MetadataValue | MetadataValue[]>)) {
      for (const value of Array.isArray(values) ? values : [values]) this.append(key, value)
    }
  }

  /** Adds a value; keys are case-insensitive (stored lower-case). */
  append (key: string, value: MetadataValue): this {
    key = key.toLowerCase()
    const problem = checkKey(key) ?? checkValue(key, value)
    if (problem !== null) throw new TypeError(problem)
    this.list.push([key, value])
    return this
  }

  /** Replaces every value of `key` with this one. */
  set (key: string, value: MetadataValue): this {
    this.delete(key)
    return this.append(key, value)
  }

  delete (key: string): void {
    key = key.toLowerCase()
    this.list = this.list.filter(([k]) => k !== key)
  }

  /** The first value of `key`. */
  get (key: string): MetadataValue | undefined {
    return this.getAll(key)[0]
  }

  getAll (key: string): MetadataValue[] {
    key = key.toLowerCase()
    return this.list.filter(([k]) => k === key).map(([, value]) => value)
  }

  has (key: string): boolean {
    return this.get(key) !== undefined
  }

  [Symbol.iterator] (): Iterator<[string, MetadataValue]> {
    return this.list.map(([key, value]): [string, MetadataValue] => [key, value])[Symbol.iterator]()
  }

  /** Every key with all its values, e.g. for logging. */
  toJSON (): Record<string, MetadataValue[]> {
    const out: Record<string, MetadataValue[]> = {}
    for (const [key, value] of this.list) (out[key] ??= []).push(value)
    return out
  }

  /** @private The entries as sent on the wire. */
  static entriesOf (metadata: Metadata): MetadataEntry[] {
    return metadata.list
  }

  /** @private From entries already checked by the protocol layer. */
  static fromEntries (entries: MetadataEntry[]): Metadata {
    const metadata = new Metadata()
    metadata.list = entries
    return metadata
  }
}
