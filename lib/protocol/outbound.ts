/**
 * One stream's outgoing messages: split into MESSAGE frames no larger than
 * the peer accepts, sent only as far as the peer's window allows, and
 * followed by a closing frame (HALF_CLOSE or TRAILERS) once all are out.
 */
import { FRAME_HEADER_SIZE, FrameFlags, FrameType, writeFrameHeader } from './frame.js'
import type { SendWindow } from './flow-control.js'

/** Where a stream's frames go: the connection's writer. */
export interface FrameSink {
  write (frame: Uint8Array, done?: () => void): void
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

export function buildMessageFrame (streamId: number, flags: number, chunk: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_SIZE + chunk.byteLength)
  writeFrameHeader(frame, 0, FrameType.MESSAGE, flags, streamId, chunk.byteLength)
  frame.set(chunk, FRAME_HEADER_SIZE)
  return frame
}

export class OutboundMessages {
  private readonly queue: Pending[] = []
  private closing: { frame: Uint8Array, done: (() => void) | undefined } | null = null

  constructor (
    private readonly streamId: number,
    readonly window: SendWindow,
    private readonly sink: FrameSink
  ) {}

  /** Bytes queued and not yet sent. */
  get queuedBytes (): number {
    let n = 0
    for (const p of this.queue) n += p.bytes.byteLength - p.offset
    return n
  }

  /** Queues a message; `done` runs once its last frame has gone to the socket. */
  send (bytes: Uint8Array, done?: () => void): void {
    this.queue.push({ bytes, offset: 0, done })
    if (this.queue.length === 1) this.pump()
  }

  /** Writes `frame` after every queued message; `done` runs once it has gone to the socket. */
  finish (frame: Uint8Array, done?: () => void): void {
    this.closing = { frame, done }
    if (this.queue.length === 0) this.pump()
  }

  /** Adds window credit and sends what it allows. */
  grant (increment: number): boolean {
    if (!this.window.grant(increment)) return false
    this.pump()
    return true
  }

  /** Sends as much as the window and the socket allow. */
  pump (): void {
    const queue = this.queue
    while (queue.length > 0) {
      if (!this.sink.canWrite()) return
      const m = queue[0]!
      const left = m.bytes.byteLength - m.offset
      const n = this.window.take(Math.min(left, this.sink.maxFramePayload))
      if (n === 0 && left > 0) return
      const end = m.offset + n
      const last = end === m.bytes.byteLength
      // A whole message needs no view of itself (a Buffer's subarray is not free).
      const chunk = m.offset === 0 && last ? m.bytes : m.bytes.subarray(m.offset, end)
      this.sink.write(buildMessageFrame(this.streamId, last ? 0 : FrameFlags.MORE, chunk), last ? m.done : undefined)
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
