/**
 * The gateway: a Fastify app with no handlers of its own, forwarding every
 * service the upstream's reflection lists to it, from the WebSocket routes
 * (browsers) and from its own gRPC port, as raw bytes.
 */
import * as grpc from '@grpc/grpc-js'
import Fastify from 'fastify'
import fastifyGrpcWs from 'fastify-grpc-ws'
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** Starts upstream.ts in another process; resolves with its address. */
export async function startUpstream (): Promise<{ target: string, stop: () => Promise<void> }> {
  const child: ChildProcess = fork(fileURLToPath(new URL('upstream.ts', import.meta.url)), [], {
    execArgv: process.execArgv, // the TypeScript loader this process runs under
    stdio: ['pipe', 'pipe', 'inherit', 'ipc']
  })
  const target = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      const match = /listening (\d+)/.exec(chunk.toString())
      if (match !== null) resolve(`127.0.0.1:${match[1]!}`)
    })
    child.once('exit', code => { reject(new Error(`the upstream exited with ${String(code)}`)) })
  })
  return {
    target,
    async stop () {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.stdin!.end()
      await exited
    }
  }
}

export async function startGateway (target: string, port = 3000): Promise<{ wsUrl: string, close: () => Promise<void> }> {
  const app = Fastify({ logger: { level: 'warn' } })
  await app.register(fastifyGrpcWs, {
    path: '/grpc',
    upstreams: [{ target, credentials: grpc.credentials.createInsecure(), services: 'reflection' }]
  })
  await app.listen({ port, host: '127.0.0.1' })
  const address = app.server.address()
  return {
    wsUrl: `ws://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : port}/grpc`,
    close: async () => { await app.close() }
  }
}
