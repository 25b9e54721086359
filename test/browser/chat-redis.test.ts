// The chat demo on two instances (separate processes) on one real
// redis-server, in Debian's Chromium: a page on each instance (two browser
// contexts) chat, the bot answers once; then an instance shuts down under a
// page that reached it through a load balancer (a TCP proxy): the page's new
// calls go to the other instance, and it shows every message, once,
// including those posted while it moved.
import type { Page } from 'playwright-core'
import t from 'tap'
import { BOT_NAME } from '../../examples/chat/bot.js'
import { launchBrowser, pageErrors } from '../helpers/browser.js'
import { startTcpProxy } from '../helpers/tcp-proxy.js'
import { Instance } from '../redis/instances.js'
import { assertRedisInstalled, RedisServer } from '../redis/redis-server.js'

// Fails (never skips) without redis-server, saying how to install it.
assertRedisInstalled()
const CHAT_INSTANCE = new URL('../redis/chat-instance.ts', import.meta.url).pathname

const redis = new RedisServer()
await redis.start()
const [a, b] = await Promise.all([Instance.start(redis.socket, CHAT_INSTANCE), Instance.start(redis.socket, CHAT_INSTANCE)])
// Registered before the browsers, so it runs after they have closed (teardowns run last-in first-out).
t.teardown(async () => {
  await Promise.allSettled([a.stop(), b.stop()])
  await redis.close()
})
const portOf = (url: string): number => Number(new URL(url).port)
// The load balancer in front of the instances: new connections go to A, until A leaves.
const balancer = await startTcpProxy(portOf(a.url))
t.teardown(balancer.close)

interface Person { page: Page, errors: string[] }

async function openAs (name: string, url: string): Promise<Person> {
  const context = await launchBrowser(t)
  const page = await context.newPage()
  const errors = pageErrors(page)
  await page.goto(url)
  await page.fill('#join-name', name)
  await page.click('#join-form button')
  await page.waitForSelector('#status[data-state="ready"]')
  return { page, errors }
}

/** How many messages of `author` on the page contain `text`. */
async function count (page: Page, author: string, text: string): Promise<number> {
  return await page.$$eval('.msg', (rows, [author, text]) => rows.filter(row => (row as HTMLElement).dataset.author === author &&
    (row.querySelector('.text')?.textContent ?? '').includes(text)).length, [author, text] as const)
}

async function waitForMessage (page: Page, author: string, text: string, timeout = 10_000): Promise<void> {
  await page.waitForFunction(([author, text]) => Array.from(document.querySelectorAll<HTMLElement>('.msg'))
    .some(row => row.dataset.author === author && (row.querySelector('.text')?.textContent ?? '').includes(text)), [author, text] as const, { timeout })
}

async function until (check: () => Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!await check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
}

async function post (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

const alice = await openAs('Alice', a.url)
const bob = await openAs('Bob', b.url)

t.test('Should show the same people on both instances, with one bot', async t => {
  for (const { page } of [alice, bob]) {
    await page.waitForFunction(() => document.querySelectorAll('#people .person').length === 3)
    const people = await page.$$eval('#people .person .name', names => names.map(n => n.textContent?.replace(' (you)', '')))
    t.same(people, ['Alice', 'Bob', BOT_NAME], 'Alice, Bob and one bot')
  }
})

t.test('Should carry posts between pages on different instances', async t => {
  await post(alice.page, 'Hi Bob, I am on instance A')
  await waitForMessage(bob.page, 'Alice', 'Hi Bob, I am on instance A')
  await post(bob.page, 'Hi Alice, B here')
  await waitForMessage(alice.page, 'Bob', 'Hi Alice, B here')
  t.pass('both ways')
})

t.test('Should get one answer from the bot, whichever instance runs it', async t => {
  await post(bob.page, '@bot time please')
  for (const { page } of [alice, bob]) await waitForMessage(page, BOT_NAME, 'on the server')
  // The bot answers 600 ms after a post: give a second bot time to show.
  await new Promise(resolve => setTimeout(resolve, 2000))
  t.equal(await count(alice.page, BOT_NAME, 'on the server'), 1, 'Alice sees one answer')
  t.equal(await count(bob.page, BOT_NAME, 'on the server'), 1, 'Bob sees one answer')
})

t.test('Should move a page to the other instance when its instance shuts down, and lose no message', async t => {
  const carol = await openAs('Carol', `http://127.0.0.1:${balancer.port}`)
  await waitForMessage(carol.page, 'Bob', 'Hi Alice, B here')
  // A leaves the balancer, then shuts down (GOAWAY, then its calls end after the grace period).
  balancer.retarget(portOf(b.url))
  const stopped = a.stop()
  for (let i = 0; i < 10; i++) {
    await post(bob.page, `while Carol moves ${i}`)
    await new Promise(resolve => setTimeout(resolve, 150))
  }
  await stopped
  for (let i = 0; i < 10; i++) await waitForMessage(carol.page, 'Bob', `while Carol moves ${i}`, 15_000)
  for (let i = 0; i < 10; i++) t.equal(await count(carol.page, 'Bob', `while Carol moves ${i}`), 1, `message ${i}: shown once`)
  await post(carol.page, 'Made it to B')
  await waitForMessage(bob.page, 'Carol', 'Made it to B')
  t.pass('Carol posts again, now through B')
  // If A ran the bot, it released its lease on the way out, and B's bot takes over.
  await until(async () => (await b.ask('bot')).ready === true, 10_000)
  await post(bob.page, '@bot time again')
  await waitForMessage(carol.page, BOT_NAME, 'on the server', 15_000)
  await new Promise(resolve => setTimeout(resolve, 2000))
  t.equal(await count(carol.page, BOT_NAME, 'on the server'), 2, 'one answer to each of the two questions (the bot is on B now)')
  t.same(carol.errors, [], 'no error on Carol\'s page')
})

t.test('Should have thrown and logged no error in Bob\'s page', async t => {
  t.same(bob.errors, [])
})
