// The browser client's call scenarios (in Node, over `ws`), through the forwarder to an upstream in another process.
import { parityMode } from '../helpers/parity.js'

parityMode.upstream = true
await import('../client/web-calls.test.js')
