// The browser client must bundle for browsers as it is: esbuild with
// platform 'browser' refuses Node built-ins, and the result must not lean
// on Node globals. Its size is held to the budget `npm run size` reports.
import { build } from 'esbuild'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'

const entry = fileURLToPath(new URL('../../lib/client/web/index.ts', import.meta.url))
const webSocketEntry = fileURLToPath(new URL('../../lib/client/web/websocket.ts', import.meta.url))

for (const [name, path, budget] of [['fastify-grpc-ws/client', entry, 12], ['fastify-grpc-ws/client/websocket', webSocketEntry, 10]] as const) {
  t.test(`${name} should bundle for browsers with no Node built-ins or globals, under ${budget} KB gzipped`, async t => {
    const gzip = await bundleChecked(t, path)
    t.ok(gzip < budget * 1024, `${(gzip / 1024).toFixed(1)} KB gzipped`)
  })
}

t.test('the WebSocket-only entry leaves the HTTP fallback out', async t => {
  const result = await build({ entryPoints: [webSocketEntry], bundle: true, write: false, metafile: true, logLevel: 'silent', platform: 'browser', format: 'esm' })
  const inputs = Object.keys(result.metafile.inputs)
  t.notOk(inputs.some(path => path.endsWith('web/http.ts')), inputs.join(', '))
  const full = await build({ entryPoints: [entry], bundle: true, write: false, metafile: true, logLevel: 'silent', platform: 'browser', format: 'esm' })
  t.ok(Object.keys(full.metafile.inputs).some(path => path.endsWith('web/http.ts')), 'the default entry has it')
})

async function bundleChecked (t: Test, entry: string): Promise<number> {
  const result = await build({ entryPoints: [entry], bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, metafile: true, logLevel: 'silent' })
  t.same(result.errors, [])
  t.same(result.warnings, [])
  const inputs = Object.keys(result.metafile.inputs)
  t.notOk(inputs.some(path => path.includes('node_modules')), `only the package's own modules: ${inputs.join(', ')}`)
  const code = result.outputFiles[0]!.text
  for (const pattern of [/\bBuffer\b/, /\bprocess\b/, /\brequire\(/, /node:/, /(^|[^.\w])global\./]) t.notMatch(code, pattern, `no ${String(pattern)}`)
  return gzipSync(result.outputFiles[0]!.contents, { level: 9 }).byteLength
}

t.test('Should fail to bundle for browsers if a Node built-in crept in (the check above means something)', async t => {
  await t.rejects(build({
    stdin: { contents: `import 'node:buffer'; export * from ${JSON.stringify(entry)}`, resolveDir: '.', loader: 'ts' },
    bundle: true, platform: 'browser', write: false, logLevel: 'silent'
  }), /Could not resolve "node:buffer"/)
})
