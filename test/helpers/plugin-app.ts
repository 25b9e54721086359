/**
 * A Fastify app serving the test service through the plugin on 127.0.0.1,
 * for tests that need the WebSocket side alone.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { EventEmitter } from 'node:events'
import fastifyGrpcWs, { type FastifyGrpcWsOptions } from '../../index.js'
import { createTestService, testDefinition } from './test-service.js'

export interface PluginApp {
  app: FastifyInstance
  /** ws://127.0.0.1:<port>/grpc */
  url: string
  port: number
}

export interface PluginAppOptions {
  /** Where the handlers report (see test-service.ts); a fresh one by default. */
  events?: EventEmitter
  port?: number
  /** Runs before the plugin is registered (hooks that must come first). */
  setup?: (app: FastifyInstance) => void
}

/** Starts the app; the caller closes it. */
export async function startPluginApp (options: Partial<FastifyGrpcWsOptions> = {}, { events = new EventEmitter(), port = 0, setup }: PluginAppOptions = {}): Promise<PluginApp> {
  const app = Fastify()
  setup?.(app)
  await app.register(fastifyGrpcWs, { ...options, services: [{ definition: testDefinition, implementation: createTestService(events) }] })
  await app.listen({ port, host: '127.0.0.1' })
  const bound = (app.server.address() as { port: number }).port
  return { app, url: `ws://127.0.0.1:${bound}/grpc`, port: bound }
}
