// The Connect transport must bundle for browsers as it is (no Node built-ins
// or globals), stay out of the plain client's bundle, and add at most 4 KB
// gzipped to what a Connect app over this socket ships anyway: Connect's
// createClient, protobuf-es's binary codec and the plain client
// (`npm run size` prints the same figures).
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import t from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))

async function bundle (contents: string, external: string[] = []): Promise<{ code: string, gzip: number, inputs: string[] }> {
  const result = await build({
    stdin: { contents, resolveDir: root, loader: 'ts' },
    bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, metafile: true, logLevel: 'silent', external
  })
  return { code: result.outputFiles[0]!.text, gzip: gzipSync(result.outputFiles[0]!.contents, { level: 9 }).byteLength, inputs: Object.keys(result.metafile.inputs) }
}

const base = "export * from './lib/client/web/index.ts'; export { createClient, ConnectError } from '@connectrpc/connect'; export { toBinary, fromBinary } from '@bufbuild/protobuf';"

t.test('Should bundle the transport and the descriptor helper for browsers with no Node built-ins or globals', async t => {
  const { inputs } = await bundle("export * from './lib/client/connect/index.ts'")
  t.ok(inputs.some(path => path.includes('@connectrpc/connect')), 'Connect is bundled from the app\'s copy, for browsers')
  // This package's own code (protobuf-es guards its own use of process).
  const { code } = await bundle("export * from './lib/client/connect/index.ts'", ['@connectrpc/*', '@bufbuild/*'])
  for (const pattern of [/\bBuffer\b/, /\bprocess\b/, /\brequire\(/, /node:/, /(^|[^.\w])global\./]) t.notOk(pattern.test(code), `no ${String(pattern)}`)
})

t.test('Should add at most 4 KB gzipped over Connect, its codec and the plain client', async t => {
  const without = await bundle(base)
  const withTransport = await bundle(base + "export { createWebSocketTransport } from './lib/client/connect/index.ts'")
  const added = withTransport.gzip - without.gzip
  t.ok(added > 0, 'the transport is in the second bundle')
  t.ok(added <= 4 * 1024, `${(added / 1024).toFixed(1)} KB gzipped`)
})

t.test('Should keep Connect and protobuf-es out of the plain client', async t => {
  const { inputs } = await bundle("export * from './lib/client/web/index.ts'")
  t.notOk(inputs.some(path => /@connectrpc|@bufbuild|lib\/client\/connect/.test(path)), inputs.join(', '))
})
