/**
 * What carries a topic's encoded messages between instances. The topics
 * registry (topics.ts) delivers to its own subscribers itself; a bus only
 * brings what other instances publish, so a bus that reaches nobody (the
 * default) costs nothing.
 */

export interface TopicBus {
  /**
   * Starts bringing `topic`'s messages from other instances to `onMessage`,
   * in the order each instance published them. Called once per topic, when
   * it gets its first local subscriber; resolves once messages published from
   * then on will arrive. Messages this instance published must not come back.
   */
  subscribe: (topic: string, onMessage: (bytes: Buffer) => void) => Promise<void>
  /** Stops bringing `topic` (its last local subscriber left). */
  unsubscribe: (topic: string) => Promise<void>
  /** Sends encoded bytes to every other instance subscribed to `topic`. */
  publish: (topic: string, bytes: Buffer) => Promise<void>
  /** Releases what the bus opened itself (not a client the app gave it). */
  close: () => Promise<void>
  /** True when publishes reach other processes (so a topic needs a serializer even with no local subscriber). */
  readonly remote: boolean
  /** Optional: where the bus reports errors the app did not give it a handler for (the plugin passes its logger). */
  setErrorHandler?: (onError: (err: Error) => void) => void
}

/** The default bus: in-process only, nothing to install; every message stays in this instance. */
export function memoryBus (): TopicBus {
  return {
    remote: false,
    subscribe: async () => {},
    unsubscribe: async () => {},
    publish: async () => {},
    close: async () => {}
  }
}
