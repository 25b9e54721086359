/**
 * JSON for the Connect protocol: the proto3 JSON mapping (camelCase names,
 * 64-bit integers as strings, bytes as base64, enums by name, well-known
 * types), done by @bufbuild/protobuf over the descriptors that
 * @grpc/proto-loader definitions carry (`fileDescriptorProtos`). A request
 * is turned into binary before the handler deserializes it, a response
 * from binary after it serialized it: the handlers never know.
 *
 * @bufbuild/protobuf is an optional peer dependency, loaded once, by the
 * first JSON request: a server that never gets one does not hold it (its
 * modules and well-known types are about 2 MB of heap, enough to change
 * how V8 collects a busy server's garbage). Without it, or for a definition
 * without descriptors, JSON requests get HTTP 415 with a message saying why.
 *
 * The same registry of definitions says which methods are marked free of
 * side effects (`option idempotency_level = NO_SIDE_EFFECTS`), the ones
 * the Connect protocol lets clients call with GET.
 */
import type { ServiceDefinition } from '@grpc/grpc-js'
import { CallError } from '../grpc-websockets/frames.js'
import { status as GrpcStatus } from '@grpc/grpc-js'

/** Request JSON to binary, response binary to JSON; both throw CallError. */
export interface MethodJson {
  request: (json: Uint8Array) => Uint8Array
  response: (binary: Uint8Array) => Uint8Array
}

type Protobuf = typeof import('@bufbuild/protobuf')
type Wkt = typeof import('@bufbuild/protobuf/wkt')

interface ServiceEntry {
  definition: ServiceDefinition
  methods: Map<string, MethodJson> | null
  problem: string | null
}

/**
 * A registry of the files proto-loader serialized. protoc fills in every
 * field's `json_name`, and @bufbuild/protobuf relies on it; proto-loader
 * leaves it out, which would name every JSON field "": it is filled in
 * here the way protoc does (underscores dropped, the next letter upper-cased).
 */
export function fileRegistry (pb: Protobuf, wkt: Wkt, files: readonly Uint8Array[]): ReturnType<Protobuf['createFileRegistry']> {
  const protos = files.map(bytes => pb.fromBinary(wkt.FileDescriptorProtoSchema, bytes))
  type MessageProto = (typeof protos)[number]['messageType'][number]
  const fix = (m: MessageProto): void => {
    for (const field of m.field) if (field.jsonName === '') field.jsonName = field.name.replace(/_+(.?)/g, (_, c: string) => c.toUpperCase())
    m.nestedType.forEach(fix)
  }
  for (const file of protos) file.messageType.forEach(fix)
  return pb.createFileRegistry(pb.create(wkt.FileDescriptorSetSchema, { file: protos }))
}

export class JsonCodecs {
  private lib: { pb: Protobuf, wkt: Wkt } | null = null
  private missing = 'JSON needs the optional dependency @bufbuild/protobuf (npm install @bufbuild/protobuf)'
  private readonly byPath = new Map<string, ServiceEntry>()
  private readonly sideEffectFree = new Set<string>()
  private loading: Promise<void> | null = null
  private tried = false

  /** True once load() has settled: lookup() can answer. */
  get loaded (): boolean { return this.tried }

  /** Loads @bufbuild/protobuf if it is installed; once, however often it is called. Never rejects. */
  load (): Promise<void> {
    this.loading ??= Promise.all([import('@bufbuild/protobuf'), import('@bufbuild/protobuf/wkt')]).then(
      ([pb, wkt]) => { this.lib = { pb, wkt } },
      (err: unknown) => { this.missing += ` (${(err as Error).message})` }
    ).finally(() => { this.tried = true })
    return this.loading
  }

  /** A service the plugin serves. */
  add (definition: ServiceDefinition): void {
    const entry: ServiceEntry = { definition, methods: null, problem: null }
    for (const method of Object.values(definition)) {
      this.byPath.set(method.path, entry)
      if (markedNoSideEffects(method)) this.sideEffectFree.add(method.path)
    }
  }

  /** Whether the definition of `path` marks it `idempotency_level = NO_SIDE_EFFECTS`. */
  noSideEffects (path: string): boolean {
    return this.sideEffectFree.has(path)
  }

  /** The JSON codec of `path`, or why there is none (call once `loaded`). */
  lookup (path: string): MethodJson | string {
    const entry = this.byPath.get(path)
    if (entry === undefined) return `No JSON mapping for ${path}`
    if (this.lib === null) return this.missing
    if (entry.methods === null && entry.problem === null) this.build(entry, this.lib)
    if (entry.problem !== null) return entry.problem
    return entry.methods!.get(path) ?? `No JSON mapping for ${path}`
  }

  private build (entry: ServiceEntry, { pb, wkt }: { pb: Protobuf, wkt: Wkt }): void {
    const methods = Object.values(entry.definition)
    const files = (methods[0] as { requestType?: { fileDescriptorProtos?: unknown } } | undefined)?.requestType?.fileDescriptorProtos
    const serviceName = methods[0]?.path.split('/')[1] ?? ''
    if (!Array.isArray(files)) {
      entry.problem = `${serviceName} has no descriptors for JSON (fileDescriptorProtos): load it with @grpc/proto-loader, or call it with application/proto`
      return
    }
    try {
      const registry = fileRegistry(pb, wkt, files as Uint8Array[])
      const service = registry.getService(serviceName)
      if (service === undefined) throw new Error(`service ${serviceName} not found in its descriptors`)
      const map = new Map<string, MethodJson>()
      for (const method of service.methods) {
        const { input, output } = method
        map.set(`/${serviceName}/${method.name}`, {
          request: json => {
            let message
            try {
              message = pb.fromJsonString(input, Buffer.from(json.buffer, json.byteOffset, json.byteLength).toString('utf8'), { registry })
            } catch (err) {
              throw new CallError(GrpcStatus.INVALID_ARGUMENT, `Invalid JSON for ${input.typeName}: ${(err as Error).message}`)
            }
            return pb.toBinary(input, message)
          },
          response: binary => Buffer.from(pb.toJsonString(output, pb.fromBinary(output, binary), { registry }))
        })
      }
      entry.methods = map
    } catch (err) {
      entry.problem = `${serviceName}: its descriptors could not be read for JSON: ${(err as Error).message}`
    }
  }
}

/**
 * proto-loader copies each method's options into its definition, the
 * idempotency level by name (`options.idempotency_level`); a definition
 * built from a descriptor set may hold the enum's number (NO_SIDE_EFFECTS = 1).
 */
function markedNoSideEffects (method: unknown): boolean {
  const level = (method as { options?: { idempotency_level?: unknown } }).options?.idempotency_level
  return level === 'NO_SIDE_EFFECTS' || level === 1
}
