/**
 * protobuf-es descriptors for apps without a codegen step: a grpc-js
 * definition from @grpc/proto-loader carries the serialized
 * FileDescriptorProtos of its .proto files (`requestType.fileDescriptorProtos`),
 * which a protobuf-es registry turns back into a `DescService` for Connect's
 * `createClient`.
 */
import { createFileRegistry, fromBinary, create, type DescService } from '@bufbuild/protobuf'
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt'
import { noDescriptor } from './errors.js'

/** The members of a proto-loader method definition used here. */
interface LoadedMethod {
  path?: string
  requestType?: { fileDescriptorProtos?: readonly Uint8Array[] }
  responseType?: { fileDescriptorProtos?: readonly Uint8Array[] }
}

/** A proto-loader package definition (`loadSync(...)`), or one service definition of it. */
export type LoadedDefinition = Record<string, unknown>

function isMethod (value: unknown): value is LoadedMethod {
  return typeof value === 'object' && value !== null && typeof (value as LoadedMethod).path === 'string'
}

/**
 * The service `typeName` (e.g. `'chat.Chat'`) of a @grpc/proto-loader
 * definition, as a protobuf-es `DescService`. `definition` is the package
 * definition `loadSync()` returned, or the service's own definition (a grpc-js
 * client constructor's `.service`). Throws FST_GRPCWS_NO_DESCRIPTOR when the
 * definition carries no descriptors or has no such service.
 */
export function serviceDescFromDefinition (definition: LoadedDefinition, typeName: string): DescService {
  if (typeof definition !== 'object' || definition === null) throw noDescriptor('expected a definition from @grpc/proto-loader')
  if (typeof typeName !== 'string' || typeName === '') throw noDescriptor('expected the full name of a service, e.g. "pkg.Service"')
  const files = new Map<string, FileDescriptorProto>()
  const add = (protos: readonly Uint8Array[] | undefined): void => {
    for (const bytes of protos ?? []) {
      const file = fromBinary(FileDescriptorProtoSchema, bytes)
      if (!files.has(file.name)) files.set(file.name, file)
    }
  }
  // Every entry carries its files: message types directly, services through their methods.
  for (const entry of Object.values(definition)) {
    if (typeof entry !== 'object' || entry === null) continue
    add((entry as { fileDescriptorProtos?: readonly Uint8Array[] }).fileDescriptorProtos)
    for (const method of isMethod(entry) ? [entry] : Object.values(entry).filter(isMethod)) {
      add(method.requestType?.fileDescriptorProtos)
      add(method.responseType?.fileDescriptorProtos)
    }
  }
  if (files.size === 0) {
    throw noDescriptor(`the definition has no fileDescriptorProtos for "${typeName}": pass what @grpc/proto-loader's loadSync/load returned (or a client's .service), not a hand-written definition`)
  }
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: [...files.values()] }))
  const service = registry.getService(typeName)
  if (service === undefined) {
    const known = [...registry].filter(d => d.kind === 'service').map(d => d.typeName)
    throw noDescriptor(`no service "${typeName}" in the definition's files (services: ${known.join(', ') || 'none'})`)
  }
  return service
}
