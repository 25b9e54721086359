/**
 * A loopback TCP proxy that can go silent: `freeze()` stops forwarding both
 * ways while keeping every socket open, which is what a dead network path
 * looks like to both ends (no FIN, no RST, nothing). `retarget(port)` sends
 * new connections elsewhere, as a load balancer does once a backend leaves.
 */
import net from 'node:net'

export interface TcpProxy {
  port: number
  freeze: () => void
  retarget: (port: number) => void
  close: () => Promise<void>
}

export async function startTcpProxy (targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>()
  let frozen = false
  let target = targetPort
  const server = net.createServer(inbound => {
    const outbound = net.connect(target, '127.0.0.1')
    for (const s of [inbound, outbound]) {
      sockets.add(s)
      s.on('error', () => {})
      s.on('close', () => { sockets.delete(s) })
    }
    inbound.on('data', chunk => { if (!frozen) outbound.write(chunk) })
    outbound.on('data', chunk => { if (!frozen) inbound.write(chunk) })
    inbound.on('end', () => { if (!frozen) outbound.end() })
    outbound.on('end', () => { if (!frozen) inbound.end() })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as net.AddressInfo).port,
    freeze () { frozen = true },
    retarget (port) { target = port },
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

/** A loopback port nothing listens on (just released by a listener of ours). */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}
