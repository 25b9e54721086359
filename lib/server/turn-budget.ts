/**
 * A connection's share of one event-loop turn. libuv reads a readable socket
 * up to 32 times in a row and ws emits every message of those reads at once,
 * so without a share one busy peer has about 2 MB of frames handled before
 * any other socket is read (another client's call waits behind it). A
 * connection that has spent its share stops reading and handles the rest in
 * a later turn (setImmediate), after the other sockets had theirs.
 */

/**
 * Work units one connection may spend per turn. A unit is about what a small
 * frame costs to handle (a PING, a WINDOW_UPDATE, a MESSAGE piece): about a
 * microsecond, so a share is about a millisecond of the loop.
 */
export const UNITS_PER_TURN = 1024

/**
 * Units charged for work whose time was measured, `ms` long, at least
 * `floor`. Two units a microsecond: what starting or cancelling a handler
 * leaves to the turn's microtasks (grpc-js's call, the writer's batch) takes
 * about as long again as the part measured. A CALL's cost varies a
 * hundredfold with its metadata and its handler; a fixed charge would let a
 * peer's costly CALLs take the loop for milliseconds per turn.
 */
export function measuredCost (ms: number, floor: number): number {
  const units = Math.ceil(ms * 2000)
  return units > floor ? units : floor
}

// One turn counter for every connection: advanced by a single setImmediate,
// scheduled only in turns where some connection asked.
let turn = 0
let scheduled = false
function advance (): void {
  turn++
  scheduled = false
}

function currentTurn (): number {
  if (!scheduled) {
    scheduled = true
    setImmediate(advance)
  }
  return turn
}

export class TurnBudget {
  private turn = -1
  private left = 0

  constructor (private readonly perTurn: number = UNITS_PER_TURN) {}

  /** Spends `cost`; false once this turn's share is used up. */
  spend (cost: number): boolean {
    const now = currentTurn()
    if (now !== this.turn) {
      this.turn = now
      this.left = this.perTurn
    }
    this.left -= cost
    return this.left > 0
  }
}
