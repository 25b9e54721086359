/**
 * One chat instance (examples/chat) in its own process, its state in the
 * test's redis-server: started by Instance.start(socket, this file).
 * Presence entries and the bot's lease are short here, so that a killed
 * instance's people and bot are gone within seconds.
 */
import { startChat } from '../../examples/chat/server.js'

const PRESENCE_TTL_MS = 3000
const BOT_LEASE_MS = 3000

const chat = await startChat({
  port: 0,
  host: '127.0.0.1',
  grpcPort: 0,
  redisUrl: `unix://${process.argv[2]!}`,
  presenceTtlMs: PRESENCE_TTL_MS,
  botLeaseMs: BOT_LEASE_MS
})
process.send!({ type: 'ready', url: chat.url, grpcAddress: chat.grpcAddress })
process.on('message', (message: { type: string }) => {
  if (message.type === 'bot') process.send!({ type: 'bot', ready: chat.botReady() })
})
process.on('disconnect', () => {
  chat.close().then(() => process.exit(0), () => process.exit(1))
})
