/**
 * One stream's incoming messages: MESSAGE frames checked against the window
 * and the size limit, and joined back into whole messages.
 *
 * Every frame costs its payload plus {@link FRAME_CHARGE} of the window, so
 * no frame is free. Credit for a whole message goes back when the
 * application takes it (see {@link InboundMessages.consumed}). Credit for
 * the pieces of a message still arriving goes back at once while no whole
 * message waits unread, so a message larger than the window can still
 * arrive (bounded by the size limit); while one waits, pieces keep their
 * credit too, or a sender could stack up unread messages of the size limit
 * each for a few bytes of window. So a stream never holds more than one
 * message of the size limit plus its window. Pieces are kept in blocks, not
 * an object each, so one-byte pieces hold a byte each.
 */
import { ByteQueue } from './byte-queue.js'
import { FRAME_CHARGE, ReceiveWindow } from './flow-control.js'
import { ProtocolError } from './frame.js'

export interface InboundError {
  /** A gRPC status code for the stream. */
  code: number
  details: string
  /** The sender broke the protocol (exceeded the window), rather than a limit an application may hit. */
  peerFault?: true
}

export class InboundMessages {
  readonly window: ReceiveWindow
  // Made for the first message that comes in pieces: most never do.
  private parts: ByteQueue | null = null
  // Credit still held for each whole message not yet taken, oldest first.
  private held: number[] = []
  // Credit of the pieces so far of the message arriving, kept while a whole message waits unread.
  private piecesHeld = 0

  /**
   * @param sendCredit sends a WINDOW_UPDATE for this stream
   */
  constructor (windowSize: number, private readonly maxMessageSize: number, private readonly sendCredit: (increment: number) => void) {
    this.window = new ReceiveWindow(windowSize)
  }

  /** Bytes held for a message still arriving. */
  get buffered (): number { return this.parts?.length ?? 0 }

  /**
   * Takes one MESSAGE frame payload. Returns the completed message (a view
   * that is only valid now: copy it to keep it), null while more pieces are
   * due, or an error that ends the stream. Throws a {@link ProtocolError}
   * for an empty piece, which no sender has a reason to send.
   */
  receive (chunk: Uint8Array, more: boolean): Uint8Array | null | InboundError {
    const n = chunk.byteLength
    if (more && n === 0) throw new ProtocolError('empty MESSAGE frame with MORE')
    const cost = n + FRAME_CHARGE
    if (!this.window.receive(cost)) {
      return { code: 8, details: `Flow control window exceeded: a MESSAGE frame of ${n} bytes counts ${cost} with ${this.window.available} left of a ${this.window.size}-byte window`, peerFault: true }
    }
    const parts = this.parts
    const total = (parts?.length ?? 0) + n
    if (this.maxMessageSize >= 0 && total > this.maxMessageSize) {
      // A message's length is known only at its last piece: refused earlier,
      // it is the bytes so far, and the message at least that large.
      return { code: 8, details: `Received message larger than max (${more ? 'at least ' : ''}${total} vs ${this.maxMessageSize})` }
    }
    if (more) {
      (this.parts ??= new ByteQueue()).push(chunk)
      if (this.held.length === 0) this.release(cost)
      else this.piecesHeld += cost
      return null
    }
    this.held.push(cost + this.piecesHeld)
    this.piecesHeld = 0
    if (parts === null || parts.length === 0) return chunk
    parts.push(chunk)
    return parts.shift(total)
  }

  /** The application took the oldest whole message: its credit goes back. */
  consumed (): void {
    const n = this.held.shift()
    if (n === undefined) return
    this.release(n)
    if (this.held.length === 0 && this.piecesHeld > 0) {
      // Nothing waits unread now: the message arriving may use the window again.
      const pieces = this.piecesHeld
      this.piecesHeld = 0
      this.release(pieces)
    }
  }

  private release (n: number): void {
    const increment = this.window.release(n)
    if (increment > 0) this.sendCredit(increment)
  }
}
