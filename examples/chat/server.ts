/**
 * The chat app: one Fastify process serving the page (bundled from
 * TypeScript by esbuild at startup), the Chat service over WebSocket for
 * browsers and over native gRPC for backends, uploaded files, and the bot.
 * With a Redis URL, any number of these processes form one chat: the state
 * lives in Redis, messages go through the topics' Redis bus, and one
 * instance at a time (the holder of a lease in Redis) runs the bot.
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { build } from 'esbuild'
import Fastify from 'fastify'
import fastifyGrpcWs, { redisBus } from 'fastify-grpc-ws'
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'
import { createClient } from 'redis'
import { startBot, type Bot } from './bot.js'
import { FileStore } from './files.js'
import { RedisStore, type Redis } from './redis-store.js'
import { ChatRooms } from './rooms.js'
import { createChatService } from './service.js'
import { SEED_ROOMS, type ChatStore } from './store.js'

const here = (path: string): string => fileURLToPath(new URL(path, import.meta.url))
const protoPath = here('chat.proto')

// The server's view (grpc-js) and the page's (protobufjs JSON), from one .proto.
const definition = loader.loadSync(protoPath, { keepCase: false, defaults: true, oneofs: true })
export const ChatClient = (grpc.loadPackageDefinition(definition) as any).chat.Chat as grpc.ServiceClientConstructor

/** The page's script: its TypeScript bundled for browsers, the service descriptor built in. */
async function bundlePage (): Promise<string> {
  const descriptor = JSON.stringify(protobuf.loadSync(protoPath).toJSON())
  const result = await build({
    entryPoints: [here('web/app.ts')],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'warning',
    plugins: [{
      name: 'chat-descriptor',
      setup (b) {
        b.onResolve({ filter: /^chat-descriptor$/ }, () => ({ path: 'chat-descriptor', namespace: 'chat' }))
        b.onLoad({ filter: /.*/, namespace: 'chat' }, () => ({ contents: `export default ${descriptor}`, loader: 'js' }))
      }
    }]
  })
  return result.outputFiles[0]!.text
}

export interface ChatServer {
  /** The page, e.g. http://localhost:3000 */
  url: string
  /** Native gRPC, e.g. 127.0.0.1:50051 */
  grpcAddress: string
  /** True while this instance runs the bot and the bot is in #general (on Redis: one instance at a time). */
  botReady: () => boolean
  close: () => Promise<void>
}

export interface ChatOptions {
  port?: number
  host?: string
  grpcPort?: number
  /** Log level for Fastify's logger. */
  logLevel?: string
  /** Keep the chat in Redis (`redis://host:port`, `unix:///path/to/socket`), shared by every instance on it. Default: in memory. */
  redisUrl?: string
  /** With Redis: how long the entries of a killed instance's people stay in presence. Default 15 s. */
  presenceTtlMs?: number
  /** With Redis: how long the bot's lease lasts unrenewed (how soon another instance's bot takes over from a killed one). Default 6 s. */
  botLeaseMs?: number
}

/** The bot, on the one instance that holds its lease in Redis; it moves when that instance dies. */
function leadBot (store: RedisStore, grpcAddress: string, leaseMs: number): { stop: () => Promise<void>, readonly ready: boolean } {
  const holder = randomUUID()
  let bot: Bot | null = null
  let stopped = false
  let busy = false
  const tick = async (): Promise<void> => {
    const held = await store.lease(holder, leaseMs).catch(() => false)
    if (stopped) return
    if (held && bot === null) {
      const takeover = !await store.firstBot().catch(() => true)
      if (!stopped) bot = startBot(grpcAddress, ChatClient, { takeover })
    } else if (!held && bot !== null) {
      bot.stop()
      bot = null
    }
  }
  const renew = (): void => {
    if (busy) return
    busy = true
    void tick().finally(() => { busy = false })
  }
  renew()
  const timer = setInterval(renew, leaseMs / 3)
  return {
    get ready () { return bot?.ready ?? false },
    async stop () {
      stopped = true
      clearInterval(timer)
      bot?.stop()
      // The next instance need not wait for the lease to lapse.
      await store.release(holder).catch(() => {})
    }
  }
}

export async function startChat (options: ChatOptions = {}): Promise<ChatServer> {
  const { port = 3000, host = 'localhost', grpcPort = 50051, logLevel = 'warn', redisUrl } = options
  const [script, html, css] = await Promise.all([bundlePage(), readFile(here('web/index.html'), 'utf8'), readFile(here('web/style.css'), 'utf8')])
  let redis: Redis | null = null
  let rooms: ChatStore
  if (redisUrl === undefined) {
    rooms = new ChatRooms(SEED_ROOMS)
  } else {
    redis = createClient({ url: redisUrl })
    redis.on('error', (err: Error) => { console.warn(`redis: ${err.message}`) })
    await redis.connect()
    rooms = await RedisStore.open(redis, SEED_ROOMS, { presenceTtlMs: options.presenceTtlMs })
  }
  const files = new FileStore()
  const grpcServer = new grpc.Server()
  // Browsers keep spare connections open; close() should not wait for them.
  const app = Fastify({ logger: { level: logLevel }, forceCloseConnections: true })
  await app.register(fastifyGrpcWs, {
    path: '/grpc',
    grpcServer,
    // In memory, the topics stay in this process; on Redis they reach every instance.
    ...(redis === null ? {} : { topics: { bus: redisBus({ client: redis }) } }),
    // Sessions and presence streams never end by themselves: on close, give
    // calls in flight one second rather than the default five.
    closeGracePeriod: 1000
  })
  app.grpc.addService(ChatClient.service, createChatService(rooms, files, app.grpc.topics, ChatClient.service))

  app.get('/', async (_request, reply) => await reply.type('text/html; charset=utf-8').send(html))
  app.get('/app.js', async (_request, reply) => await reply.type('text/javascript; charset=utf-8').send(script))
  app.get('/style.css', async (_request, reply) => await reply.type('text/css; charset=utf-8').send(css))
  app.get('/favicon.ico', async (_request, reply) => await reply.code(204).send())
  app.get<{ Params: { id: string, name: string } }>('/files/:id/:name', async (request, reply) => {
    const file = files.get(request.params.id)
    if (file === undefined) return await reply.code(404).send({ error: 'Not Found', message: 'No such file (files are kept in memory, and not for ever)' })
    reply.header('x-content-type-options', 'nosniff').header('cache-control', 'private, max-age=86400, immutable')
    if (FileStore.inline(file.mimeType)) return await reply.type(file.mimeType).send(file.data)
    return await reply.type('application/octet-stream').header('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(file.name)}`).send(file.data)
  })

  await app.listen({ port, host })
  const boundGrpcPort = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync(`127.0.0.1:${grpcPort}`, grpc.ServerCredentials.createInsecure(), (err, bound) => { err === null ? resolve(bound) : reject(err) })
  })
  const grpcAddress = `127.0.0.1:${boundGrpcPort}`
  const bot = rooms instanceof RedisStore ? leadBot(rooms, grpcAddress, options.botLeaseMs ?? 6000) : startBot(grpcAddress, ChatClient)
  const { port: boundPort } = app.server.address() as { port: number }
  return {
    url: `http://${host}:${boundPort}`,
    grpcAddress,
    botReady: () => bot.ready,
    async close () {
      await bot.stop()
      await app.close()
      grpcServer.forceShutdown()
      await rooms.close()
      await redis?.close()
    }
  }
}
