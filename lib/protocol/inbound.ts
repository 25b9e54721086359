/**
 * One stream's incoming messages: MESSAGE frames checked against the window
 * and the size limit, and joined back into whole messages.
 *
 * Credit for the pieces of a message still arriving goes back at once (they
 * sit in this assembler, bounded by the size limit, so a message larger than
 * the window can still arrive); credit for a whole message goes back when the
 * application takes it (see {@link InboundMessages.release}).
 */
import { ReceiveWindow } from './flow-control.js'

export interface InboundError {
  /** A gRPC status code for the stream. */
  code: number
  details: string
}

export class InboundMessages {
  readonly window: ReceiveWindow
  private parts: Uint8Array[] = []
  private size = 0
  // Credit still held for each whole message not yet taken, oldest first.
  private readonly held: number[] = []

  /**
   * @param sendCredit sends a WINDOW_UPDATE for this stream
   */
  constructor (windowSize: number, private readonly maxMessageSize: number, private readonly sendCredit: (increment: number) => void) {
    this.window = new ReceiveWindow(windowSize)
  }

  /**
   * Takes one MESSAGE frame payload. Returns the completed message, null
   * while more pieces are due, or an error that ends the stream.
   */
  receive (chunk: Uint8Array, more: boolean): Uint8Array | null | InboundError {
    const n = chunk.byteLength
    if (!this.window.receive(n)) {
      return { code: 8, details: `Flow control window exceeded: received ${n} bytes with ${this.window.size} allowed in flight` }
    }
    const total = this.size + n
    if (this.maxMessageSize >= 0 && total > this.maxMessageSize) {
      return { code: 8, details: `Received message larger than max (${total} vs ${this.maxMessageSize})` }
    }
    if (more) {
      // Copy: the frame's bytes belong to the socket's buffer.
      this.parts.push(chunk.slice())
      this.size = total
      this.release(n)
      return null
    }
    this.held.push(n)
    if (this.parts.length === 0) return chunk
    const message = new Uint8Array(total)
    let at = 0
    for (const part of this.parts) {
      message.set(part, at)
      at += part.byteLength
    }
    message.set(chunk, at)
    this.parts = []
    this.size = 0
    return message
  }

  /** The application took the oldest whole message: its credit goes back. */
  consumed (): void {
    const n = this.held.shift()
    if (n !== undefined) this.release(n)
  }

  private release (n: number): void {
    const increment = this.window.release(n)
    if (increment > 0) this.sendCredit(increment)
  }
}
