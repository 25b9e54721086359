/**
 * @fastify/websocket registered after the plugin (which registered it
 * itself) throws Fastify's FST_ERR_DEC_ALREADY_PRESENT synchronously from its
 * callback-style plugin function: avvio does not catch that, so no
 * register()/ready() error can carry it and the process ends. Fastify has no
 * hook that runs before a non-encapsulated plugin, so the plugin cannot stop
 * it; what it can do is make the exception say what to change. Until the app
 * is ready, the first thing @fastify/websocket does, decorating requests with
 * `ws`, throws a coded error that says so.
 */
import type { FastifyInstance } from 'fastify'
import { ERR_WEBSOCKET_ORDER } from '../errors.js'

export function guardWebSocketOrder (fastify: FastifyInstance): void {
  // An own property on the root instance: encapsulated contexts inherit it.
  const own = Object.prototype.hasOwnProperty.call(fastify, 'decorateRequest')
  const original = fastify.decorateRequest
  const guarded = function (this: FastifyInstance, name: string | symbol, ...rest: unknown[]): FastifyInstance {
    if (name === 'ws') throw new ERR_WEBSOCKET_ORDER()
    return (original as (...args: unknown[]) => FastifyInstance).call(this, name, ...rest)
  }
  fastify.decorateRequest = guarded as FastifyInstance['decorateRequest']
  fastify.addHook('onReady', async () => {
    if (own) fastify.decorateRequest = original
    else delete (fastify as Partial<Pick<FastifyInstance, 'decorateRequest'>>).decorateRequest
  })
}
