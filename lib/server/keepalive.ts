/**
 * WebSocket pings on one socket, driven by the server's ticker: a ping when
 * one is due, and the stall of a peer that leaves it unanswered. Shared by
 * both protocols' connections.
 */
import type { WebSocket } from 'ws'

export class Keepalive {
  private lastPingAt: number
  // When the ping still unanswered went out; 0 when none is.
  private sentAt = 0

  constructor (private readonly socket: WebSocket, now: number) {
    this.lastPingAt = now
  }

  /** A ping has waited `timeout` ms or more for its pong. */
  stalled (now: number, timeout: number): boolean {
    return this.sentAt !== 0 && now - this.sentAt >= timeout
  }

  /** Pings when `interval` ms (0: never) have passed since the last ping and none is out. */
  maybePing (now: number, interval: number): void {
    if (interval <= 0 || this.sentAt !== 0 || now - this.lastPingAt < interval) return
    this.lastPingAt = this.sentAt = now
    // Listened to only while a ping is out: idle connections keep no closure.
    this.socket.once('pong', () => { this.sentAt = 0 })
    this.socket.ping()
  }

  /**
   * Pings every `interval` ms (0: never) whether or not a ping is out: for a
   * socket that is not being read, whose pongs cannot arrive. Each ping is
   * a write, and a write to a peer that has gone fails (the kernel answers
   * the first with a reset, the next fails), which ends in 'close'. None
   * while bytes are still queued: a write is then pending already, and
   * fails just the same.
   */
  pingUnread (now: number, interval: number): void {
    if (interval <= 0 || now - this.lastPingAt < interval || this.socket.bufferedAmount > 0) return
    this.lastPingAt = now
    if (this.sentAt === 0) {
      this.sentAt = now
      this.socket.once('pong', () => { this.sentAt = 0 })
    }
    this.socket.ping()
  }

  /** Starts over, as if a ping had just been answered (reading resumed: a pong may have waited unread). */
  restart (now: number): void {
    this.sentAt = 0
    this.lastPingAt = now
  }
}
