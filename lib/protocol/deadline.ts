/**
 * A timer for an absolute deadline that may lie beyond setTimeout's range
 * (about 24.8 days): it re-arms instead of firing early. Browser-safe.
 */
const MAX_TIMER_MS = 0x7fffffff

/** Runs `onExpire` at `deadline` (ms since the epoch); returns a function that stops it. */
export function whenDeadlinePasses (deadline: number, onExpire: () => void): () => void {
  let timer: ReturnType<typeof setTimeout>
  const arm = (): void => {
    const left = deadline - Date.now()
    timer = setTimeout(left > MAX_TIMER_MS ? arm : onExpire, Math.max(0, Math.min(left, MAX_TIMER_MS)))
  }
  arm()
  return () => { clearTimeout(timer) }
}
