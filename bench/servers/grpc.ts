/** grpc-js native HTTP/2: the Echo handlers on a grpc-js Server. */
import * as grpc from '@grpc/grpc-js'
import { echoHandlers } from './handlers.js'
import { serve } from './harness.js'
import { loadEcho } from './load-proto.js'

serve(async () => {
  const Echo = loadEcho()
  const server = new grpc.Server()
  server.addService(Echo.service, echoHandlers)
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => { err === null ? resolve(p) : reject(err) })
  })
  return { port }
})
