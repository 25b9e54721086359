/**
 * Topics: the fan-out registry behind `app.grpc.topics`. A server-streaming
 * or bidi call subscribes to a topic; a publish serializes its message once
 * and writes the same bytes to every subscriber, over every transport (the
 * handler's serializer passes EncodedMessage through: grpc-internals.ts),
 * and hands them to the bus for the subscribers of other instances.
 */
import { Metadata, status as GrpcStatus, type ServerInterceptingCallInterface } from '@grpc/grpc-js'
import { ERR_INVALID_OPTION, ERR_INVALID_TOPIC, ERR_TOPIC_SERIALIZER } from '../errors.js'
import { acceptEncoded, callChain, EncodedMessage, handlerOfCall, type RegisteredHandler } from '../grpc-internals.js'
import { sendBatchesDueFromNow } from '../protocol/frame-writer.js'
import { ServerCallBase } from '../server/call-base.js'
import { memoryBus, type TopicBus } from './bus.js'
import { Subscriber, type OverflowPolicy, type QueueLimits, type WritableCall } from './subscriber.js'

export type { OverflowPolicy } from './subscriber.js'

/** Per-subscriber queue bounds and what happens past them. */
export interface QueueOptions {
  /** Messages a subscriber's queue holds at most. Default 1000. */
  maxQueueMessages?: number
  /** Bytes of encoded messages a subscriber's queue holds at most. Default 256 KiB. */
  maxQueueBytes?: number
  /** What a full queue does: `'end'` (default), `'drop-oldest'` or `'drop-newest'`. */
  overflow?: OverflowPolicy
}

/** The plugin's `topics` option. */
export interface TopicsOptions extends QueueOptions {
  /** What carries messages between instances. Default: in-process only (`memoryBus()`). */
  bus?: TopicBus
}

export const topicsDefaults = {
  maxQueueMessages: 1000,
  maxQueueBytes: 256 * 1024,
  overflow: 'end'
} as const satisfies Required<QueueOptions>

export interface TopicOptions<T> {
  /** Encodes a message of this topic (the response serializer of its subscribers' methods). */
  serialize?: (message: T) => Uint8Array
}

/** Counts for one topic (`topics.stats(name)`). */
export interface TopicStats {
  /** Calls subscribed in this instance now. */
  subscribers: number
  /** Messages published from this instance. */
  published: number
  /** Messages the bus brought from other instances. */
  received: number
  /** Messages dropped by a subscriber's overflow policy (for 'end': what its queue held, and the one that did not fit). */
  dropped: number
  /** Subscribers ended with RESOURCE_EXHAUSTED by the 'end' policy. */
  ended: number
}

/** One call's subscription to a topic. */
export interface Subscription {
  readonly topic: string
  /**
   * Resolves once messages other instances publish reach this subscriber
   * (the bus subscribed; at once for the in-process bus). Rejects if the bus
   * failed to subscribe.
   */
  readonly ready: Promise<void>
  /** Messages this subscriber lost to its overflow policy. */
  readonly dropped: number
  /** True while subscribed. */
  readonly active: boolean
  /** Messages waiting in this subscriber's queue (the call did not take them yet). */
  readonly queued: number
  /** Bytes waiting in this subscriber's queue. */
  readonly queuedBytes: number
  /** Stops delivering to the call (the call itself goes on). Ending, cancelling or failing the call does it too. */
  unsubscribe: () => void
}

/** A topic with a fixed message type (from `topics.topic<T>(name, { serialize })`). */
export interface Topic<T> {
  readonly name: string
  subscribe: (call: SubscribableCall, options?: QueueOptions) => Subscription
  publish: (message: T) => Promise<void>
  publishEncoded: (bytes: Uint8Array) => Promise<void>
  stats: () => TopicStats
}

/**
 * A grpc-js ServerWritableStream or ServerDuplexStream, from the app's
 * grpcServer (HTTP/2) or from the WebSocket routes.
 */
export interface SubscribableCall extends WritableCall {
  getPath (): string
  once (event: string, listener: (...args: any[]) => void): unknown
  removeListener (event: string, listener: (...args: any[]) => void): unknown
  destroy (): unknown
  readonly cancelled?: boolean
}

