/**
 * One stream's outgoing messages: split into MESSAGE frames no larger than
 * the peer accepts, sent only as far as the peer's window allows, and
 * followed by a closing frame (HALF_CLOSE or TRAILERS) once all are out.
 */
import { FrameFlags, FrameType, encodeFrame } from './frame.js'
import { FRAME_CHARGE, type SendWindow } from './flow-control.js'

/** Where a stream's frames go: the connection's writer. */
export interface FrameSink {
  write (frame: Uint8Array, done?: () => void): void
  /** A MESSAGE frame with `chunk` as its payload; `chunk` must not change until `done`. */
  writeMessage (streamId: number, flags: number, chunk: Uint8Array, done?: () => void): void
  /** Largest MESSAGE payload in one frame. */
  readonly maxFramePayload: number
  /** False while the socket's send buffer is over its high-water mark. */
  canWrite (): boolean
}

interface Pending {
  bytes: Uint8Array
  offset: number
  done: (() => void) | undefined
}

/** One whole MESSAGE frame in a fresh buffer. */
export function buildMessageFrame (streamId: number, flags: number, chunk: Uint8Array): Uint8Array {
  return encodeFrame(FrameType.MESSAGE, flags, streamId, chunk)
}

export class OutboundMessages {
  private readonly queue: Pending[] = []
  private closing: { frame: Uint8Array, done: (() => void) | undefined } | null = null

  constructor (
    private readonly streamId: number,
    readonly window: SendWindow,
    private readonly sink: FrameSink
  ) {}

  /**
   * Queues a message; `done` runs once its last frame has gone to the
   * socket. The bytes are not copied: they must not change until then.
   */
  send (bytes: Uint8Array, done?: () => void): void {
    const n = bytes.byteLength
    if (this.queue.length === 0 && n <= this.sink.maxFramePayload && n + FRAME_CHARGE <= this.window.available && this.sink.canWrite()) {
      // One frame, nothing ahead of it: straight to the writer.
      this.window.available -= n + FRAME_CHARGE
      this.sink.writeMessage(this.streamId, 0, bytes, done)
      return
    }
    this.queue.push({ bytes, offset: 0, done })
    if (this.queue.length === 1) this.pump()
  }

  /** Writes `frame` after every queued message; `done` runs once it has gone to the socket. */
  finish (frame: Uint8Array, done?: () => void): void {
    if (this.queue.length === 0) this.sink.write(frame, done)
    else this.closing = { frame, done }
  }

  /** Adds window credit and sends what it allows. */
  grant (increment: number): boolean {
    if (!this.window.grant(increment)) return false
    this.pump()
    return true
  }

  /**
   * Sends as much as the window and the socket allow. A frame goes out only
   * with credit for its charge and at least one byte (all of an empty
   * message), so no frame is ever empty but an empty message's.
   */
  pump (): void {
    const queue = this.queue
    // A peer's limit that leaves no room for a payload would loop forever.
    if (this.sink.maxFramePayload < 1) return
    while (queue.length > 0) {
      if (!this.sink.canWrite()) return
      const m = queue[0]!
      const left = m.bytes.byteLength - m.offset
      const credit = this.window.available - FRAME_CHARGE
      if (credit < 0 || (credit === 0 && left > 0)) return
      const n = this.window.take(Math.min(left, this.sink.maxFramePayload, credit) + FRAME_CHARGE) - FRAME_CHARGE
      const end = m.offset + n
      const last = end === m.bytes.byteLength
      // A whole message needs no view of itself (a Buffer's subarray is not free).
      const chunk = m.offset === 0 && last ? m.bytes : m.bytes.subarray(m.offset, end)
      this.sink.writeMessage(this.streamId, last ? 0 : FrameFlags.MORE, chunk, last ? m.done : undefined)
      m.offset = end
      if (last) queue.shift()
    }
    const closing = this.closing
    if (closing !== null && queue.length === 0) {
      this.closing = null
      this.sink.write(closing.frame, closing.done)
    }
  }

  /** Forgets everything queued; no callback runs (the stream is gone). */
  clear (): void {
    this.queue.length = 0
    this.closing = null
  }
}
