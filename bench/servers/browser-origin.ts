/**
 * For the browser benchmark (bench/browser.ts): its page comes from another
 * origin (the orchestrator's own Fastify app), given in BENCH_BROWSER_ORIGIN.
 * Unset (bench/http.ts), nothing changes.
 */
import cors from '@fastify/cors'
import type { FastifyInstance } from 'fastify'

export const BROWSER_ORIGIN = process.env.BENCH_BROWSER_ORIGIN

/** CORS for that origin, with preflights cached by the browser (Chromium holds them at most 2 hours). */
export async function allowBrowserOrigin (app: FastifyInstance): Promise<void> {
  if (BROWSER_ORIGIN === undefined) return
  await app.register(cors, {
    origin: [BROWSER_ORIGIN],
    methods: ['POST'],
    allowedHeaders: ['content-type', 'x-grpc-web', 'x-user-agent', 'grpc-timeout', 'connect-protocol-version', 'connect-timeout-ms'],
    exposedHeaders: ['grpc-status', 'grpc-message', 'grpc-status-details-bin'],
    maxAge: 7200
  })
}
