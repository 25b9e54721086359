/**
 * A topic bus over Redis pub/sub, through an app's node-redis client (the
 * `redis` package, 5 or later; it is not imported here: the app passes its
 * client). One Redis channel per topic, subscribed once per instance while
 * the instance has subscribers to it, on one connection duplicated from the
 * app's client (pub/sub needs its own). A publish carries the encoded bytes
 * behind a 16-byte instance id, so an instance ignores its own publishes
 * (it delivered them to its own subscribers already) and nothing is
 * serialized twice anywhere.
 *
 * Delivery is Redis pub/sub's: at most once. Messages reach the instances
 * subscribed when Redis handles the PUBLISH, in each publisher's order; what
 * is published while an instance's subscription connection is down never
 * reaches that instance (the client resubscribes when it reconnects), and
 * nothing is ever delivered twice. See README, Running several instances.
 */
import { randomBytes } from 'node:crypto'
import type { TopicBus } from './bus.js'

const ID_SIZE = 16

/** The subscription connection: what the bus uses of a node-redis client. */
export interface RedisSubscriberLike {
  connect: () => Promise<unknown>
  subscribe: (channel: string, listener: (message: Buffer, channel: Buffer) => void, bufferMode: true) => Promise<unknown>
  unsubscribe: (channel: string) => Promise<unknown>
  close?: () => Promise<unknown>
  destroy: () => unknown
  on: (event: 'error', listener: (err: Error) => void) => unknown
}

/** What the bus uses of the app's node-redis client (`createClient()` from `redis`, connected). */
export interface RedisClientLike {
  publish: (channel: string, message: Buffer) => Promise<unknown>
  duplicate: () => unknown
}

export interface RedisBusOptions {
  /** The app's connected node-redis client: it sends the publishes; a duplicate of it subscribes. */
  client: RedisClientLike
  /** Prefix of the Redis channel names. Default `'grpc-topics:'`. */
  prefix?: string
  /** Where errors of the subscription connection go (a lost connection, for one). Default: the plugin's logger. */
  onError?: (err: Error) => void
}

export interface RedisBus extends TopicBus {
  /** Topics this instance is subscribed to in Redis now. */
  readonly channels: number
}

/** A TopicBus over Redis pub/sub (node-redis). */
export function redisBus (options: RedisBusOptions): RedisBus {
  const { client } = options
  if (client === null || typeof client !== 'object' || typeof client.publish !== 'function' || typeof client.duplicate !== 'function') {
    throw new TypeError('redisBus: options.client must be a node-redis client (createClient() from the "redis" package)')
  }
  const prefix = options.prefix ?? 'grpc-topics:'
  if (typeof prefix !== 'string') throw new TypeError('redisBus: options.prefix must be a string')
  const id = randomBytes(ID_SIZE)
  let onError = options.onError
  let subscriber: Promise<RedisSubscriberLike> | null = null
  const subscribed = new Set<string>()

  // Opened with the first subscribing topic, so an instance that only publishes holds no second connection.
  const connection = async (): Promise<RedisSubscriberLike> => {
    subscriber ??= (async () => {
      const sub = client.duplicate() as RedisSubscriberLike
      sub.on('error', err => { onError?.(err) })
      await sub.connect()
      return sub
    })()
    return await subscriber
  }

  return {
    remote: true,
    get channels () { return subscribed.size },
    setErrorHandler (fn: (err: Error) => void) { onError ??= fn },
    async subscribe (topic, onMessage) {
      const sub = await connection()
      await sub.subscribe(prefix + topic, message => {
        if (message.byteLength < ID_SIZE || id.equals(message.subarray(0, ID_SIZE))) return
        onMessage(message.subarray(ID_SIZE))
      }, true)
      subscribed.add(topic)
    },
    async unsubscribe (topic) {
      if (subscriber === null) return
      const sub = await subscriber
      await sub.unsubscribe(prefix + topic)
      subscribed.delete(topic)
    },
    async publish (topic, bytes) {
      await client.publish(prefix + topic, Buffer.concat([id, bytes], ID_SIZE + bytes.byteLength))
    },
    async close () {
      const pending = subscriber
      subscriber = null
      subscribed.clear()
      if (pending === null) return
      const sub = await pending.catch(() => null)
      if (sub === null) return
      try {
        if (typeof sub.close === 'function') await sub.close()
        else sub.destroy()
      } catch {
        sub.destroy()
      }
    }
  }
}
