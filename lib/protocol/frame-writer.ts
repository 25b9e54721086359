/**
 * Batches the frames written in one microtask checkpoint into as few
 * WebSocket messages as the peer's size limit allows: a call's CALL,
 * MESSAGE and HALF_CLOSE, or the replies to many calls in flight, leave as
 * one message.
 */
export class FrameWriter {
  private parts: Uint8Array[] = []
  private size = 0
  private callbacks: Array<() => void> = []
  private scheduled = false

  /**
   * @param send delivers one WebSocket message
   * @param maxMessageSize the peer's largest accepted WebSocket message
   */
  constructor (private readonly send: (message: Uint8Array) => void, public maxMessageSize: number) {}

  /**
   * Batches a frame. `done` runs once the batch holding it has been handed
   * to the socket: always asynchronously, like a stream's write callback.
   */
  write (frame: Uint8Array, done?: () => void): void {
    if (this.size + frame.byteLength > this.maxMessageSize) this.flush()
    this.parts.push(frame)
    this.size += frame.byteLength
    if (done !== undefined) this.callbacks.push(done)
    if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(this.onTick)
    }
  }

  private readonly onTick = (): void => {
    this.scheduled = false
    this.flush()
  }

  /** Sends what is batched now. */
  flush (): void {
    const parts = this.parts
    if (parts.length === 0) return
    let message: Uint8Array
    if (parts.length === 1) {
      message = parts[0]!
    } else {
      message = new Uint8Array(this.size)
      let at = 0
      for (const part of parts) {
        message.set(part, at)
        at += part.byteLength
      }
    }
    const callbacks = this.callbacks
    this.parts = []
    this.size = 0
    this.callbacks = []
    this.send(message)
    if (callbacks.length > 0) {
      // Deferred, so a callback that writes again never re-enters a writer
      // or a stream that is part way through a write.
      queueMicrotask(() => { for (const done of callbacks) done() })
    }
  }

  /** Drops what is batched (the socket is gone). */
  discard (): void {
    this.parts = []
    this.size = 0
    this.callbacks = []
  }
}