interface TopicState {
  readonly name: string
  readonly subscribers: Set<Subscriber>
  serialize: ((message: any) => Uint8Array) | undefined
  /** Made by topic(): kept (with its counts) when it has no subscriber. */
  explicit: boolean
  readonly stats: Omit<TopicStats, 'subscribers'>
}

interface BusTopic {
  subscribed: boolean
  running: Promise<void> | null
}

const MAX_TOPIC_NAME = 1024
const queueOptionNames: readonly string[] = ['maxQueueMessages', 'maxQueueBytes', 'overflow']
const topicsOptionNames: readonly string[] = [...queueOptionNames, 'bus']

function checkName (name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_TOPIC_NAME) {
    throw new ERR_INVALID_TOPIC(`a topic name is a string of 1 to ${MAX_TOPIC_NAME} characters, got ${typeof name === 'string' ? `${name.length} characters` : String(name)}`)
  }
}

/** Queue limits from options over defaults; a mistake is an ERR_INVALID_OPTION naming `where`. */
export function resolveQueueOptions (where: string, o: QueueOptions | undefined, base: QueueLimits = topicsDefaults): QueueLimits {
  if (o === undefined) return base
  if (o === null || typeof o !== 'object') throw new ERR_INVALID_OPTION(where, `expected an object, got ${String(o)}`)
  // A misspelt bound would silently leave the default in force.
  const known = where === 'topics' ? topicsOptionNames : queueOptionNames
  for (const name of Object.keys(o)) {
    if (!known.includes(name)) throw new ERR_INVALID_OPTION(`${where}.${name}`, `unknown option; expected one of ${known.join(', ')}`)
  }
  const int = (name: string, value: unknown, fallback: number): number => {
    if (value === undefined) return fallback
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 0x7fffffff) {
      throw new ERR_INVALID_OPTION(`${where}.${name}`, `expected an integer from 1 to ${0x7fffffff}, got ${String(value)}`)
    }
    return value
  }
  const overflow = o.overflow ?? base.overflow
  if (overflow !== 'end' && overflow !== 'drop-oldest' && overflow !== 'drop-newest') {
    throw new ERR_INVALID_OPTION(`${where}.overflow`, `expected 'end', 'drop-oldest' or 'drop-newest', got ${String(overflow)}`)
  }
  return {
    maxQueueMessages: int('maxQueueMessages', o.maxQueueMessages, base.maxQueueMessages),
    maxQueueBytes: int('maxQueueBytes', o.maxQueueBytes, base.maxQueueBytes),
    overflow
  }
}

export class Topics {
  private readonly topics = new Map<string, TopicState>()
  private readonly busTopics = new Map<string, BusTopic>()
  private readonly limits: QueueLimits
  private readonly bus: TopicBus
  private closed = false

  /**
   * @param lookup finds a method's registered handler by path, for a call
   *   whose handler cannot be read off its call chain
   * @param onBusError where a failed bus subscribe or unsubscribe is reported
   */
  constructor (
    options: TopicsOptions | undefined,
    private readonly lookup: (path: string) => RegisteredHandler | undefined,
    private readonly onBusError: (err: unknown, topic: string | undefined) => void = () => {}
  ) {
    this.limits = resolveQueueOptions('topics', options)
    const bus = options?.bus ?? memoryBus()
    for (const fn of ['subscribe', 'unsubscribe', 'publish', 'close'] as const) {
      if (typeof bus[fn] !== 'function') throw new ERR_INVALID_OPTION('topics.bus', `expected a TopicBus (no ${fn}() method)`)
    }
    this.bus = bus
    bus.setErrorHandler?.(err => { this.onBusError(err, undefined) })
  }

  /** Topic names with subscribers here, or made with topic(). */
  get names (): string[] { return [...this.topics.keys()] }

