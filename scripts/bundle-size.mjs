// `npm run size`: bundles the browser client the way an app's bundler would
// (esbuild, platform browser, minified, ES2022) and prints its size raw and
// gzipped; fails if the client passes its 12 KB gzip budget, if its
// WebSocket-only entry passes 10 KB, or if the
// Connect transport adds more than 4 KB gzipped to what a Connect app
// bundles anyway (Connect's createClient, protobuf-es's binary codec, and
// the plain client it runs on).
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const budget = 12 * 1024
const webSocketBudget = 10 * 1024
const connectBudget = 4 * 1024

async function measure (label, contents) {
  const result = await build({
    stdin: { contents, resolveDir: root, loader: 'ts', sourcefile: `${label}.ts` },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'error'
  })
  const code = result.outputFiles[0].contents
  return { label, min: code.byteLength, gzip: gzipSync(code, { level: 9 }).byteLength }
}

const client = "export * from './lib/client/web/index.ts';"
// What any Connect app over this socket ships whatever its transport: the
// client factory, the binary codec every Connect transport uses, and the plain client.
const connectBase = client + "export { createClient, ConnectError } from '@connectrpc/connect'; export { toBinary, fromBinary } from '@bufbuild/protobuf';"
const transport = "export { createWebSocketTransport } from './lib/client/connect/index.ts';"

const rows = [
  // Everything the client exports: transport, session, calls, errors, metadata, typed helper, the HTTP fallback.
  await measure('fastify-grpc-ws/client', "export * from './lib/client/web/index.ts'"),
  // The same without the HTTP fallback.
  await measure('  …/client/websocket', "export * from './lib/client/web/websocket.ts'"),
  // For comparison: the codec an app adds for the typed helper.
  await measure('+ protobufjs/light', "export * from './lib/client/web/index.ts'; export { Root } from 'protobufjs/light'"),
  // The Connect transport, over the plain client and Connect's createClient with (and without) the codec.
  await measure('client + Connect + codec', connectBase),
  await measure('  + Connect transport', connectBase + transport),
  await measure('client + createClient', client + "export { createClient } from '@connectrpc/connect'"),
  await measure('  + Connect transport', client + "export { createClient } from '@connectrpc/connect';" + transport),
  // The run-time descriptor helper, alone (it carries protobuf-es's descriptor.proto).
  await measure('serviceDescFromDefinition', "export { serviceDescFromDefinition } from './lib/client/connect/index.ts'")
]
const kb = n => `${(n / 1024).toFixed(1)} KB`
for (const { label, min, gzip } of rows) console.log(`${label.padEnd(26)} ${kb(min).padStart(9)} minified ${kb(gzip).padStart(8)} gzipped`)
const added = rows[4].gzip - rows[3].gzip
console.log(`Connect transport adds ${kb(added)} gzipped over client + Connect + codec (${kb(rows[6].gzip - rows[5].gzip)} over createClient alone)`)
if (rows[0].gzip > budget) {
  console.error(`the client is over its budget of ${kb(budget)} gzipped`)
  process.exitCode = 1
}
if (rows[1].gzip > webSocketBudget) {
  console.error(`the WebSocket-only client is over its budget of ${kb(webSocketBudget)} gzipped`)
  process.exitCode = 1
}
if (added > connectBudget) {
  console.error(`the Connect transport is over its budget of ${kb(connectBudget)} gzipped`)
  process.exitCode = 1
}
