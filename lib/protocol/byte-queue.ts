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

  /** Appends a u32, big-endian (a record's length). */
  pushU32 (value: number): void {
    const b = new Uint8Array(4)
    b[0] = value >>> 24
    b[1] = value >>> 16
    b[2] = value >>> 8
    b[3] = value
    this.push(b)
  }

  /**
   * Takes the first `n` bytes: a view when they lie in one block (valid until
   * the queue is written again past them, which never happens: blocks are
   * only appended to), a copy when they span blocks.
   */
  shift (n: number): Uint8Array {
    if (n > this.size) throw new RangeError(`shift(${n}) with ${this.size} bytes held`)
    const first = this.blocks[0]
    let out: Uint8Array
    if (n === 0 || first === undefined) {
      out = new Uint8Array(0)
    } else if (this.readAt + n <= this.end(0)) {
      out = first.subarray(this.readAt, this.readAt + n)
      this.readAt += n
      if (this.readAt === this.end(0)) this.dropFirst()
    } else {
      out = new Uint8Array(n)
      let filled = 0
      while (filled < n) {
        const block = this.blocks[0]!
        const k = Math.min(n - filled, this.end(0) - this.readAt)
        out.set(block.subarray(this.readAt, this.readAt + k), filled)
        filled += k
        this.readAt += k
        if (this.readAt === this.end(0)) this.dropFirst()
      }
    }
    this.size -= n
    return out
  }

  /** Takes a u32 written by {@link pushU32}. */
  shiftU32 (): number {
    const b = this.shift(4)
    return ((b[0]! << 24) >>> 0) + (b[1]! << 16) + (b[2]! << 8) + b[3]!
  }

  /** Drops everything. */
  clear (): void {
    this.blocks = []
    this.readAt = this.writeAt = this.size = 0
    this.nextBlock = FIRST_BLOCK
  }

  // Where the data of block i ends: the write offset for the last block.
  private end (i: number): number {
    return i === this.blocks.length - 1 ? this.writeAt : this.blocks[i]!.byteLength
  }

  private dropFirst (): void {
    this.blocks.shift()
    this.readAt = 0
    if (this.blocks.length === 0) {
      this.writeAt = 0
      this.nextBlock = FIRST_BLOCK
    }
  }
}

/**
 * Whole messages held in order, each as a length and its bytes in one
 * {@link ByteQueue}: 4 bytes of bookkeeping a message.
 */
export class MessageQueue {
  private readonly bytes = new ByteQueue()
  private count = 0

  /** Messages held. */
  get size (): number { return this.count }

  /** Bytes held, bookkeeping included. */
  get byteLength (): number { return this.bytes.length }

  /** Copies a message in. */
  push (message: Uint8Array): void {
    this.bytes.pushU32(message.byteLength)
    this.bytes.push(message)
    this.count++
  }

  /** The oldest message, or undefined. A view or a copy, see {@link ByteQueue.shift}. */
  shift (): Uint8Array | undefined {
    if (this.count === 0) return undefined
    this.count--
    return this.bytes.shift(this.bytes.shiftU32())
  }

  clear (): void {
    this.bytes.clear()
    this.count = 0
  }
}
