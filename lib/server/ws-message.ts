/**
 * One binary WebSocket message written straight to the socket under ws, its
 * payload given in parts (RFC 6455 §5.2: FIN, opcode 2, unmasked as a
 * server's frames are). ws.send takes one buffer, so a batch of frames had
 * to be joined first: every response byte copied once more, into a buffer
 * the size of the batch. Here large parts go to the socket as they are and
 * only runs of small ones are joined, so writev gets a few buffers.
 *
 * Only for a socket without extensions (no permessage-deflate), where ws
 * writes each message at once and queues nothing of its own.
 */
import type { Socket } from 'node:net'

/** Parts at least this large are written as they are; smaller ones are joined. */
const JOIN_BELOW = 4096

export function writeBinaryMessage (socket: Socket, parts: readonly Uint8Array[], size: number, done?: () => void): void {
  const headerSize = size < 126 ? 2 : size < 0x10000 ? 4 : 10
  const header = Buffer.allocUnsafe(headerSize)
  header[0] = 0x82
  if (headerSize === 2) {
    header[1] = size
  } else if (headerSize === 4) {
    header[1] = 126
    header.writeUInt16BE(size, 2)
  } else {
    header[1] = 127
    header.writeUInt32BE(Math.floor(size / 0x100000000), 2)
    header.writeUInt32BE(size >>> 0, 6)
  }
  // The header joins the first run of small parts.
  const out: Uint8Array[] = []
  let run: Uint8Array[] = [header]
  let runSize = headerSize
  for (const part of parts) {
    if (part.byteLength < JOIN_BELOW) {
      run.push(part)
      runSize += part.byteLength
      continue
    }
    pushRun(out, run, runSize)
    run = []
    runSize = 0
    out.push(part)
  }
  pushRun(out, run, runSize)
  socket.cork()
  for (let i = 0; i < out.length; i++) socket.write(out[i]!, i === out.length - 1 ? done : undefined)
  socket.uncork()
}

// A run of small parts as one buffer (Node's Buffer.concat); a run of one part as it is.
function pushRun (out: Uint8Array[], run: Uint8Array[], size: number): void {
  if (size > 0) out.push(run.length === 1 ? run[0]! : Buffer.concat(run, size))
}
