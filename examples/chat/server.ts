/**
 * The chat app: one Fastify process serving the page (bundled from
 * TypeScript by esbuild at startup), the Chat service over WebSocket for
 * browsers and over native gRPC for backends, uploaded files, and the bot.
 */
import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { build } from 'esbuild'
import Fastify from 'fastify'
import fastifyGrpcWs from 'fastify-grpc-ws'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import protobuf from 'protobufjs'
import { startBot } from './bot.js'
import { FileStore } from './files.js'
import { ChatRooms } from './rooms.js'
import { createChatService } from './service.js'

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
  close: () => Promise<void>
}

export interface ChatOptions {
  port?: number
  host?: string
  grpcPort?: number
  /** Log level for Fastify's logger. */
  logLevel?: string
}

export async function startChat ({ port = 3000, host = 'localhost', grpcPort = 50051, logLevel = 'warn' }: ChatOptions = {}): Promise<ChatServer> {
  const [script, html, css] = await Promise.all([bundlePage(), readFile(here('web/index.html'), 'utf8'), readFile(here('web/style.css'), 'utf8')])
  const rooms = new ChatRooms([
    { name: 'general', topic: 'Say hi. Mention @bot and a backend answers over native gRPC.' },
    { name: 'random', topic: 'Anything goes' },
    { name: 'help', topic: 'Questions about fastify-grpc-ws' }
  ])
  const files = new FileStore()
  const grpcServer = new grpc.Server()
  // Browsers keep spare connections open; close() should not wait for them.
  const app = Fastify({ logger: { level: logLevel }, forceCloseConnections: true })
  await app.register(fastifyGrpcWs, {
    path: '/grpc',
    services: [{ definition: ChatClient.service, implementation: createChatService(rooms, files) }],
    grpcServer,
    // Sessions and presence streams never end by themselves: on close, give
    // calls in flight one second rather than the default five.
    closeGracePeriod: 1000
  })

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
  const bot = startBot(grpcAddress, ChatClient)
  const { port: boundPort } = app.server.address() as { port: number }
  return {
    url: `http://${host}:${boundPort}`,
    grpcAddress,
    async close () {
      bot.stop()
      await app.close()
      grpcServer.forceShutdown()
      rooms.close()
    }
  }
}
