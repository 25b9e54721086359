/**
 * A raw grpc-ws.v1 client for tests that need to break the rules: it sends
 * hand-built frames and collects what the server sends back.
 */
import WebSocket from 'ws'
import { FrameDecoder, SUBPROTOCOL, type Frame } from '../../lib/protocol/frame.js'

export class RawPeer {
  readonly frames: Frame[] = []
  readonly socket: WebSocket
  closeCode: number | null = null
  closeReason = ''
  private readonly decoder = new FrameDecoder(0x7fffffff)
  private waiters: Array<() => void> = []

  constructor (url: string, options: WebSocket.ClientOptions = {}) {
    this.socket = new WebSocket(url, [SUBPROTOCOL], options)
    this.socket.on('message', (data: Buffer) => {
      for (const frame of this.decoder.push(data)) this.frames.push({ ...frame, payload: frame.payload.slice() })
      this.wake()
    })
    this.socket.on('close', (code, reason) => {
      this.closeCode = code
      this.closeReason = reason.toString()
      this.wake()
    })
    this.socket.on('error', () => {})
  }

  private wake (): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }

  async open (): Promise<this> {
    if (this.socket.readyState !== WebSocket.OPEN) await new Promise(resolve => this.socket.once('open', resolve))
    return this
  }

  send (...frames: Uint8Array[]): void {
    const size = frames.reduce((n, f) => n + f.byteLength, 0)
    const message = new Uint8Array(size)
    let at = 0
    for (const f of frames) { message.set(f, at); at += f.byteLength }
    this.socket.send(message)
  }

  /** Waits until `predicate` holds for the frames so far, or the socket closes, or `ms` pass. */
  async until (predicate: (frames: Frame[]) => boolean, ms = 5000): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!predicate(this.frames)) {
      if (this.closeCode !== null || Date.now() >= deadline) return predicate(this.frames)
      await new Promise<void>(resolve => {
        const timer = setTimeout(resolve, Math.max(1, deadline - Date.now()))
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
    return true
  }

  async closed (ms = 5000): Promise<number | null> {
    await this.until(() => this.closeCode !== null, ms)
    return this.closeCode
  }

  close (): void {
    this.socket.terminate()
  }
}
