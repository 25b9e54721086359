/**
 * The streams open on one connection, by stream id.
 *
 * Not a `Map`: V8 links each hash table a `Map` has outgrown to the table
 * that replaced it (for iterators still walking it). With one insert and one
 * delete per call, a `Map` replaces its table every few dozen calls; once an
 * outgrown table has been promoted to the old generation, it keeps its
 * successor, the successor's successor and every stream they held alive
 * through each young-generation collection, until a full one. Under load
 * that promoted most per-call objects and made each young collection take
 * milliseconds. A plain object's integer-keyed elements have no such links.
 */
export class StreamMap<T> {
  // `{}`, not Object.create(null): a null-prototype object starts out as a
  // 160-byte hash table; integer keys live in the elements store either way.
  private entries: Record<number, T> = {}
  private count = 0

  get size (): number { return this.count }

  get (id: number): T | undefined {
    return this.entries[id]
  }

  set (id: number, value: T): void {
    if (this.entries[id] === undefined) this.count++
    this.entries[id] = value
  }

  /** Removes the stream; false if there was none with this id. */
  delete (id: number): boolean {
    if (this.entries[id] === undefined) return false
    // Emptied: start afresh rather than keep the element store it grew.
    if (--this.count === 0) this.entries = {}
    else delete this.entries[id]
    return true
  }

  /**
   * The streams in ascending id order (the order they were opened in). As
   * with a `Map`, a stream deleted during the iteration and not yet reached
   * is skipped, and so is the rest after a clear().
   */
  * values (): IterableIterator<T> {
    for (const id in this.entries) {
      const value = this.entries[id]
      if (value !== undefined) yield value
    }
  }

  clear (): void {
    this.entries = {}
    this.count = 0
  }
}
