/**
 * The Echo service for Connect, from descriptors built at run time (no
 * code generation): a hand-written FileDescriptorProto in a file registry.
 */
import { create, createFileRegistry } from '@bufbuild/protobuf'
import type { DescService } from '@bufbuild/protobuf'
import { FieldDescriptorProto_Label, FieldDescriptorProto_Type, FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt'

function echoMessage (name: string): any {
  return {
    name,
    field: [
      { name: 'message', number: 1, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.STRING, jsonName: 'message' },
      { name: 'payload', number: 2, label: FieldDescriptorProto_Label.OPTIONAL, type: FieldDescriptorProto_Type.BYTES, jsonName: 'payload' }
    ]
  }
}

export function echoService (): DescService {
  const file = create(FileDescriptorProtoSchema, {
    name: 'echo.proto',
    package: 'echo',
    syntax: 'proto3',
    messageType: [echoMessage('EchoRequest'), echoMessage('EchoResponse')],
    service: [{
      name: 'Echo',
      method: [
        { name: 'Echo', inputType: '.echo.EchoRequest', outputType: '.echo.EchoResponse' },
        { name: 'ServerStream', inputType: '.echo.EchoRequest', outputType: '.echo.EchoResponse', serverStreaming: true },
        { name: 'Bidi', inputType: '.echo.EchoRequest', outputType: '.echo.EchoResponse', clientStreaming: true, serverStreaming: true }
      ]
    }]
  })
  const registry = createFileRegistry(file, () => undefined)
  const service = registry.getService('echo.Echo')
  if (service === undefined) throw new Error('echo.Echo missing from the registry')
  return service
}
