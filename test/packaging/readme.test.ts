/**
 * The README's "Use it in your app" section shows the files of examples/app
 * verbatim; `npm run test:package` compiles and runs those files against
 * the installed tarball. This test keeps the two the same, so every snippet
 * of that section is one that was compiled.
 */
import protobuf from 'protobufjs'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))
const appDir = `${root}examples/app/`
const readme = readFileSync(`${root}README.md`, 'utf8')
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { peerDependencies: Record<string, string>, peerDependenciesMeta?: Record<string, { optional?: boolean }> }

function section (): string {
  const start = readme.indexOf('\n## Use it in your app\n')
  if (start === -1) return ''
  const end = readme.indexOf('\n## ', start + 1)
  return readme.slice(start, end === -1 ? undefined : end)
}

interface Block { lang: string, code: string, label: string | undefined }

function blocks (text: string): Block[] {
  const found: Block[] = []
  const fence = /^```(\w*)\n([\s\S]*?)^```$/gm
  for (let m = fence.exec(text); m !== null; m = fence.exec(text)) {
    const before = text.slice(0, m.index).trimEnd().split('\n').at(-1) ?? ''
    found.push({ lang: m[1]!, code: m[2]!, label: /\[examples\/app\/([^\]]+)\]\(examples\/app\/\1\)/.exec(before)?.[1] })
  }
  return found
}

const text = section()
const shown = blocks(text)

t.test('Should have the section, after the quick start', async t => {
  t.not(text, '', 'README has "## Use it in your app"')
  t.ok(readme.indexOf('## Use it in your app') > readme.indexOf('## Quick start'))
})

t.test('Should show each app file verbatim, and no code that is not one of them', async t => {
  const files = readdirSync(appDir).filter(file => /\.ts$|^tsconfig.*\.json$/.test(file)).sort()
  t.same(shown.filter(b => b.label !== undefined).map(b => b.label).sort(), files, 'every .ts and tsconfig of examples/app is shown once')
  for (const block of shown) {
    if (block.label === undefined) {
      t.equal(block.lang, 'sh', `an unlabelled block is a shell command, not code: ${block.code.slice(0, 60)}`)
      continue
    }
    t.equal(block.code, readFileSync(appDir + block.label, 'utf8'), `${block.label} as in the file`)
  }
})

t.test('Should name every required peer dependency in the install line', async t => {
  const install = shown.find(b => b.lang === 'sh' && b.code.startsWith('npm install fastify-grpc-ws '))
  t.ok(install, 'an `npm install fastify-grpc-ws ...` line')
  const words = install?.code.split(/\s+/) ?? []
  // Optional peers (redis, for the Redis topic bus; @connectrpc/connect and @bufbuild/protobuf, for
  // fastify-grpc-ws/connect and the HTTP routes' JSON) are installed by the apps that use them.
  for (const name of Object.keys(pkg.peerDependencies)) if (pkg.peerDependenciesMeta?.[name]?.optional !== true) t.ok(words.includes(name), name)
})

t.test('Should keep echo.json the descriptor of echo.proto', async t => {
  const descriptor = protobuf.loadSync(`${appDir}echo.proto`).toJSON()
  t.same(JSON.parse(readFileSync(`${appDir}echo.json`, 'utf8')), descriptor)
})
