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
