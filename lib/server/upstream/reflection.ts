/**
 * Learns an upstream's services and methods from its gRPC reflection
 * service: `grpc.reflection.v1` first, then `v1alpha` (grpc-go before 1.45
 * serves only that one).
 *
 * Only method names are needed (calls are forwarded as bytes), so the few
 * protobuf fields read here are decoded by hand: a runtime dependency on a
 * protobuf library and the reflection .proto files would cost more than
 * these hundred lines.
 */
import { Metadata, status as GrpcStatus, type Client, type ServiceError, type StatusObject } from '@grpc/grpc-js'

const V1 = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo'
const V1ALPHA = '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'
/** What reflection lists about itself: not forwarded. */
export const REFLECTION_SERVICES: ReadonlySet<string> = new Set(['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'])

export interface DiscoveredMethod {
  name: string
  clientStreaming: boolean
  serverStreaming: boolean
}

export interface DiscoveredService {
  name: string
  methods: DiscoveredMethod[]
}

/** A failure to learn what was asked, with the reason. */
export class DiscoveryError extends Error {}

// --- protobuf wire format: just what these messages use ---------------------

type Field = [number, number, Uint8Array | number]

function * fields (buf: Uint8Array): Generator<Field> {
  let pos = 0
  const varint = (): number => {
    let value = 0
    let shift = 0
    for (;;) {
      if (pos >= buf.length) throw new DiscoveryError('malformed reflection response: truncated varint')
      const b = buf[pos++]!
      value += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return value
      shift += 7
      if (shift > 63) throw new DiscoveryError('malformed reflection response: varint too long')
    }
  }
  while (pos < buf.length) {
    const tag = varint()
    const field = Math.floor(tag / 8)
    const wire = tag & 7
    if (wire === 0) {
      yield [field, wire, varint()]
    } else if (wire === 2) {
      const length = varint()
      if (pos + length > buf.length) throw new DiscoveryError('malformed reflection response: truncated field')
      yield [field, wire, buf.subarray(pos, pos + length)]
      pos += length
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4
    } else {
      throw new DiscoveryError(`malformed reflection response: wire type ${wire}`)
    }
  }
}

const text = (bytes: Uint8Array | number): string => typeof bytes === 'number' ? '' : Buffer.from(bytes).toString('utf8')
const bytesOf = (value: Uint8Array | number): Uint8Array => typeof value === 'number' ? new Uint8Array(0) : value

function encodeString (field: number, value: string): Buffer {
  const bytes = Buffer.from(value, 'utf8')
  const length: number[] = []
  let n = bytes.length
  do {
    length.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0))
    n >>>= 7
  } while (n > 0)
  return Buffer.concat([Buffer.from([(field << 3) | 2, ...length]), bytes])
}

/** ServerReflectionRequest { list_services = 7 }. */
const listServicesRequest = (): Buffer => encodeString(7, '')
/** ServerReflectionRequest { file_containing_symbol = 4 }. */
const fileContainingRequest = (symbol: string): Buffer => encodeString(4, symbol)

interface ReflectionResponse {
  services?: string[]
  files?: Uint8Array[]
  error?: { code: number, message: string }
}

function parseResponse (buf: Uint8Array): ReflectionResponse {
  const response: ReflectionResponse = {}
  for (const [field, , value] of fields(buf)) {
    if (field === 4) {
      // FileDescriptorResponse { repeated bytes file_descriptor_proto = 1 }
      response.files = []
      for (const [f, , v] of fields(bytesOf(value))) if (f === 1) response.files.push(bytesOf(v))
    } else if (field === 6) {
      // ListServiceResponse { repeated ServiceResponse service = 1 { string name = 1 } }
      response.services = []
      for (const [f, , v] of fields(bytesOf(value))) {
        if (f !== 1) continue
        for (const [g, , name] of fields(bytesOf(v))) if (g === 1) response.services.push(text(name))
      }
    } else if (field === 7) {
      // ErrorResponse { int32 error_code = 1; string error_message = 2 }
      const error = { code: GrpcStatus.UNKNOWN as number, message: '' }
      for (const [f, , v] of fields(bytesOf(value))) {
        if (f === 1 && typeof v === 'number') error.code = v
        if (f === 2) error.message = text(v)
      }
      response.error = error
    }
  }
  return response
}

