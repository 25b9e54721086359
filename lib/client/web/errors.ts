/**
 * The one error every failed call rejects with: the gRPC status code, the
 * server's details and trailing metadata, and the local cause, if any.
 */
import { Status, statusName } from '../../protocol/status.js'
import { Metadata } from './metadata.js'

export { Status }
export type { StatusCode } from '../../protocol/status.js'

export class GrpcError extends Error {
  override readonly name = 'GrpcError'

  constructor (
    /** The gRPC status code, e.g. `Status.NOT_FOUND` (5). */
    readonly code: number,
    /** The status message, as the server (or this client) gave it. */
    readonly details: string,
    /** The trailing metadata of the call (empty for failures found here). */
    readonly metadata: Metadata = new Metadata(),
    options?: { cause?: unknown }
  ) {
    // The same message format as grpc-js: "14 UNAVAILABLE: Connection closed".
    super(`${code} ${statusName(code)}: ${details}`, options)
  }

  /** The name of the code, e.g. `'NOT_FOUND'`. */
  get codeName (): string {
    return statusName(this.code)
  }
}
