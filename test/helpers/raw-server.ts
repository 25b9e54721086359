/**
 * A grpc-ws.v1 server for client tests that need the server to do what the
 * plugin only does at particular moments (GOAWAY with a chosen last stream
 * id, silence) or never does (a hostile or buggy server): it sends SETTINGS
 * (unless told not to), then whatever the test sends, and records every
 * frame each connection receives.
 */
import type { AddressInfo } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { FrameDecoder, SUBPROTOCOL, type Frame } from '../../lib/protocol/frame.js'
import { buildSettings, type Settings } from '../../lib/protocol/payload.js'

export interface RawConnection {
  socket: WebSocket
  frames: Frame[]
  closeCode: number | null
  closeReason: string
  send: (...frames: Uint8Array[]) => void
}

export interface RawServer {
  url: string
  connections: RawConnection[]
  /** Waits until `predicate` holds, checking on every frame and connection; fails after `ms`. */
  until: (predicate: () => boolean, ms?: number) => Promise<void>
  close: () => Promise<void>
}

export interface RawServerOptions {
  /** False: no SETTINGS; `onConnection` sends what the test wants instead. Default true. */
  sendSettings?: boolean
  /** Runs for each new connection, after SETTINGS (if sent). */
  onConnection?: (conn: RawConnection) => void
  /** Runs for each frame a connection receives, after it is recorded. */
  onFrame?: (conn: RawConnection, frame: Frame) => void
}

export async function startRawServer (settings: Partial<Settings> = {}, options: RawServerOptions = {}): Promise<RawServer> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: protocols => protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false })
  await new Promise<void>(resolve => server.once('listening', resolve))
  const connections: RawConnection[] = []
  let waiters: Array<() => void> = []
  const wake = (): void => { const w = waiters; waiters = []; for (const f of w) f() }
  server.on('connection', socket => {
    const decoder = new FrameDecoder(0x7fffffff)
    const conn: RawConnection = {
      socket,
      frames: [],
      closeCode: null,
      closeReason: '',
      send: (...frames) => { for (const f of frames) socket.send(f) }
    }
    connections.push(conn)
    socket.on('message', (data: Buffer) => {
      for (const frame of decoder.push(data)) {
        const copy = { ...frame, payload: frame.payload.slice() }
        conn.frames.push(copy)
        options.onFrame?.(conn, copy)
      }
      wake()
    })
    socket.on('close', (code, reason) => {
      conn.closeCode = code
      conn.closeReason = reason.toString()
      wake()
    })
    socket.on('error', () => {})
    if (options.sendSettings !== false) {
      socket.send(buildSettings({ maxConcurrentStreams: 100, initialWindowSize: 65536, maxFrameSize: 65536, maxMessageSize: 4 << 20, maxMetadataSize: 16384, ...settings }))
    }
    options.onConnection?.(conn)
    wake()
  })
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/grpc`,
    connections,
    async until (predicate, ms = 5000) {
      const deadline = Date.now() + ms
      while (!predicate()) {
        if (Date.now() >= deadline) throw new Error(`condition not met within ${ms} ms`)
        await new Promise<void>(resolve => {
          const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))
          waiters.push(() => { clearTimeout(timer); resolve() })
        })
      }
    },
    async close () {
      for (const client of server.clients) client.terminate()
      await new Promise(resolve => server.close(resolve))
    }
  }
}
