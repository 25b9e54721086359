// The chat demo (examples/chat, `npm start`) in Debian's Chromium: two
// browsers with their own profiles chat, the bot answers over native gRPC,
// a picture is uploaded, history comes back on reload. Takes a screenshot:
// with UPDATE_SCREENSHOTS=1 into docs/chat.png, the one the README shows;
// otherwise into the OS temp folder, so a test run leaves docs/ alone.
import { mkdir, readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Page } from 'playwright-core'
import t from 'tap'
import { BOT_NAME } from '../../examples/chat/bot.js'
import { startChat } from '../../examples/chat/server.js'
import { launchBrowser, pageErrors } from '../helpers/browser.js'

const screenshot = process.env.UPDATE_SCREENSHOTS === '1'
  ? fileURLToPath(new URL('../../docs/chat.png', import.meta.url))
  : path.join(os.tmpdir(), 'fastify-grpc-ws-chat.png')

// Registered before the browsers, so it runs after they have closed (tap
// runs teardowns last-in first-out).
const chat = await startChat({ port: 0, host: '127.0.0.1', grpcPort: 0 })
t.teardown(chat.close)

interface Person { page: Page, errors: string[] }

async function openAs (name: string): Promise<Person> {
  const context = await launchBrowser(t)
  const page = await context.newPage()
  const errors = pageErrors(page)
  await page.goto(chat.url)
  await page.fill('#join-name', name)
  await page.click('#join-form button')
  await page.waitForSelector('#status[data-state="ready"]')
  return { page, errors }
}

/** Texts of the messages on a page, as "author: text". */
async function messages (page: Page): Promise<string[]> {
  return await page.$$eval('.msg', rows => {
    let author = ''
    return rows.map(row => {
      author = row.querySelector('.meta strong')?.textContent ?? author
      return `${author}: ${row.querySelector('.text')?.textContent ?? ''}`
    })
  })
}

async function waitForMessage (page: Page, author: string, text: string): Promise<void> {
  await page.waitForFunction(([author, text]) => Array.from(document.querySelectorAll<HTMLElement>('.msg'))
    .some(row => row.dataset.author === author && (row.querySelector('.text')?.textContent ?? '').includes(text)), [author, text] as const)
}

async function post (page: Page, text: string): Promise<void> {
  await page.fill('#text', text)
  await page.press('#text', 'Enter')
}

const alice = await openAs('Alice')
const bob = await openAs('Bob')

t.test('Should show who is in #general through Presence, the bot included', async t => {
  await alice.page.waitForFunction(() => document.querySelectorAll('#people .person').length === 3)
  const people = await alice.page.$$eval('#people .person .name', names => names.map(n => n.textContent))
  t.same(people, ['Alice (you)', 'Bob', BOT_NAME], 'people first, then the bot')
  t.equal(await alice.page.textContent('#room-name'), 'general')
})

t.test('Should welcome each newcomer: the bot watches Presence over HTTP/2', async t => {
  await waitForMessage(alice.page, BOT_NAME, 'Welcome, Alice!')
  await waitForMessage(alice.page, BOT_NAME, 'Welcome, Bob!')
  t.pass('both welcomes arrived')
})

t.test('Should show Alice that Bob is typing', async t => {
  await bob.page.type('#text', 'Hi Al')
  await alice.page.waitForFunction(() => document.getElementById('typing')?.textContent === 'Bob is typing')
  t.equal(await alice.page.textContent('#people .person.is-typing .name'), 'Bob')
  await bob.page.fill('#text', '')
})

t.test('Should carry a message from Bob to Alice live over the bidi session', async t => {
  await post(bob.page, 'Hi Alice! Can you see this?')
  await waitForMessage(alice.page, 'Bob', 'Hi Alice! Can you see this?')
  t.pass('Alice saw it')
  await post(alice.page, 'Loud and clear. Let me ask the bot.')
  await waitForMessage(bob.page, 'Alice', 'Loud and clear.')
})