  /** A typed handle on a topic; its `serialize` encodes every publish (otherwise the first subscriber's method serializer does). */
  topic<T>(name: string, options: TopicOptions<T> = {}): Topic<T> {
    checkName(name)
    if (options.serialize !== undefined && typeof options.serialize !== 'function') {
      throw new ERR_INVALID_TOPIC('topic(name, { serialize }): serialize must be a function')
    }
    const state = this.state(name)
    state.explicit = true
    if (options.serialize !== undefined) state.serialize = options.serialize
    return {
      name,
      subscribe: (call, opts) => this.subscribe(name, call, opts),
      publish: async message => { await this.publish(name, message) },
      publishEncoded: async bytes => { await this.publishEncoded(name, bytes) },
      stats: () => this.stats(name)!
    }
  }

  /** Counts for a topic, or undefined if it has neither subscribers nor a topic() handle. */
  stats (name: string): TopicStats | undefined {
    const state = this.topics.get(name)
    if (state === undefined) return undefined
    return { subscribers: state.subscribers.size, ...state.stats }
  }

  /**
   * Subscribes a server-streaming or bidi call to `name`: every message
   * published to it from now on is written to the call, in each publisher's
   * order, until the call ends, is cancelled or fails, or unsubscribe().
   */
  subscribe (name: string, call: SubscribableCall, options?: QueueOptions): Subscription {
    checkName(name)
    if (call === null || typeof call !== 'object' || typeof call.write !== 'function' || typeof call.getPath !== 'function') {
      throw new ERR_INVALID_TOPIC('subscribe() takes a server-streaming or bidi call')
    }
    if (this.closed) throw new ERR_INVALID_TOPIC('the server is closing')
    const handler = handlerOfCall(call) ?? this.lookup(call.getPath())
    if (handler === undefined) throw new ERR_INVALID_TOPIC(`no registered handler serves ${call.getPath()}`)
    const limits = resolveQueueOptions('subscribe options', options, this.limits)
    const serialize = acceptEncoded(handler)

    let active = true
    let dropped = 0
    const ended = call.cancelled === true || call.writableEnded || call.destroyed
    const state = this.state(name)
    state.serialize ??= serialize
    const subscriber = new Subscriber(call, limits, {
      dropped: n => { dropped += n; state.stats.dropped += n },
      overflowed: () => {
        state.stats.ended++
        remove()
        endCall(call, `topic ${name}: subscriber queue full (${limits.maxQueueMessages} messages, ${limits.maxQueueBytes} bytes)`)
      }
    })
    const remove = (): void => {
      if (!active) return
      active = false
      subscriber.close()
      for (const event of endEvents) call.removeListener(event, remove)
      state.subscribers.delete(subscriber)
      if (state.subscribers.size === 0) {
        if (!state.explicit && this.topics.get(name) === state) this.topics.delete(name)
        void this.reconcile(name)
      }
    }
    let ready: Promise<void>
    if (ended) {
      active = false
      ready = Promise.resolve()
    } else {
      for (const event of endEvents) call.once(event, remove)
      state.subscribers.add(subscriber)
      ready = this.reconcile(name)
    }
    return {
      topic: name,
      ready,
      get dropped () { return dropped },
      get active () { return active },
      get queued () { return subscriber.queued },
      get queuedBytes () { return subscriber.bytes },
      unsubscribe: remove
    }
  }

