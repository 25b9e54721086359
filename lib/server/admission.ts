/**
 * Places for WebSocket connections: `maxConnections` in all and
 * `maxConnectionsPerPeer` per client address. A place is taken by the
 * upgrade guard, before the upgrade, and given back when the raw socket
 * closes, so upgrades in flight count as much as open connections and
 * concurrent upgrades cannot all slip past a limit. Both routes of one
 * plugin registration share one Admission.
 */
import type { Socket } from 'node:net'
import type { ResolvedOptions } from '../options.js'

/** The limit an upgrade would break. */
export type Refusal = 'maxConnections' | 'maxConnectionsPerPeer'

// The release listener is shared by all sockets and finds its place on the
// socket: no closure per connection.
const kPlace = Symbol('fastify-grpc-ws.place')
type PlacedSocket = Socket & { [kPlace]: { admission: Admission, peer: string } }

function release (this: Socket): void {
  const { admission, peer } = (this as PlacedSocket)[kPlace]
  admission.release(peer)
}

export class Admission {
  private taken = 0
  private readonly perPeer = new Map<string, number>()

  constructor (readonly maxConnections: number, readonly maxConnectionsPerPeer: number) {}

  /** Places taken: open connections and upgrades under way. */
  get count (): number { return this.taken }

  /** True when no place is left (never with `maxConnections` 0). */
  get full (): boolean {
    return this.maxConnections > 0 && this.taken >= this.maxConnections
  }

  /**
   * Takes a place for `socket`, from `peer` (an address), until it closes;
   * or names the limit that leaves none. Synchronous: nothing runs between
   * the check and the taking.
   */
  admit (socket: Socket, peer: string): Refusal | null {
    const perPeer = this.maxConnectionsPerPeer
    const fromPeer = perPeer > 0 ? this.perPeer.get(peer) ?? 0 : 0
    if (perPeer > 0 && fromPeer >= perPeer) return 'maxConnectionsPerPeer'
    if (this.full) return 'maxConnections'
    if (this.maxConnections === 0 && perPeer === 0) return null
    // Gone already: 'close' has fired, the place would never come back.
    if (socket.destroyed) return null
    this.taken++
    if (perPeer > 0) this.perPeer.set(peer, fromPeer + 1)
    ;(socket as PlacedSocket)[kPlace] = { admission: this, peer }
    socket.once('close', release)
    return null
  }

  /** @private A socket holding a place has closed. */
  release (peer: string): void {
    this.taken--
    const left = (this.perPeer.get(peer) ?? 1) - 1
    if (left > 0) this.perPeer.set(peer, left)
    else this.perPeer.delete(peer)
  }
}

// One per plugin registration: both routes are given the same resolved options.
const admissions = new WeakMap<ResolvedOptions, Admission>()

/** The Admission of the registration these options belong to. */
export function admissionFor (options: ResolvedOptions): Admission {
  let admission = admissions.get(options)
  if (admission === undefined) {
    admission = new Admission(options.maxConnections, options.maxConnectionsPerPeer)
    admissions.set(options, admission)
  }
  return admission
}
