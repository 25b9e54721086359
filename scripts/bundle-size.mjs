// `npm run size`: bundles the browser client the way an app's bundler would
// (esbuild, platform browser, minified, ES2022) and prints its size raw and
// gzipped; fails if the client alone passes its 10 KB gzip budget.
import { build } from 'esbuild'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const budget = 10 * 1024

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

const rows = [
  // Everything the client exports: transport, session, calls, errors, metadata, typed helper.
  await measure('fastify-grpc-ws/client', "export * from './lib/client/web/index.ts'"),
  // For comparison: the codec an app adds for the typed helper.
  await measure('+ protobufjs/light', "export * from './lib/client/web/index.ts'; export { Root } from 'protobufjs/light'")
]
const kb = n => `${(n / 1024).toFixed(1)} KB`
for (const { label, min, gzip } of rows) console.log(`${label.padEnd(26)} ${kb(min).padStart(9)} minified ${kb(gzip).padStart(8)} gzipped`)
if (rows[0].gzip > budget) {
  console.error(`the client is over its budget of ${kb(budget)} gzipped`)
  process.exitCode = 1
}
