/**
 * A token bucket for what a well-behaved peer does rarely (cancel streams
 * the server is still serving, open calls the server must refuse, break the
 * protocol on a stream): `burst` at once, refilled at `perSecond`. Modelled
 * on nghttp2's stream reset rate limit (CVE-2023-44487, "rapid reset").
 */

/** `burst` events at once, then `perSecond` on average. */
export interface RateLimit {
  readonly burst: number
  readonly perSecond: number
}

export class RateBudget {
  private tokens: number
  private last: number

  constructor (private readonly limit: RateLimit, now: number) {
    this.tokens = limit.burst
    this.last = now
  }

  /** Spends one token; false once the budget is spent. */
  take (now: number): boolean {
    const { burst, perSecond } = this.limit
    // Refilled lazily, by the time since the last event: no timer.
    if (now > this.last) {
      this.tokens = Math.min(burst, this.tokens + (now - this.last) * perSecond / 1000)
      this.last = now
    }
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }
}
