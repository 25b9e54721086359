/**
 * Every wait in the tests is bounded: this rejects, naming what was awaited,
 * when `promise` has not settled within `ms`. No Node built-ins, so browser
 * pages under test can use it too.
 */
export async function bounded<T> (what: string, promise: Promise<T>, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  try {
    return await Promise.race([promise, new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => { reject(new Error(`timed out after ${ms} ms waiting for ${what}`)) }, ms)
    })])
  } finally {
    clearTimeout(timer)
  }
}

/** Bounded waits for a condition over state that changes by events: call `changed()` after each. */
export class Changes {
  private readonly waiters = new Set<() => void>()

  /** Something changed: the waits check their condition again. */
  changed (): void {
    for (const waiter of [...this.waiters]) waiter()
  }

  /** Resolves with what `check` returns once that is not undefined. */
  async until<T> (what: string, check: () => T | undefined, ms = 5000): Promise<T> {
    const now = check()
    if (now !== undefined) return now
    let waiter: (() => void) | undefined
    try {
      return await bounded(what, new Promise<T>(resolve => {
        waiter = () => {
          const value = check()
          if (value !== undefined) resolve(value)
        }
        this.waiters.add(waiter)
      }), ms)
    } finally {
      if (waiter !== undefined) this.waiters.delete(waiter)
    }
  }
}
