/**
 * The same stock grpc-js client, once over native gRPC and once over the
 * plugin's WebSocket: only the constructor options differ.
 */
import * as grpc from '@grpc/grpc-js'
import { createWebSocketChannel } from 'fastify-grpc-ws/grpc-js'
import { EchoClient } from './server.js'

export function http2Client (address: string): any {
  return new EchoClient(address, grpc.credentials.createInsecure())
}

export function webSocketClient (url: string): any {
  return new EchoClient('ignored', grpc.credentials.createInsecure(), { channelOverride: createWebSocketChannel(url) })
}

/** One call of each kind; returns the lines it printed. */
export async function talk (client: any, label: string): Promise<string[]> {
  const lines: string[] = []
  const log = (line: string): void => { lines.push(line); console.log(`[${label}] ${line}`) }

  const reply = await new Promise<any>((resolve, reject) => {
    client.Echo({ message: 'hello' }, (err: grpc.ServiceError | null, value: any) => { err === null ? resolve(value) : reject(err) })
  })
  log(`unary: ${reply.message as string}`)

  const streamed: string[] = []
  await new Promise<void>((resolve, reject) => {
    const call = client.ServerStream({ message: 'tick', count: 3 })
    call.on('data', (m: any) => streamed.push(m.message))
    call.on('end', resolve)
    call.on('error', reject)
  })
  log(`server streaming: ${streamed.join(', ')}`)

  const joined = await new Promise<any>((resolve, reject) => {
    const call = client.ClientStream((err: grpc.ServiceError | null, value: any) => { err === null ? resolve(value) : reject(err) })
    for (const word of ['one', 'socket,', 'many', 'calls']) call.write({ message: word })
    call.end()
  })
  log(`client streaming: ${joined.message as string}`)

  const shouted: string[] = []
  await new Promise<void>((resolve, reject) => {
    const call = client.Bidi()
    call.on('data', (m: any) => shouted.push(m.message))
    call.on('end', resolve)
    call.on('error', reject)
    call.write({ message: 'ping' })
    call.write({ message: 'pong' })
    call.end()
  })
  log(`bidi: ${shouted.join(', ')}`)
  return lines
}
