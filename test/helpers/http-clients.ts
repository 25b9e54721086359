/**
 * Descriptors for the stock HTTP clients under test, built at run time from
 * the test proto's grpc-js definition (proto-loader keeps the file
 * descriptors): a Connect `DescService`, so connect-es clients need no
 * generated code.
 */
import * as pb from '@bufbuild/protobuf'
import * as wkt from '@bufbuild/protobuf/wkt'
import type { DescService } from '@bufbuild/protobuf'
import { fileRegistry } from '../../lib/server/http/json.js'
import { testDefinition } from './test-service.js'

const files = (testDefinition.Unary as unknown as { requestType: { fileDescriptorProtos: Uint8Array[] } }).requestType.fileDescriptorProtos
export const registry = fileRegistry(pb, wkt, files)
export const TestService: DescService = registry.getService('test.Test')!
