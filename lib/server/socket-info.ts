/**
 * What a call learns of the TCP (or TLS) socket under its WebSocket, in the
 * shapes grpc-js gives for an HTTP/2 session.
 */
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { AuthContext, ConnectionInfo } from '../grpc-internals.js'

/** `address:port` of the client, for `call.getPeer()` and logs. */
export function peerOf (socket: Socket): string {
  const address = socket.remoteAddress
  if (address === undefined) return 'unknown'
  const port = socket.remotePort
  return port === undefined ? address : `${address}:${port}`
}

export function connectionInfoOf (socket: Socket): ConnectionInfo {
  return { localAddress: socket.localAddress, localPort: socket.localPort, remoteAddress: socket.remoteAddress, remotePort: socket.remotePort }
}

export function authContextOf (socket: Socket): AuthContext {
  const tls = socket as TLSSocket
  if (tls.encrypted !== true || !tls.authorized) return {}
  const peerCertificate = tls.getPeerCertificate()
  return { transportSecurityType: 'ssl', sslPeerCertificate: peerCertificate.raw !== undefined ? peerCertificate : undefined }
}
