/**
 * Items queued during one turn, handled together from one scheduled
 * callback rather than one callback each: fewer closures and scheduler
 * entries under load. Pure: the scheduler is given (queueMicrotask,
 * process.nextTick).
 */
export class TurnQueue<T> {
  /** @private The items queued this turn so far: the same array until the turn's callback runs. */
  items: T[] = []

  /**
   * @param schedule runs its argument later (once per turn with items)
   * @param handle what is done with each item, in queueing order
   */
  constructor (private readonly schedule: (callback: () => void) => void, private readonly handle: (item: T) => void) {}

  add (item: T): void {
    if (this.items.push(item) === 1) {
      // Called unbound: browsers' queueMicrotask refuses any other `this`.
      const schedule = this.schedule
      schedule(this.drain)
    }
  }

  private readonly drain = (): void => {
    const items = this.items
    this.items = []
    let i = 0
    try {
      for (; i < items.length; i++) this.handle(items[i]!)
    } finally {
      // One item throwing must not leave the others waiting forever.
      for (i++; i < items.length; i++) this.add(items[i]!)
    }
  }
}