t.test('Should bring the bot\'s answer, posted over native gRPC, to both pages', async t => {
  await post(alice.page, '@bot hello')
  const answer = 'Hi Alice! “hello” reached me over HTTP/2.'
  await waitForMessage(alice.page, BOT_NAME, answer)
  await waitForMessage(bob.page, BOT_NAME, answer)
  t.ok((await alice.page.$$('.msg .badge')).length > 0, 'the bot\'s messages carry its badge')
})

t.test('Should upload a picture over client streaming and show it on the other page', async t => {
  // The picture: rendered by Chromium itself.
  const painter = await alice.page.context().newPage()
  await painter.setViewportSize({ width: 480, height: 270 })
  await painter.setContent(`<body style="margin:0;width:480px;height:270px;background:linear-gradient(160deg,#fcd34d 0%,#fb7185 45%,#6d28d9 100%);display:grid;place-items:end start">
    <svg width="480" height="120" viewBox="0 0 480 120"><path d="M0 90 Q80 40 160 80 T320 70 T480 60 V120 H0Z" fill="#1e1b4b" opacity=".85"/><circle cx="360" cy="40" r="26" fill="#fff7ed" opacity=".9"/></svg></body>`)
  const png = await painter.screenshot({ type: 'png' })
  await painter.close()
  await alice.page.fill('#text', 'Sunset from the balcony')
  await alice.page.setInputFiles('#file', { name: 'sunset.png', mimeType: 'image/png', buffer: png })
  await bob.page.waitForFunction(() => {
    const img = document.querySelector<HTMLImageElement>('.msg img[alt="sunset.png"]')
    return img !== null && img.complete && img.naturalWidth === 480
  })
  t.pass('Bob\'s page shows the 480 px picture, fetched from the app')
  await waitForMessage(bob.page, 'Alice', 'Sunset from the balcony')
  t.equal(await alice.page.inputValue('#text'), '', 'the caption went with the picture')
})

t.test('Should fill a reloaded page from History (unary)', async t => {
  await bob.page.reload()
  await bob.page.waitForSelector('#status[data-state="ready"]')
  await waitForMessage(bob.page, 'Bob', 'Hi Alice! Can you see this?')
  const texts = await messages(bob.page)
  for (const line of ['Bob: Hi Alice! Can you see this?', 'Alice: Loud and clear. Let me ask the bot.', 'Alice: @bot hello']) {
    t.ok(texts.includes(line), `history has "${line}"`)
  }
  t.equal(await bob.page.textContent('#me-name'), 'Bob', 'the name was remembered')
})

t.test('Should keep rooms apart and count unread messages', async t => {
  await bob.page.click('.room:has-text("random")')
  await bob.page.waitForFunction(() => document.getElementById('room-name')?.textContent === 'random')
  await post(alice.page, 'Bob, are you still there?')
  await bob.page.waitForFunction(() => document.querySelector('.room:has(.name) .unread')?.textContent === '1')
  t.notOk((await messages(bob.page)).some(line => line.includes('still there')), 'not shown in #random')
  await bob.page.click('.room:has-text("general")')
  await waitForMessage(bob.page, 'Alice', 'Bob, are you still there?')
  t.equal(await bob.page.$('.room .unread'), null, 'read once opened')
  await post(bob.page, 'Still here. Nice picture!')
  await waitForMessage(alice.page, 'Bob', 'Still here. Nice picture!')
})

t.test('Should look good: saves a screenshot of the page', async t => {
  await bob.page.type('#text', 'Is that the')
  await alice.page.waitForFunction(() => document.getElementById('typing')?.textContent === 'Bob is typing')
  await alice.page.waitForFunction(() => Array.from(document.images).every(img => img.complete))
  // No hover highlight from the last click.
  await alice.page.mouse.move(640, 20)
  await mkdir(path.dirname(screenshot), { recursive: true })
  await alice.page.screenshot({ path: screenshot })
  const png = await readFile(screenshot)
  t.same([...png.subarray(1, 4)], [0x50, 0x4e, 0x47], `a PNG at ${screenshot}`)
  const viewport = alice.page.viewportSize()
  t.same([png.readUInt32BE(16), png.readUInt32BE(20)], [viewport?.width, viewport?.height], 'of the whole viewport')
})

t.test('Should have thrown and logged no error in either page', async t => {
  t.same(alice.errors, [])
  t.same(bob.errors, [])
})