  /**
   * Publishes `message` to `name`: serialized once (the topic's serializer,
   * else its first subscriber's method serializer), written to every
   * subscriber here, and handed to the bus. Local subscribers have it when
   * this returns; the promise settles once the bus took it.
   */
  publish (name: string, message: unknown): Promise<void> {
    try {
      checkName(name)
      const state = this.topics.get(name)
      const serialize = state?.serialize
      if (serialize === undefined) {
        // Nobody here, and nobody elsewhere to tell: nothing to do.
        if (!this.bus.remote) return Promise.resolve()
        throw new ERR_TOPIC_SERIALIZER(name)
      }
      return this.send(name, state, toBuffer(serialize(message)))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Publishes bytes already encoded as the topic's message type (not copied: leave them unchanged). */
  publishEncoded (name: string, bytes: Uint8Array): Promise<void> {
    try {
      checkName(name)
      if (!(bytes instanceof Uint8Array)) throw new ERR_INVALID_TOPIC('publishEncoded() takes a Uint8Array')
      return this.send(name, this.topics.get(name), toBuffer(bytes))
    } catch (err) {
      return Promise.reject(err)
    }
  }

  /** Ends every subscription (calls go on) and closes the bus. */
  async close (): Promise<void> {
    this.closed = true
    await Promise.allSettled([...this.busTopics.values()].map(async b => await b.running))
    this.topics.clear()
    this.busTopics.clear()
    await this.bus.close()
  }

  private send (name: string, state: TopicState | undefined, bytes: Buffer): Promise<void> {
    if (state !== undefined) {
      state.stats.published++
      deliver(state, new EncodedMessage(bytes))
    }
    return this.bus.remote ? this.bus.publish(name, bytes) : Promise.resolve()
  }

  private receive (name: string, bytes: Buffer): void {
    const state = this.topics.get(name)
    if (state === undefined) return
    state.stats.received++
    deliver(state, new EncodedMessage(bytes))
  }

  private state (name: string): TopicState {
    let state = this.topics.get(name)
    if (state === undefined) {
      state = { name, subscribers: new Set(), serialize: undefined, explicit: false, stats: { published: 0, received: 0, dropped: 0, ended: 0 } }
      this.topics.set(name, state)
    }
    return state
  }

  /**
   * Brings the bus subscription of `name` in line with whether it has local
   * subscribers, one bus operation at a time: churn of subscribers on one
   * topic coalesces instead of queueing a subscribe and an unsubscribe each.
   */
  private reconcile (name: string): Promise<void> {
    let bt = this.busTopics.get(name)
    if (bt === undefined) {
      bt = { subscribed: false, running: null }
      this.busTopics.set(name, bt)
    }
    const b = bt
    if (b.running !== null) return b.running
    if (!this.bus.remote) {
      if ((this.topics.get(name)?.subscribers.size ?? 0) === 0) this.busTopics.delete(name)
      return Promise.resolve()
    }
    b.running = (async () => {
      for (;;) {
        const want = !this.closed && (this.topics.get(name)?.subscribers.size ?? 0) > 0
        if (want === b.subscribed) return
        if (want) {
          await this.bus.subscribe(name, bytes => { this.receive(name, bytes) })
        } else {
          await this.bus.unsubscribe(name)
        }
        b.subscribed = want
      }
    })().finally(() => {
      b.running = null
      if (!b.subscribed && this.busTopics.get(name) === b) this.busTopics.delete(name)
    })
    b.running.catch(err => { this.onBusError(err, name) })
    return b.running
  }
}

const endEvents = ['cancelled', 'finish', 'close', 'error'] as const

/**
 * Subscribers between early sends. WebSocket frames otherwise leave at the
 * end of the turn, so a publish to 10,000 subscribers would put nothing on
 * the wire for the milliseconds it takes to queue them all.
 */
const SEND_EVERY = 256

function deliver (state: TopicState, message: EncodedMessage): void {
  const subscribers = state.subscribers
  if (subscribers.size <= SEND_EVERY) {
    for (const subscriber of subscribers) subscriber.deliver(message)
    return
  }
  const sendEarly = sendBatchesDueFromNow()
  let n = 0
  for (const subscriber of subscribers) {
    subscriber.deliver(message)
    if (++n % SEND_EVERY === 0) sendEarly()
  }
}

function toBuffer (bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array)) throw new ERR_INVALID_TOPIC('a serializer must return a Uint8Array')
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/**
 * Ends a subscriber's call with RESOURCE_EXHAUSTED. Its grpc-js stream is
 * destroyed first so the messages it still buffers are never written; over
 * WebSocket the status goes at once (what the transport queued is dropped);
 * over HTTP/2 it follows the data already handed to the HTTP/2 stream.
 */
function endCall (call: SubscribableCall, details: string): void {
  const chain = callChain(call)
  call.destroy()
  const inner = chain[chain.length - 1]
  if (inner instanceof ServerCallBase) {
    inner.abortWithStatus(GrpcStatus.RESOURCE_EXHAUSTED, details)
  } else if (chain.length > 0) {
    (chain[0] as ServerInterceptingCallInterface).sendStatus({ code: GrpcStatus.RESOURCE_EXHAUSTED, details, metadata: new Metadata() })
  }
}
