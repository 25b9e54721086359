/** Start-up floor: a Node process that loads nothing and reports at once. */
import { serve } from './harness.js'

serve(async () => ({ port: 0 }))
