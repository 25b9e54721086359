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
   * Batches a frame. `done` runs asynchronously, like a stream's write
   * callback, once the frame is sure to go out: in the same turn, just
   * before the batch holding it is handed to the socket (so that what the
   * callback writes, a unary call's status after its response, a stream's
   * next message, can join that batch), or right after the batch was sent.
   */
  write (frame: Uint8Array, done?: () => void): void {
    if (this.size + frame.byteLength > this.maxMessageSize) this.sendBatch()
    this.parts.push(frame)
    this.size += frame.byteLength
    if (done !== undefined) this.callbacks.push(done)
    if (!this.scheduled) {
      this.scheduled = true
      queueMicrotask(this.onTick)
    }
  }

  private readonly onTick = (): void => {
    // Callbacks first, in write order, twice at most: what they write joins
    // this message (one socket write per unary round trip instead of two).
    for (let round = 0; round < 2 && this.callbacks.length > 0 && this.size < this.maxMessageSize; round++) {
      const callbacks = this.callbacks
      this.callbacks = []
      for (const done of callbacks) done()
    }
    this.scheduled = false
    this.flush()
  }

  /** Sends what is batched now; callbacks still due run right after, asynchronously. */
  flush (): void {
    this.sendBatch()
    const callbacks = this.callbacks
    if (callbacks.length === 0) return
    this.callbacks = []
    // Deferred, so a callback that writes again never re-enters a writer or
    // a stream that is part way through a write.
    queueMicrotask(() => { for (const done of callbacks) done() })
  }

  private sendBatch (): void {
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
    this.parts = []
    this.size = 0
    this.send(message)
  }

  /** Drops what is batched (the socket is gone). */
  discard (): void {
    this.parts = []
    this.size = 0
    this.callbacks = []
  }
}
