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
 * milliseconds. (An object keyed by id avoids that, but its elements go to a
 * dictionary as ids grow, and cost more per call than this.)
 *
 * Ids only grow, and few streams are open at once, so a stream goes in the
 * slot its id picks in a small ring of slots, which doubles when half full.
 * A stream whose slot is taken (by one opened long before) waits in a short
 * list beside the ring.
 */
const FIRST_CAPACITY = 8

export class StreamMap<T> {
  // Slot i holds ids[i] (0: free) and its value in slotValues[i].
  private ids: number[] = []
  private slotValues: Array<T | undefined> = []
  private mask = -1
  private spillIds: number[] = []
  private spillValues: T[] = []
  private count = 0

  get size (): number { return this.count }

  get (id: number): T | undefined {
    const i = (id >>> 1) & this.mask
    if (this.ids[i] === id) return this.slotValues[i]
    if (this.spillIds.length === 0) return undefined
    const at = this.spillIds.indexOf(id)
    return at === -1 ? undefined : this.spillValues[at]
  }

  set (id: number, value: T): void {
    if (id <= 0) throw new RangeError(`stream id ${id} must be positive`)
    const i = (id >>> 1) & this.mask
    if (this.ids[i] === id) {
      this.slotValues[i] = value
      return
    }
    const at = this.spillIds.indexOf(id)
    if (at !== -1) {
      this.spillValues[at] = value
      return
    }
    if (2 * (this.count + 1) > this.mask + 1) this.grow()
    this.place(id, value)
    this.count++
  }

  /** Removes the stream; false if there was none with this id. */
  delete (id: number): boolean {
    const i = (id >>> 1) & this.mask
    if (this.ids[i] === id) {
      this.ids[i] = 0
      this.slotValues[i] = undefined
    } else {
      const at = this.spillIds.indexOf(id)
      if (at === -1) return false
      this.spillIds.splice(at, 1)
      this.spillValues.splice(at, 1)
    }
    this.count--
    return true
  }

  /**
   * The streams in ascending id order (the order they were opened in). As
   * with a `Map`, a stream deleted during the iteration and not yet reached
   * is skipped, and so is the rest after a clear().
   */
  * values (): IterableIterator<T> {
    const ids: number[] = []
    for (const id of this.ids) if (id !== 0) ids.push(id)
    ids.push(...this.spillIds)
    ids.sort((a, b) => a - b)
    for (const id of ids) {
      const value = this.get(id)
      if (value !== undefined) yield value
    }
  }

  clear (): void {
    this.ids = []
    this.slotValues = []
    this.mask = -1
    this.spillIds = []
    this.spillValues = []
    this.count = 0
  }

  private place (id: number, value: T): void {
    const i = (id >>> 1) & this.mask
    if (this.ids[i] === 0) {
      this.ids[i] = id
      this.slotValues[i] = value
    } else {
      this.spillIds.push(id)
      this.spillValues.push(value)
    }
  }

  private grow (): void {
    const ids = this.ids
    const values = this.slotValues
    const spillIds = this.spillIds
    const spillValues = this.spillValues
    const capacity = Math.max(FIRST_CAPACITY, 2 * (this.mask + 1))
    this.ids = new Array<number>(capacity).fill(0)
    this.slotValues = new Array<T | undefined>(capacity).fill(undefined)
    this.mask = capacity - 1
    this.spillIds = []
    this.spillValues = []
    for (let i = 0; i < ids.length; i++) if (ids[i] !== 0) this.place(ids[i]!, values[i]!)
    for (let i = 0; i < spillIds.length; i++) this.place(spillIds[i]!, spillValues[i]!)
  }
}
