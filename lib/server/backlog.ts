/**
 * Stops reading a peer whose replies pile up unsent. What a peer makes the
 * server write without being a stream that waits for the socket (PING ACKs,
 * refusals, WINDOW_UPDATEs, ws pongs) would otherwise queue without bound
 * while the peer sends and never reads. Past `limit` unsent bytes the socket
 * is no longer read, so the peer's requests wait in its own buffers, until
 * the socket has drained (Node's 'drain': everything written is out).
 * Nothing is dropped and no timer is needed, so it holds with keepalive off.
 */
import type { Socket } from 'node:net'
import type { WebSocket } from 'ws'

export class SendBacklog {
  /** Bytes `socket.bufferedAmount` may reach before reading stops. */
  readonly limit: number
  private paused = false
  private onDrain: (() => void) | null = null

  /**
   * @param netSocket the socket under `socket` (the upgrade request's)
   * @param limit bytes of backlog beyond which reading stops
   * @param mayResume false while the owner keeps reading paused for its own reasons
   */
  constructor (
    private readonly socket: WebSocket,
    private readonly netSocket: Socket,
    limit: number,
    private readonly mayResume: () => boolean = always
  ) {
    // Node emits 'drain' only after a write found its buffer at its own
    // high-water mark: never stop below that, or nothing would resume.
    this.limit = Math.max(limit, netSocket.writableHighWaterMark)
  }

  /** True while reading is stopped for the backlog. */
  get readingPaused (): boolean { return this.paused }

  /** After writing: past the limit, stops reading until the socket has drained. */
  check (buffered = this.socket.bufferedAmount): void {
    if (buffered <= this.limit || this.paused) return
    // Ended already: no 'drain' would come (and nothing is read any more).
    if (this.netSocket.destroyed || !this.netSocket.writableNeedDrain) return
    this.paused = true
    this.socket.pause()
    this.netSocket.once('drain', this.onDrain ??= () => { this.drained() })
  }

  private drained (): void {
    this.paused = false
    if (this.mayResume()) this.socket.resume()
  }
}

function always (): boolean { return true }
