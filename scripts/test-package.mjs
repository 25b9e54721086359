#!/usr/bin/env node
/**
 * npm run test:package: the package as an app gets it. Packs the tarball,
 * installs it into two fresh apps in the OS temp folder, one with the lowest
 * and one with the highest versions the peer ranges admit, and in each:
 * type-checks the README's app files (examples/app) and the call checks
 * (test/packaging/calls.ts) under nodenext and under bundler, strict, with
 * skipLibCheck false; runs the calls (unary, streams, deadline, cancel, a
 * throwing handler) over WebSocket and HTTP/2; runs the README's server and
 * client. Needs the npm registry, so it is not part of `npm test`.
 * Prints TAP-style lines and a closing "N passed, N failed".
 * KEEP_TMP=1 keeps the temporary apps.
 */
import { execFile, spawn } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const own = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const typescriptVersion = JSON.parse(readFileSync(join(root, 'node_modules/typescript/package.json'), 'utf8')).version

// The lowest version of each peer range, tested; the highest is what npm
// picks for the range itself.
const lowest = { fastify: '5.0.0', '@grpc/grpc-js': '1.14.0', '@fastify/websocket': '11.0.0' }
const peers = Object.keys(lowest)
for (const name of peers) {
  if (own.peerDependencies?.[name] === undefined) throw new Error(`${name} is not a peer dependency: update scripts/test-package.mjs`)
}
const profiles = [
  { name: 'lowest', versions: lowest },
  { name: 'highest', versions: Object.fromEntries(peers.map(name => [name, own.peerDependencies[name]])) }
]

let passed = 0
let failed = 0
let n = 0
function check (ok, name, detail) {
  n++
  if (ok) passed++
  else failed++
  console.log(`${ok ? 'ok' : 'not ok'} ${n} - ${name}`)
  if (!ok && detail) console.log(String(detail).trim().split('\n').slice(0, 40).map(line => `  # ${line}`).join('\n'))
  return ok
}

/** Runs a command, bounded in time; resolves with its exit code and output. */
function run (command, args, { cwd, env, timeoutMs = 120_000 } = {}) {
  return new Promise(resolve => {
    execFile(command, args, { cwd, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : (typeof err.code === 'number' ? err.code : 1), stdout, stderr, timedOut: err?.killed === true })
    })
  })
}

const seconds = since => ((Date.now() - since) / 1000).toFixed(1)
const started = Date.now()
const tmp = mkdtempSync(join(tmpdir(), 'fastify-grpc-ws-package-'))
const timings = []

