/**
 * One call subscribed to a topic: a bounded queue in front of the call's
 * write(). Messages go straight to the call while it takes them (write()
 * returns true); once it says stop, they wait here, up to the bounds, until
 * its 'drain'. Past the bounds the overflow policy applies, so a subscriber
 * that never reads holds at most its bound (plus what the call's own stream
 * and transport already hold: see README, Topics) and never slows the others.
 */
import type { EncodedMessage } from '../grpc-internals.js'

/** What happens to a subscriber whose queue is full. */
export type OverflowPolicy = 'drop-oldest' | 'drop-newest' | 'end'

export interface QueueLimits {
  /** Messages a subscriber's queue holds at most. */
  readonly maxQueueMessages: number
  /** Bytes (encoded messages) a subscriber's queue holds at most. */
  readonly maxQueueBytes: number
  readonly overflow: OverflowPolicy
}

/** The part of a grpc-js server call object a subscriber uses. */
// Method syntax: grpc-js's typed streams (write(chunk: Response)) fit it.
export interface WritableCall {
  write (chunk: any): boolean
  once (event: 'drain', listener: () => void): unknown
  removeListener (event: 'drain', listener: () => void): unknown
  readonly writableEnded: boolean
  readonly destroyed: boolean
}

export interface SubscriberEvents {
  /** Messages dropped by the policy. */
  dropped: (count: number) => void
  /** The queue overflowed under the 'end' policy: end the call. */
  overflowed: () => void
}

export class Subscriber {
  // A ring would save the occasional array copy; shift() on arrays of this
  // size is what Node's own streams do.
  private readonly queue: EncodedMessage[] = []
  private queuedBytes = 0
  private blocked = false
  private closed = false
  private readonly onDrain = (): void => { this.flush() }

  constructor (
    readonly call: WritableCall,
    private readonly limits: QueueLimits,
    private readonly events: SubscriberEvents
  ) {}

  /** Messages waiting for the call. */
  get queued (): number { return this.queue.length }
  /** Bytes waiting for the call. */
  get bytes (): number { return this.queuedBytes }

  deliver (message: EncodedMessage): void {
    if (this.closed || this.call.writableEnded || this.call.destroyed) return
    if (!this.blocked) {
      this.write(message)
      return
    }
    const size = message.bytes.byteLength
    const { maxQueueMessages, maxQueueBytes, overflow } = this.limits
    if (this.queue.length < maxQueueMessages && this.queuedBytes + size <= maxQueueBytes) {
      this.push(message)
      return
    }
    switch (overflow) {
      case 'drop-newest':
        this.events.dropped(1)
        return
      case 'drop-oldest': {
        let dropped = 0
        while (this.queue.length > 0 && (this.queue.length >= maxQueueMessages || this.queuedBytes + size > maxQueueBytes)) {
          this.queuedBytes -= this.queue.shift()!.bytes.byteLength
          dropped++
        }
        if (this.queuedBytes + size <= maxQueueBytes) {
          this.push(message)
        } else {
          dropped++ // larger than the whole byte bound on its own
        }
        this.events.dropped(dropped)
        return
      }
      case 'end':
        this.events.dropped(this.queue.length + 1)
        this.close()
        this.events.overflowed()
    }
  }

  /** Forgets the queue and stops writing (the call ended or unsubscribed). */
  close (): void {
    if (this.closed) return
    this.closed = true
    this.queue.length = 0
    this.queuedBytes = 0
    this.call.removeListener('drain', this.onDrain)
  }

  private push (message: EncodedMessage): void {
    this.queue.push(message)
    this.queuedBytes += message.bytes.byteLength
  }

  private write (message: EncodedMessage): void {
    if (!this.call.write(message)) {
      this.blocked = true
      this.call.once('drain', this.onDrain)
    }
  }

  private flush (): void {
    this.blocked = false
    while (!this.closed && !this.blocked && this.queue.length > 0) {
      if (this.call.writableEnded || this.call.destroyed) return
      const message = this.queue.shift()!
      this.queuedBytes -= message.bytes.byteLength
      this.write(message)
    }
  }
}
