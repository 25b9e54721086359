/**
 * One plugin instance in its own process, with its topics on the Redis bus:
 * the fan-out app of test/helpers/fanout-app.ts. Started by instances.ts;
 * argv[2] is the redis-server's unix socket. Tells the parent its addresses.
 */
import { createClient } from 'redis'
import { redisBus } from '../../index.js'
import { startFanoutApp } from '../helpers/fanout-app.js'

const socketPath = process.argv[2]!
// Reconnect fast: the tests restart redis-server and wait for the instances to come back.
const client = createClient({ socket: { path: socketPath, reconnectStrategy: retries => Math.min(20 + retries * 20, 200) } })
client.on('error', () => {}) // a restart of redis-server is expected; the client reconnects
await client.connect()
const fx = await startFanoutApp({ topics: { bus: redisBus({ client, onError: () => {} }) } })
process.send!({ type: 'ready', url: fx.url, grpcAddress: fx.grpcAddress })
process.on('message', (message: { type: string, topic?: string }) => {
  if (message.type === 'stats') process.send!({ type: 'stats', stats: fx.app.grpc.topics.stats(message.topic!) ?? null })
})
process.on('disconnect', () => {
  void (async () => {
    await fx.close()
    client.destroy()
    process.exit(0)
  })()
})