/** The services a FileDescriptorProto defines, by fully-qualified name. */
function servicesOfFile (buf: Uint8Array): DiscoveredService[] {
  let pkg = ''
  const services: DiscoveredService[] = []
  for (const [field, , value] of fields(buf)) {
    if (field === 2) pkg = text(value)
    if (field !== 6) continue
    // ServiceDescriptorProto { name = 1; repeated MethodDescriptorProto method = 2 }
    const service: DiscoveredService = { name: '', methods: [] }
    for (const [f, , v] of fields(bytesOf(value))) {
      if (f === 1) service.name = text(v)
      if (f !== 2) continue
      // MethodDescriptorProto { name = 1; client_streaming = 5; server_streaming = 6 }
      const method: DiscoveredMethod = { name: '', clientStreaming: false, serverStreaming: false }
      for (const [g, , w] of fields(bytesOf(v))) {
        if (g === 1) method.name = text(w)
        if (g === 5) method.clientStreaming = w === 1
        if (g === 6) method.serverStreaming = w === 1
      }
      service.methods.push(method)
    }
    services.push(service)
  }
  return services.map(s => ({ ...s, name: pkg === '' ? s.name : `${pkg}.${s.name}` }))
}

// --- one reflection stream ---------------------------------------------------

const identity = (b: Buffer): Buffer => b

/** A reflection stream over which requests are asked one at a time. */
class ReflectionStream {
  private readonly call
  private readonly waiting: Array<{ resolve: (b: Buffer) => void, reject: (e: Error) => void }> = []
  private failure: ServiceError | Error | null = null

  constructor (client: Client, path: string, deadline: number) {
    this.call = client.makeBidiStreamRequest(path, identity, identity, new Metadata(), { deadline })
    this.call.on('data', (b: Buffer) => { this.waiting.shift()?.resolve(b) })
    this.call.on('error', (err: ServiceError) => { this.fail(err) })
    this.call.on('status', (s: StatusObject) => { this.fail(Object.assign(new Error(s.details), s)) })
  }

  private fail (err: Error): void {
    this.failure ??= err
    for (const w of this.waiting.splice(0)) w.reject(this.failure)
  }

  async ask (request: Buffer): Promise<ReflectionResponse> {
    if (this.failure !== null) throw this.failure
    const answer = new Promise<Buffer>((resolve, reject) => { this.waiting.push({ resolve, reject }) })
    this.call.write(request)
    return parseResponse(await answer)
  }

  close (): void {
    this.call.end()
    // Whatever it still says, nobody listens.
    this.call.cancel()
  }
}

/**
 * The services `names` (or, for `'all'`, every one reflection lists but
 * reflection itself) with their methods. Throws DiscoveryError with the
 * reason when reflection is unavailable or lacks one of them.
 */
export async function discover (client: Client, names: readonly string[] | 'all', timeoutMs: number): Promise<DiscoveredService[]> {
  const deadline = Date.now() + timeoutMs
  let stream = new ReflectionStream(client, V1, deadline)
  let wanted: readonly string[]
  try {
    wanted = names === 'all' ? await listServices(stream) : names
    if (names !== 'all' && names.length > 0) await stream.ask(fileContainingRequest(names[0]!))
  } catch (err) {
    stream.close()
    if ((err as ServiceError).code !== GrpcStatus.UNIMPLEMENTED) throw reason(err)
    // No v1 on this server: its older twin.
    stream = new ReflectionStream(client, V1ALPHA, deadline)
    try {
      wanted = names === 'all' ? await listServices(stream) : names
    } catch (err2) {
      stream.close()
      throw reason(err2)
    }
  }
  try {
    const found: DiscoveredService[] = []
    for (const name of wanted) {
      const response = await stream.ask(fileContainingRequest(name))
      if (response.error !== undefined) throw new DiscoveryError(`reflection does not know service ${name} (${response.error.code} ${response.error.message})`)
      const service = (response.files ?? []).flatMap(servicesOfFile).find(s => s.name === name)
      if (service === undefined) throw new DiscoveryError(`reflection answered for ${name} without a service of that name`)
      found.push(service)
    }
    return found
  } catch (err) {
    throw reason(err)
  } finally {
    stream.close()
  }
}

async function listServices (stream: ReflectionStream): Promise<string[]> {
  const response = await stream.ask(listServicesRequest())
  if (response.error !== undefined) throw new DiscoveryError(`reflection could not list services (${response.error.code} ${response.error.message})`)
  return (response.services ?? []).filter(name => !REFLECTION_SERVICES.has(name))
}

function reason (err: unknown): DiscoveryError {
  if (err instanceof DiscoveryError) return err
  const e = err as Partial<ServiceError>
  return new DiscoveryError(typeof e.code === 'number'
    ? `reflection failed: ${e.code} ${GrpcStatus[e.code] ?? ''}: ${e.details ?? e.message ?? ''}`
    : `reflection failed: ${String((err as Error)?.message ?? err)}`)
}