try {
  // --- the tarball ---
  let t0 = Date.now()
  const packed = await run('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: root, timeoutMs: 180_000 })
  timings.push(`pack ${seconds(t0)} s`)
  if (!check(packed.code === 0, 'npm pack (builds through prepare)', packed.stderr)) throw new Error('cannot go on without the tarball')
  const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('[')))[0]
  const tarball = join(tmp, info.filename)
  const files = info.files.map(file => file.path)
  check(files.includes('LICENSE'), 'the tarball has LICENSE')
  check(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/lib/client/web/index.d.ts'), 'the tarball has the build and its declarations')
  const maps = files.filter(file => file.endsWith('.map'))
  check(maps.length === 0, 'the tarball has no source maps (its sources are not shipped)', maps.join('\n'))
  const strays = files.filter(file => !/^(dist\/.*\.(js|d\.ts)|package\.json|README\.md|PROTOCOL\.md|LICENSE)$/.test(file))
  check(strays.length === 0, 'the tarball has nothing else (no sources, tests or examples)', strays.join('\n'))

  for (const profile of profiles) {
    const app = join(tmp, profile.name)
    cpSync(join(root, 'examples/app'), app, { recursive: true })
    cpSync(join(root, 'test/packaging/calls.ts'), join(app, 'calls.ts'))
    cpSync(join(root, 'test/packaging/connect.ts'), join(app, 'connect.ts'))
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: `app-${profile.name}`, private: true, type: 'module' }, null, 2))

    // --- install, as the README says, with this profile's peer versions ---
    t0 = Date.now()
    const installArgs = [
      'install', '--no-audit', '--no-fund', tarball,
      ...peers.map(name => `${name}@${profile.versions[name]}`),
      // protobufjs is the app's codec, not a peer: the major the README names.
      '@grpc/proto-loader', 'protobufjs@^8', 'ws', `typescript@${typescriptVersion}`, '@types/node@^20',
      // The optional peers of fastify-grpc-ws/connect, as a Connect app has them.
      `@connectrpc/connect@${own.peerDependencies['@connectrpc/connect']}`, `@bufbuild/protobuf@${own.peerDependencies['@bufbuild/protobuf']}`
    ]
    const installed = await run('npm', installArgs, { cwd: app, timeoutMs: 240_000 })
    timings.push(`${profile.name}: install ${seconds(t0)} s`)
    if (!check(installed.code === 0, `${profile.name}: npm ${installArgs.join(' ').replace(tarball, '<tarball>')}`, installed.stderr)) continue
    const version = name => JSON.parse(readFileSync(join(app, 'node_modules', name, 'package.json'), 'utf8')).version
    const versions = Object.fromEntries([...peers, 'typescript', 'protobufjs', '@grpc/proto-loader'].map(name => [name, version(name)]))
    console.log(`# ${profile.name}: ${Object.entries(versions).map(([k, v]) => `${k}@${v}`).join(' ')} on node ${process.version}`)
    if (profile.name === 'lowest') {
      check(peers.every(name => versions[name] === lowest[name]), `${profile.name}: got exactly the lowest peer versions`, JSON.stringify(versions))
    }
    const badEngine = (installed.stdout + installed.stderr).split('\n').filter(line => line.includes('EBADENGINE'))
    console.log(`# ${profile.name}: npm's EBADENGINE warnings: ${badEngine.length === 0 ? 'none' : ''}`)
    for (const line of badEngine) console.log(`#   ${line.trim()}`)

    // One copy of each peer: the app's (finding: two fastify, two grpc-js).
    const nested = peers.filter(name => existsSync(join(app, 'node_modules/fastify-grpc-ws/node_modules', name)))
    check(nested.length === 0, `${profile.name}: no second copy of the peers inside the package`, nested.join(', '))
    const ls = await run('npm', ['ls', '--all'], { cwd: app, timeoutMs: 60_000 })
    check(ls.code === 0, `${profile.name}: npm ls finds no missing or invalid (peer) dependency`, ls.stderr + ls.stdout.split('\n').filter(line => /invalid|missing|UNMET/.test(line)).join('\n'))

    // --- types, under both resolutions, strict, skipLibCheck false ---
    const tsc = join(app, 'node_modules/typescript/bin/tsc')
    const sources = readdirSync(app).filter(file => file.endsWith('.ts')).sort()
    // Both resolutions at once (one process each); nodenext emits the .js.
    t0 = Date.now()
    const resolutions = [['nodenext', 'tsconfig.json'], ['bundler', 'tsconfig.bundler.json']]
    const results = await Promise.all(resolutions.map(([, config]) => run(process.execPath, [tsc, '-p', config], { cwd: app, timeoutMs: 240_000 })))
    timings.push(`${profile.name}: tsc (both) ${seconds(t0)} s`)
    resolutions.forEach(([resolution], i) => {
      const typed = results[i]
      const diagnostics = typed.stdout.split('\n').filter(line => line.trim() !== '')
      // Each app file on its own line, so a failure names the file; errors in
      // the package's or another package's declarations count apart.
      const elsewhere = diagnostics.filter(line => /error TS/.test(line) && !sources.some(file => line.startsWith(`${file}(`)))
      check(elsewhere.length === 0 && (typed.code === 0 || diagnostics.length > 0), `${profile.name}: ${resolution}: declarations check (skipLibCheck false)`, elsewhere.join('\n') || typed.stderr || (typed.timedOut ? '(timed out)' : ''))
      for (const file of sources) {
        const own = diagnostics.filter(line => line.startsWith(`${file}(`))
        check(own.length === 0, `${profile.name}: ${resolution}: ${file} type-checks`, own.join('\n'))
      }
    })

    // --- calls both ways (tsc emitted the .js beside the .ts) ---
    t0 = Date.now()
    const calls = await run(process.execPath, ['calls.js'], { cwd: app, timeoutMs: 90_000 })
    timings.push(`${profile.name}: calls ${seconds(t0)} s`)
    const lines = calls.stdout.split('\n').filter(line => /^(not )?ok \d+ - /.test(line))
    for (const line of lines) check(line.startsWith('ok'), `${profile.name}: ${line.replace(/^(not )?ok \d+ - /, '')}`, calls.stdout.split('\n').slice(calls.stdout.split('\n').indexOf(line) + 1).filter(l => l.startsWith('  #')).slice(0, 1).join('\n'))
    check(calls.code === 0 && lines.length > 0, `${profile.name}: the call checks ran to their end`, calls.stderr + (calls.timedOut ? '\n(timed out)' : ''))

    // --- the README's server and Node client ---
    t0 = Date.now()
    const readme = await readmeApp(app)
    timings.push(`${profile.name}: README app ${seconds(t0)} s`)
    check(readme.ok, `${profile.name}: the README's server answers the README's client over WebSocket and HTTP/2`, readme.detail)
  }
} catch (err) {
  check(false, 'the packaging test ran to its end', err instanceof Error ? err.stack : String(err))
} finally {
  if (process.env.KEEP_TMP === '1') console.log(`# kept ${tmp}`)
  else rmSync(tmp, { recursive: true, force: true })
}

/** Starts server.js on free ports, runs client.js against it. */
async function readmeApp (app) {
  const server = spawn(process.execPath, ['server.js'], { cwd: app, env: { ...process.env, PORT: '0', GRPC_PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  try {
    const ports = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => { reject(new Error('the server did not log both addresses within 30 s')) }, 30_000)
      const found = {}
      server.stdout.on('data', chunk => {
        log += chunk
        found.ws ??= /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(log)?.[1]
        found.grpc ??= /gRPC \(HTTP\/2\) listening at 127\.0\.0\.1:(\d+)/.exec(log)?.[1]
        if (found.ws !== undefined && found.grpc !== undefined) { clearTimeout(timer); resolve(found) }
      })
      server.stderr.on('data', chunk => { log += chunk })
      server.on('exit', code => { clearTimeout(timer); reject(new Error(`the server exited with ${code}`)) })
    })
    const client = await run(process.execPath, ['client.js'], {
      cwd: app,
      env: { GRPC_WS_URL: `ws://127.0.0.1:${ports.ws}/grpc`, GRPC_ADDRESS: `127.0.0.1:${ports.grpc}` },
      timeoutMs: 30_000
    })
    const expected = 'websocket: hi\nhttp/2: hi\n'
    return { ok: client.code === 0 && client.stdout === expected, detail: `expected ${JSON.stringify(expected)}, got ${JSON.stringify(client.stdout)}\n${client.stderr}` }
  } catch (err) {
    return { ok: false, detail: `${err.message}\n${log}` }
  } finally {
    server.kill('SIGKILL')
  }
}

console.log(`1..${n}`)
console.log(`# ${timings.join('; ')}; total ${seconds(started)} s`)
console.log(`${passed} passed, ${failed} failed`)
process.exitCode = failed === 0 ? 0 : 1
