// The chat page's protobuf-es code (examples/chat/web/gen) is generated from
// chat.proto by `npm run generate:chat` and committed: regenerated here
// (buf and protoc-gen-es from node_modules, no network), it must be the same.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))
const chat = path.join(root, 'examples/chat')
const bin = path.join(root, 'node_modules/.bin')

t.test('Should have the chat\'s generated code as buf generate makes it from chat.proto', async t => {
  const out = await mkdtemp(path.join(os.tmpdir(), 'chat-gen-'))
  t.teardown(async () => { await rm(out, { recursive: true, force: true }) })
  await new Promise<void>((resolve, reject) => {
    execFile(path.join(bin, 'buf'), ['generate', '--output', out], { cwd: chat, timeout: 60_000, env: { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` } }, (err, _stdout, stderr) => {
      err === null ? resolve() : reject(new Error(`buf generate failed: ${stderr}`))
    })
  })
  const generated = await readdir(path.join(out, 'web/gen'))
  t.same(generated, await readdir(path.join(chat, 'web/gen')), 'the same files')
  for (const file of generated) {
    const fresh = await readFile(path.join(out, 'web/gen', file), 'utf8')
    t.ok(fresh.includes('fileDesc('), `${file} is protobuf-es output`)
    t.equal(await readFile(path.join(chat, 'web/gen', file), 'utf8'), fresh, `${file} is fresh: run npm run generate:chat after changing chat.proto`)
  }
})
