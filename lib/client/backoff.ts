/**
 * Delays between connection attempts: exponential, capped, and randomised
 * so that many clients dropped by one server restart do not all come back
 * in the same instant. Browser-safe.
 */
export interface BackoffOptions {
  /** Delay before retrying after the first failed attempt, in ms. 0 retries at once. */
  initialMs?: number
  /** Largest delay, in ms. */
  maxMs?: number
  /** Each further failure multiplies the delay by this. */
  multiplier?: number
  /** Each delay is moved at random by up to this fraction of itself, either way (0 … 1). */
  jitter?: number
}

export class Backoff {
  private readonly initialMs: number
  private readonly maxMs: number
  private readonly multiplier: number
  private readonly jitter: number
  private failures = 0

  constructor (options: BackoffOptions = {}, private readonly random: () => number = Math.random) {
    this.initialMs = options.initialMs ?? 0
    this.maxMs = options.maxMs ?? 30000
    this.multiplier = options.multiplier ?? 1.6
    this.jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2))
  }

  /** Counts a failed attempt and returns how long to wait before the next one. */
  fail (): number {
    const base = Math.min(this.maxMs, this.initialMs * this.multiplier ** this.failures)
    this.failures++
    return Math.max(0, Math.round(base * (1 + this.jitter * (2 * this.random() - 1))))
  }

  /** An attempt succeeded: the next failure starts from `initialMs` again. */
  reset (): void {
    this.failures = 0
  }
}
