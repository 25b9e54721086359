/**
 * A proxy in front of an app that passes HTTP requests and answers every
 * WebSocket upgrade with 502 while `refuse` holds (as some corporate
 * proxies and CDNs do), and tunnels upgrades once it is turned off.
 */
import http from 'node:http'
import net from 'node:net'
import type { Test } from 'tap'

export interface UpgradeProxy {
  port: number
  refuse: boolean
  /** 'refused' or 'passed', one per upgrade seen. */
  upgrades: string[]
}

export async function startUpgradeProxy (t: Test, appPort: number): Promise<UpgradeProxy> {
  const state: UpgradeProxy = { port: 0, refuse: true, upgrades: [] }
  const proxy = http.createServer((req, res) => {
    const out = http.request({ host: '127.0.0.1', port: appPort, method: req.method, path: req.url, headers: req.headers }, answer => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    out.on('error', () => { res.destroy() })
    // A client that goes away takes its upstream request with it.
    res.on('close', () => { if (!res.writableFinished) out.destroy() })
    req.pipe(out)
  })
  proxy.on('upgrade', (req, socket, head) => {
    state.upgrades.push(state.refuse ? 'refused' : 'passed')
    if (state.refuse) {
      socket.end('HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
      return
    }
    const upstream = net.connect(appPort, '127.0.0.1', () => {
      const lines = []
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]!}: ${req.rawHeaders[i + 1]!}`)
      upstream.write(`${req.method ?? 'GET'} ${req.url ?? '/'} HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`)
      upstream.write(head)
      socket.pipe(upstream).pipe(socket)
    })
    upstream.on('error', () => { socket.destroy() })
    socket.on('error', () => { upstream.destroy() })
  })
  await new Promise<void>(resolve => proxy.listen(0, '127.0.0.1', resolve))
  state.port = (proxy.address() as { port: number }).port
  t.teardown(async () => {
    proxy.closeAllConnections()
    await new Promise(resolve => proxy.close(resolve))
  })
  return state
}
