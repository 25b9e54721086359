/**
 * `npm start`: the chat on http://localhost:3000 (browsers, over one
 * WebSocket) and on 127.0.0.1:50051 (native gRPC, where the bot connects).
 * With REDIS_URL set, the chat lives in Redis: start as many as you like
 * (each with its own PORT and GRPC_PORT), they form one chat.
 */
import { startChat } from './server.js'

const chat = await startChat({
  port: Number(process.env.PORT ?? 3000),
  host: process.env.HOST ?? 'localhost',
  grpcPort: Number(process.env.GRPC_PORT ?? 50051),
  redisUrl: process.env.REDIS_URL
})
console.log(`Chat running at ${chat.url}  (open it in two windows)`)
console.log(`Native gRPC at ${chat.grpcAddress}, where the bot is connected`)
if (process.env.REDIS_URL !== undefined) console.log(`State in Redis at ${process.env.REDIS_URL}: other instances on it are the same chat (one of them runs the bot)`)
console.log('Ctrl-C to stop')

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1)
    stopping = true
    // Calls in flight get the plugin's grace period; a second Ctrl-C exits at once.
    chat.close().then(() => process.exit(0), (err: unknown) => { console.error(err); process.exit(1) })
  })
}
