/**
 * Bytes held first in, first out, in blocks. What a peer sends as many small
 * pieces (a message in one-byte frames, thousands of empty messages) costs
 * its bytes and a share of a block here, never an object per piece, so what
 * a receiver holds follows what was counted on the wire.
 *
 * Pure: Uint8Array only.
 */

/**
 * Block sizes: a queue starts small (one queued request must not cost 16 KiB)
 * and doubles its blocks up to the largest; a larger push gets a block of
 * its own size.
 */
const FIRST_BLOCK = 256
const BLOCK_SIZE = 16 * 1024

export class ByteQueue {
  private blocks: Uint8Array[] = []
  // Read offset in the first block, write offset in the last one.
  private readAt = 0
  private writeAt = 0
  private size = 0
  private nextBlock = FIRST_BLOCK

  /** Bytes held. */
  get length (): number { return this.size }

  /** Copies `bytes` in. */
  push (bytes: Uint8Array): void {
    let at = 0
    const n = bytes.byteLength
    while (at < n) {
      let block = this.blocks[this.blocks.length - 1]
      if (block === undefined || this.writeAt === block.byteLength) {
        block = new Uint8Array(Math.max(this.nextBlock, n - at))
        this.nextBlock = Math.min(BLOCK_SIZE, this.nextBlock * 2)
        this.blocks.push(block)
        this.writeAt = 0
      }
      const k = Math.min(n - at, block.byteLength - this.writeAt)
      block.set(k === n ? bytes : bytes.subarray(at, at + k), this.writeAt)
      this.writeAt += k
      at += k
    }
    this.size += n
  }

  /**
   * Takes the first `n` bytes: a view when they lie in one block (blocks are
   * only appended to, so it never changes), a copy when they span blocks.
   */
  shift (n: number): Uint8Array {
    if (n > this.size) throw new RangeError('ByteQueue: shift past the end')
    this.size -= n
    const first = this.blocks[0]
    if (first !== undefined && this.readAt + n <= this.end()) return this.take(first, n)
    const out = new Uint8Array(n)
    for (let filled = 0; filled < n;) {
      const k = Math.min(n - filled, this.end() - this.readAt)
      out.set(this.take(this.blocks[0]!, k), filled)
      filled += k
    }
    return out
  }

  /** Drops everything. */
  clear (): void {
    this.blocks = []
    this.readAt = this.writeAt = this.size = 0
    this.nextBlock = FIRST_BLOCK
  }

  // Where the data of the first block ends: the write offset if it is the last.
  private end (): number {
    return this.blocks.length === 1 ? this.writeAt : this.blocks[0]!.byteLength
  }

  // k bytes of the first block, which is dropped once read to its end.
  private take (block: Uint8Array, k: number): Uint8Array {
    const out = block.subarray(this.readAt, this.readAt += k)
    if (this.readAt === this.end()) {
      this.blocks.shift()
      this.readAt = 0
      if (this.blocks.length === 0) {
        this.writeAt = 0
        this.nextBlock = FIRST_BLOCK
      }
    }
    return out
  }
}

/**
 * Whole messages held in order: their bytes in one {@link ByteQueue}, their
 * lengths in an array (8 bytes of bookkeeping a message).
 */
export class MessageQueue {
  private readonly bytes = new ByteQueue()
  private lengths: number[] = []

  /** Messages held. */
  get size (): number { return this.lengths.length }

  /** Bytes held, not counting the lengths. */
  get byteLength (): number { return this.bytes.length }

  /** Copies a message in. */
  push (message: Uint8Array): void {
    this.lengths.push(message.byteLength)
    this.bytes.push(message)
  }

  /** The oldest message, or undefined. A view or a copy, see {@link ByteQueue.shift}. */
  shift (): Uint8Array | undefined {
    const n = this.lengths.shift()
    return n === undefined ? undefined : this.bytes.shift(n)
  }

  clear (): void {
    this.bytes.clear()
    this.lengths = []
  }
}
