/**
 * Runs `body` with uncaught exceptions collected in `thrown` instead of
 * failing the test: tap's own listeners are set aside meanwhile.
 */
export async function catchingUncaught<T> (thrown: unknown[], body: () => Promise<T>): Promise<T> {
  const listeners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  process.on('uncaughtException', err => { thrown.push(err) })
  try {
    return await body()
  } finally {
    process.removeAllListeners('uncaughtException')
    for (const l of listeners) process.on('uncaughtException', l)
  }
}
