/**
 * Runs one call the way Connect's runUnaryCall / runStreamingCall do
 * (interceptors outermost first, messages normalized with `create`,
 * `req.signal` aborted on the caller's abort, at the deadline, on failure and
 * once the call is over, errors as ConnectError), with fewer objects per
 * call: one AbortController instead of three, no timer without a deadline,
 * and one shared reason for a finished call rather than a new AbortError
 * (DOMException) each time. Profiled with 64 unary calls in flight, those
 * were a fifth of the client's time.
 */
import { create, type DescMessage, type MessageInitShape } from '@bufbuild/protobuf'
import { Code, ConnectError, type Interceptor, type StreamRequest, type StreamResponse, type UnaryRequest, type UnaryResponse } from '@connectrpc/connect'

/** The reason `req.signal` gives once a call has ended well. */
let finishedReason: ConnectError | undefined

interface Run {
  signal: AbortSignal
  /** The call failed: `req.signal` aborts with, and the caller gets, this ConnectError. */
  fail: (reason: unknown) => ConnectError
  done: () => void
}

function start (signal: AbortSignal | undefined, timeoutMs: number | undefined): Run {
  const controller = new AbortController()
  let timer: ReturnType<typeof setTimeout> | undefined
  const onAbort = (): void => { controller.abort(signal!.reason) }
  const release = (): void => {
    clearTimeout(timer)
    signal?.removeEventListener('abort', onAbort)
  }
  if (signal?.aborted === true) controller.abort(signal.reason)
  else signal?.addEventListener('abort', onAbort)
  if (timeoutMs !== undefined && !controller.signal.aborted) {
    timer = setTimeout(() => { controller.abort(new ConnectError('the operation timed out', Code.DeadlineExceeded)) }, timeoutMs)
  }
  return {
    signal: controller.signal,
    fail (reason) {
      // Aborted (by the caller, or at the deadline): that is the error, as in Connect.
      const error = controller.signal.aborted ? ConnectError.from(controller.signal.reason, Code.Canceled) : ConnectError.from(reason)
      release()
      controller.abort(error)
      return error
    },
    done () {
      release()
      controller.abort(finishedReason ??= new ConnectError('the call is over', Code.Canceled))
    }
  }
}

function intercept<T> (next: T, interceptors: Interceptor[]): T {
  for (let i = interceptors.length - 1; i >= 0; i--) next = interceptors[i]!(next as any) as T
  return next
}

interface RunOptions<R> {
  interceptors: Interceptor[]
  signal: AbortSignal | undefined
  timeoutMs: number | undefined
  req: Omit<R, 'signal' | 'message'>
}

export async function runUnary<I extends DescMessage, O extends DescMessage> (
  opt: RunOptions<UnaryRequest<I, O>> & { message: MessageInitShape<I>, next: (req: UnaryRequest<I, O>) => Promise<UnaryResponse<I, O>> }
): Promise<UnaryResponse<I, O>> {
  const run = start(opt.signal, opt.timeoutMs)
  const next = intercept(opt.next, opt.interceptors)
  try {
    const response = await next({ ...opt.req, message: create(opt.req.method.input, opt.message), signal: run.signal } as UnaryRequest<I, O>)
    run.done()
    return response
  } catch (err) {
    throw run.fail(err)
  }
}

export async function runStreaming<I extends DescMessage, O extends DescMessage> (
  opt: RunOptions<StreamRequest<I, O>> & { message: AsyncIterable<MessageInitShape<I>>, next: (req: StreamRequest<I, O>) => Promise<StreamResponse<I, O>> }
): Promise<StreamResponse<I, O>> {
  const run = start(opt.signal, opt.timeoutMs)
  const next = intercept(opt.next, opt.interceptors)
  const input = opt.message
  const desc = opt.req.method.input
  let over = false
  // As Connect: when the call fails or ends, the request iterable hears of
  // it (throw on failure, then return), so a generator can clean up.
  run.signal.addEventListener('abort', () => {
    const it = input[Symbol.asyncIterator]()
    if (!over) it.throw?.(run.signal.reason).catch(() => {})
    it.return?.().catch(() => {})
  }, { once: true })
  async function * normalized (): AsyncGenerator<any> {
    for await (const message of input) yield create(desc, message)
  }
  try {
    const response = await next({ ...opt.req, message: normalized(), signal: run.signal } as StreamRequest<I, O>)
    return {
      ...response,
      message: {
        [Symbol.asyncIterator] () {
          const it = response.message[Symbol.asyncIterator]()
          // No throw/return, as Connect's: its client never passes them on.
          return {
            next: async () => {
              try {
                const result = await it.next()
                if (result.done === true) {
                  over = true
                  run.done()
                }
                return result
              } catch (err) {
                throw run.fail(err)
              }
            }
          }
        }
      }
    }
  } catch (err) {
    throw run.fail(err)
  }
}
