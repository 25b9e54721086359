/**
 * A Fastify app whose test service (test.proto) subscribes and publishes
 * through `app.grpc.topics`, served over WebSocket and over HTTP/2 (its
 * grpcServer), for the fan-out tests:
 * - ServerStream({ message: topic, id, mode: overflow policy, count: maxQueueMessages, size: maxQueueBytes })
 *   subscribes the call, and sends response headers once the subscription is ready;
 * - Bidi: the same with its first request; later requests are published to the topic;
 * - Unary({ message: topic, details: text, payload }) publishes { message: details, payload }.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify, { type FastifyInstance } from 'fastify'
import fastifyGrpcWs, { type FastifyGrpcWsOptions, type Subscription } from '../../index.js'
import { testDefinition, type Request, type Response } from './test-service.js'

export interface FanoutApp {
  app: FastifyInstance
  /** ws://127.0.0.1:<port>/grpc */
  url: string
  /** 127.0.0.1:<port> of the grpc-js HTTP/2 server */
  grpcAddress: string
  /** Subscriptions by the request's id. */
  subscriptions: Map<string, Subscription>
  close: () => Promise<void>
}

function subscribeOptions (request: Request): object | undefined {
  if (request.mode === '' && request.count === 0 && request.size === 0) return undefined
  return {
    ...(request.mode === '' ? {} : { overflow: request.mode }),
    ...(request.count === 0 ? {} : { maxQueueMessages: request.count }),
    ...(request.size === 0 ? {} : { maxQueueBytes: request.size })
  }
}

export async function startFanoutApp (options: Partial<FastifyGrpcWsOptions> = {}): Promise<FanoutApp> {
  const app = Fastify()
  const grpcServer = new grpc.Server({ 'grpc.enable_channelz': 0 })
  const subscriptions = new Map<string, Subscription>()
  const subscribe = (request: Request, call: grpc.ServerWritableStream<Request, Response> | grpc.ServerDuplexStream<Request, Response>): void => {
    const sub = app.grpc.topics.subscribe(request.message!, call, subscribeOptions(request) as any)
    if (request.id !== undefined && request.id !== '') subscriptions.set(request.id, sub)
    sub.ready.then(() => { call.sendMetadata(new grpc.Metadata()) }, (err: Error) => { call.emit('error', { code: grpc.status.UNAVAILABLE, details: err.message }) })
  }
  const implementation = {
    ServerStream (call: grpc.ServerWritableStream<Request, Response>) { subscribe(call.request, call) },
    Bidi (call: grpc.ServerDuplexStream<Request, Response>) {
      let first = true
      call.on('data', (request: Request) => {
        if (first) {
          first = false
          subscribe(request, call)
        } else {
          void app.grpc.topics.publish(request.message!, { message: request.details, payload: request.payload })
        }
      })
      call.on('end', () => { call.end() })
    },
    Unary (call: any, callback: grpc.sendUnaryData<any>) {
      const request = call.request as Request
      app.grpc.topics.publish(request.message!, { message: request.details, payload: request.payload })
        .then(() => { callback(null, { message: 'published' }) }, (err: Error) => { callback({ code: grpc.status.UNAVAILABLE, details: err.message }) })
    }
  }
  await app.register(fastifyGrpcWs, { ...options, grpcServer, services: [{ definition: testDefinition, implementation }] })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = await new Promise<number>((resolve, reject) => {
    grpcServer.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  const bound = (app.server.address() as { port: number }).port
  return {
    app,
    url: `ws://127.0.0.1:${bound}/grpc`,
    grpcAddress: `127.0.0.1:${port}`,
    subscriptions,
    close: async () => {
      grpcServer.forceShutdown()
      for (const client of app.websocketServer.clients) client.terminate()
      await app.close()
    }
  }
}
