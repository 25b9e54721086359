/**
 * Batches the frames written in one microtask checkpoint into as few
 * WebSocket messages as the peer's size limit (and, where given, a number of
 * frames per message) allows: a call's CALL, MESSAGE and HALF_CLOSE, or the
 * replies to many calls in flight, leave as one message.
 */
import { FRAME_HEADER_SIZE, FrameType, writeFrameHeader } from './frame.js'
import { TurnQueue } from './turn-queue.js'

/** Where a writer's batches go: one WebSocket message each. */
export interface BatchSink {
  sendBatch (message: Uint8Array): void
}

// Writers with a batch due, flushed together in one microtask: no closure
// per writer (one per connection, kept as long as the connection).
const due = new TurnQueue<FrameWriter>(queueMicrotask, writer => { writer.tick() })

/**
 * For one synchronous run (a fan-out writing to thousands of streams): a
 * function that sends at once the batches of the writers that became due
 * since this call, each once, their callbacks kept for the turn's tick. So
 * the first sockets are on the wire while the rest are still being queued.
 * Writers due before the call are left alone, and so are frames a writer
 * gets after it was sent: a burst of writes in one turn still leaves as one
 * batch per writer.
 */
export function sendBatchesDueFromNow (): () => void {
  const writers = due.items
  let at = writers.length
  return () => {
    // Callbacks stay for the tick: as if the batch had not been sent yet.
    for (; at < writers.length; at++) writers[at]!.sendBatch()
  }
}

export class FrameWriter {
  // Null while empty: an idle connection keeps no arrays.
  protected parts: Uint8Array[] | null = null
  protected size = 0
  private frames = 0
  private callbacks: Array<() => void> | null = null
  private scheduled = false

  /**
   * @param sink delivers each batch as one WebSocket message
   * @param maxMessageSize the peer's largest accepted WebSocket message
   * @param maxBatchFrames a batch holding this many frames leaves before the
   *   turn is over, so the peer can start on it while this side writes more
   */
  constructor (private readonly sink: BatchSink, public maxMessageSize: number, private readonly maxBatchFrames = Infinity) {}

  /**
   * Batches a frame. `done` runs asynchronously, like a stream's write
   * callback, once the frame is sure to go out: in the same turn, just
   * before the batch holding it is handed to the socket (so that what the
   * callback writes, a unary call's status after its response, a stream's
   * next message, can join that batch), or right after the batch was sent.
   */
  write (frame: Uint8Array, done?: () => void): void {
    this.makeRoom(frame.byteLength)
    this.add(frame, done)
  }

  /**
   * Batches a MESSAGE frame: its header, and `chunk` itself, which is not
   * copied here. It must not change afterwards: this writer copies it into
   * the batch, but the server's writer hands a large chunk to the socket as it is.
   */
  writeMessage (streamId: number, flags: number, chunk: Uint8Array, done?: () => void): void {
    const header = new Uint8Array(FRAME_HEADER_SIZE)
    writeFrameHeader(header, 0, FrameType.MESSAGE, flags, streamId, chunk.byteLength)
    this.makeRoom(FRAME_HEADER_SIZE + chunk.byteLength)
    this.add(header)
    this.add(chunk, done)
  }

  /** Counts one more frame of `frameSize` bytes, sending the batch first if the frame would not fit in it. */
  private makeRoom (frameSize: number): void {
    if (this.size + frameSize > this.maxMessageSize || this.frames >= this.maxBatchFrames) this.sendBatch()
    this.frames++
  }

  private add (part: Uint8Array, done?: () => void): void {
    (this.parts ??= []).push(part)
    this.size += part.byteLength
    if (done !== undefined) (this.callbacks ??= []).push(done)
    if (!this.scheduled) {
      this.scheduled = true
      due.add(this)
    }
  }

  /** @private The microtask checkpoint after the first write is over: send the batch. */
  tick (): void {
    // Callbacks first, in write order, for 32 rounds at most: what they write
    // joins this message (a unary call's status after its response, a
    // stream's next message). A grpc-js stream writes one message at a time,
    // the next from the previous one's callback, so each round adds one
    // message per stream (at two rounds, pipelined bidi left three messages
    // per socket write). A literal: the browser bundle's budget is tight.
    let callbacks = this.callbacks
    for (let round = 0; round < 32 && callbacks !== null && this.size < this.maxMessageSize; round++) {
      this.callbacks = null
      for (const done of callbacks) done()
      callbacks = this.callbacks
    }
    this.scheduled = false
    this.flush()
  }

  /** Sends what is batched now; callbacks still due run right after, asynchronously. */
  flush (): void {
    this.sendBatch()
    const callbacks = this.callbacks
    if (callbacks === null) return
    this.callbacks = null
    // Deferred, so a callback that writes again never re-enters a writer or
    // a stream that is part way through a write.
    queueMicrotask(() => { for (const done of callbacks) done() })
  }

  /** @private Sends what is batched now, leaving the callbacks for the tick. */
  sendBatch (): void {
    const parts = this.parts
    if (parts === null) return
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
    this.empty()
    this.sink.sendBatch(message)
  }

  protected empty (): void {
    this.parts = null
    this.size = 0
    this.frames = 0
  }

  /** Drops what is batched (the socket is gone). */
  discard (): void {
    this.empty()
    this.callbacks = null
  }
}
