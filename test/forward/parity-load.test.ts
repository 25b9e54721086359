// The load parity scenarios, through the forwarder to an upstream in another process (see test/helpers/parity.ts).
import { parityMode } from '../helpers/parity.js'

parityMode.upstream = true
await import('../parity/load.test.js')
