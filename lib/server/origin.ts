/**
 * Which browser origins may open a WebSocket: the defence against
 * cross-site WebSocket hijacking, where a page on another site opens a
 * socket that carries the user's cookies.
 */
import type { ResolvedOptions } from '../options.js'

/**
 * True when an upgrade from `origin` to `host` is allowed. No Origin header
 * means a non-browser client (a backend), which cookies cannot be stolen
 * from: allowed. By default only same-origin pages are allowed.
 */
export function originAllowed (origin: string | undefined, host: string | undefined, allowed: ResolvedOptions['allowedOrigins']): boolean {
  if (origin === undefined) return true
  if (allowed === '*') return true
  if (typeof allowed === 'function') return allowed(origin)
  if (Array.isArray(allowed)) return allowed.includes(origin)
  try {
    return new URL(origin).host === host
  } catch {
    return false
  }
}
