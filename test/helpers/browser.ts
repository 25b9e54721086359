/**
 * Real-browser tests: Debian's Chromium, headless, driven by playwright-core
 * with a fresh profile each time, and pages bundled in memory by esbuild.
 */
import { build, type Plugin } from 'esbuild'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { Test } from 'tap'
import { bounded } from './bounded.js'

export const CHROMIUM = '/usr/bin/chromium'
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']

/** Fails (never skips) when Chromium is missing: the browser tests are the point. */
export function requireChromium (path = CHROMIUM): void {
  if (!existsSync(path)) {
    throw new Error(`Chromium is not installed at ${path}. Install it with: apt-get update && apt-get install -y chromium`)
  }
}

/** A headless Chromium with a new temporary user-data dir, closed and removed at teardown. */
export async function launchBrowser (t: Test, viewport = { width: 1280, height: 800 }): Promise<BrowserContext> {
  requireChromium()
  const userDataDir = await mkdtemp(join(tmpdir(), 'fastify-grpc-ws-chromium-'))
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    timeout: 30_000
  })
  context.setDefaultTimeout(10_000)
  t.teardown(async () => {
    await context.close()
    await rm(userDataDir, { recursive: true, force: true })
  })
  return context
}

/** Collects what a page throws or logs as an error, to assert there was none. */
export function pageErrors (page: Page): string[] {
  const errors: string[] = []
  page.on('pageerror', err => errors.push(`uncaught: ${err.message}`))
  page.on('console', message => { if (message.type() === 'error') errors.push(`console: ${message.text()}`) })
  return errors
}

/** Bundles a page script for browsers, in memory. `modules` are virtual modules: name → source. */
export async function bundle (entry: string, modules: Record<string, string> = {}): Promise<string> {
  const virtual: Plugin = {
    name: 'virtual',
    setup (b) {
      const names = Object.keys(modules)
      if (names.length === 0) return
      const filter = new RegExp(`^(${names.map(n => n.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|')})$`)
      b.onResolve({ filter }, args => ({ path: args.path, namespace: 'virtual' }))
      b.onLoad({ filter: /.*/, namespace: 'virtual' }, args => ({ contents: modules[args.path], loader: 'js' }))
    }
  }
  const result = await build({ entryPoints: [entry], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, plugins: [virtual], logLevel: 'silent' })
  return result.outputFiles[0]!.text
}

/** `promise`, or a failure naming `what` after `ms`: every wait in a browser test is bounded. */
export async function within<T> (promise: Promise<T>, ms: number, what: string): Promise<T> {
  return await bounded(what, promise, ms)
}
