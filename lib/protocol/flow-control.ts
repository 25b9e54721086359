/**
 * Per-stream flow control, counted in MESSAGE frames: each costs its payload
 * plus {@link FRAME_CHARGE}. The receiver announces a window; the sender may
 * not send more than the window allows; the receiver returns credit with
 * WINDOW_UPDATE as bytes leave its buffers. Used the same way by the server
 * and the clients.
 */

/** Largest window either side may reach, as in HTTP/2. */
export const MAX_WINDOW = 0x7fffffff

/**
 * What every MESSAGE frame costs of the window beyond its payload, as HTTP/2
 * charges each gRPC message its 5-byte prefix: no frame is free, so a window
 * bounds how many messages (empty ones too) a receiver can be made to hold,
 * not only their bytes.
 */
export const FRAME_CHARGE = 5

/** The sender's view: how many bytes it may still send. */
export class SendWindow {
  constructor (public available: number) {}

  /** Takes up to `wanted` bytes of credit and returns how many were taken. */
  take (wanted: number): number {
    const n = Math.min(wanted, this.available)
    this.available -= n
    return n
  }

  /** Adds credit from a WINDOW_UPDATE; false if it overflows {@link MAX_WINDOW}. */
  grant (increment: number): boolean {
    if (increment === 0 || this.available + increment > MAX_WINDOW) return false
    this.available += increment
    return true
  }
}

/** The receiver's view: bytes it still expects at most, and credit to return. */
export class ReceiveWindow {
  private remaining: number
  private unacknowledged = 0

  constructor (readonly size: number) {
    this.remaining = size
  }

  /** What the sender may still send. */
  get available (): number { return this.remaining }

  /** Accounts for received bytes; false when the sender exceeded the window. */
  receive (n: number): boolean {
    if (n > this.remaining) return false
    this.remaining -= n
    return true
  }

  /**
   * Marks bytes as released by the receiver. Returns the increment to send in
   * a WINDOW_UPDATE now, or 0 to keep batching (credit goes back once half
   * the window is released, so small messages do not each cost an update).
   */
  release (n: number): number {
    this.unacknowledged += n
    if (this.unacknowledged < this.size / 2 && this.remaining > 0) return 0
    const increment = this.unacknowledged
    this.unacknowledged = 0
    this.remaining += increment
    return increment
  }
}
