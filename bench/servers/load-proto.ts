import * as grpc from '@grpc/grpc-js'
import * as loader from '@grpc/proto-loader'
import { LOADER_OPTIONS, PROTO_PATH } from '../common.js'

/** The Echo client constructor (its `.service` is the ServiceDefinition). */
export function loadEcho (): grpc.ServiceClientConstructor {
  const def = loader.loadSync(PROTO_PATH, LOADER_OPTIONS)
  return (grpc.loadPackageDefinition(def) as any).echo.Echo as grpc.ServiceClientConstructor
}
