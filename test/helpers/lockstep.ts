/**
 * Drives a bidi call in lockstep: each request is sent only after the
 * answer to the previous one arrived. Browser-safe, for pages under test too.
 */
import { bounded } from './bounded.js'

export async function lockstepBidi (bidi: (requests: AsyncIterable<{ message: string }>) => AsyncIterable<{ message: string }>, words: string[]): Promise<string[]> {
  let answered: (() => void) | undefined
  async function * requests (): AsyncIterable<{ message: string }> {
    for (const message of words) {
      const next = new Promise<void>(resolve => { answered = resolve })
      yield { message }
      await next
    }
  }
  const got: string[] = []
  await bounded('bidi', (async () => {
    for await (const response of bidi(requests())) {
      got.push(response.message)
      answered?.()
    }
  })())
  return got
}
