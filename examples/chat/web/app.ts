/**
 * The chat page. Plain TypeScript over a Connect client
 * (`@connectrpc/connect`) on `fastify-grpc-ws/connect`, typed by the
 * protobuf-es code generated from chat.proto (./gen, `npm run generate:chat`):
 * one WebSocket carries the session (bidi), the room's presence (server
 * streaming), history (unary) and uploads (client streaming).
 */
import type { MessageInitShape } from '@bufbuild/protobuf'
import { Code, ConnectError, createClient } from '@connectrpc/connect'
import type { ConnectionState } from 'fastify-grpc-ws/client'
import { createWebSocketTransport } from 'fastify-grpc-ws/connect'
import { Chat, type Attachment, type ChatMessage, type ClientEventSchema, type Member, type Room, type ServerEvent, type UploadChunkSchema } from './gen/chat_pb.js'

// A path: the socket goes to this page's own host, ws: or wss: as the page.
const transport = createWebSocketTransport({ baseUrl: '/grpc' })
const client = transport.client
const chat = createClient(Chat, transport)

type ClientEvent = MessageInitShape<typeof ClientEventSchema>

/**
 * The session's requests: Connect takes them as an async iterable, the page
 * pushes them as the user acts. The transport pulls each one when the
 * server's credit allows.
 */
class Outbox implements AsyncIterable<ClientEvent> {
  /** Per room joined on this session, the message its catch-up starts after. */
  readonly catchUpFrom = new Map<string, string>()
  private readonly queue: ClientEvent[] = []
  private wake: (() => void) | null = null
  private closed = false

  push (event: ClientEvent): void {
    this.queue.push(event)
    this.wake?.()
  }

  close (): void {
    this.closed = true
    this.wake?.()
  }

  async * [Symbol.asyncIterator] (): AsyncGenerator<ClientEvent> {
    for (;;) {
      const event = this.queue.shift()
      if (event !== undefined) yield event
      else if (this.closed) return
      else await new Promise<void>(resolve => { this.wake = resolve })
      this.wake = null
    }
  }
}

const MAX_UPLOAD = 8 * 1024 * 1024
const CHUNK = 64 * 1024

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T
const el = <K extends keyof HTMLElementTagNameMap>(tag: K, className = '', text = ''): HTMLElementTagNameMap[K] => {
  const node = document.createElement(tag)
  if (className !== '') node.className = className
  if (text !== '') node.textContent = text
  return node
}
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

// --- state ---------------------------------------------------------------------

let me = ''
let current = 'general'
let rooms: Room[] = []
const joined = new Set(['general'])
const messages = new Map<string, ChatMessage[]>()
const seen = new Set<string>()
const unread = new Map<string, number>()
let session: Outbox | null = null
/** Per room, where a catch-up not yet done starts: the next one starts there too, not after a message seen since. */
const unfinished = new Map<string, string>()
let presenceStop: AbortController | null = null
let lastTypingSent = 0

function send (event: ClientEvent): boolean {
  if (session === null) {
    toast('Not connected yet: try again in a moment')
    return false
  }
  session.push(event)
  return true
}

/**
 * Joins `room` on `outbox`, noting the last message seen first: the server
 * may send new messages before "joined", and the catch-up must start before
 * them, or it skips those posted while the page was away.
 */
function joinOn (outbox: Outbox, room: string): void {
  const from = unfinished.get(room) ?? messages.get(room)?.at(-1)?.id ?? ''
  unfinished.set(room, from)
  outbox.catchUpFrom.set(room, from)
  outbox.push({ event: { case: 'join', value: room } })
}

// --- the session: a bidi call, reopened whenever it ends ------------------------
// When the server shuts down (GOAWAY) or the socket drops, the next session
// goes out on a new connection, maybe to another instance; each room then
// catches up from history after the last message seen before it rejoined
// (until a catch-up succeeds), so nothing is lost.

async function runSession (): Promise<void> {
  for (;;) {
    const outbox = new Outbox()
    session = outbox
    outbox.push({ event: { case: 'hello', value: { name: me } } })
    for (const room of joined) joinOn(outbox, room)
    try {
      for await (const event of chat.connect(outbox)) onServerEvent(outbox, event)
    } catch (err) {
      // Unavailable is the socket going away: the client reconnects (with
      // backoff) for the next call, which is the one right below.
      if (!(err instanceof ConnectError && err.code === Code.Unavailable)) toast(describe(err))
    }
    outbox.close()
    session = null
    await sleep(300)
  }
}

function onServerEvent (outbox: Outbox, event: ServerEvent): void {
  if (event.event.case === 'rooms') {
    rooms = event.event.value.rooms
    renderRooms()
  } else if (event.event.case === 'joined') {
    // Live from now on: fill in what came before (or while disconnected).
    const room = event.event.value
    void catchUp(outbox, room)
    if (room === current) void watchPresence(room)
  } else if (event.event.case === 'message') {
    const message = event.event.value
    if (addMessages(message.room, [message]) === 0) return
    if (message.room === current) {
      renderMessages()
    } else {
      unread.set(message.room, (unread.get(message.room) ?? 0) + 1)
      renderRooms()
    }
  }
}

/**
 * History (unary): the latest messages of a room, or those after the last one
 * seen before joining. A call that fails on the way (the page moving to
 * another instance, a slow store) is made again while the session lasts; the
 * next session's catch-up starts from the same message.
 */
async function catchUp (outbox: Outbox, room: string): Promise<void> {
  const sinceId = outbox.catchUpFrom.get(room) ?? ''
  for (let attempt = 1; ; attempt++) {
    try {
      const { messages: history } = await chat.history({ room, limit: sinceId === '' ? 100 : 200, sinceId }, { timeoutMs: 10_000 })
      if (unfinished.get(room) === sinceId) unfinished.delete(room)
      const added = addMessages(room, history)
      if (added === 0) return
      if (room === current) renderMessages()
      else if (sinceId !== '') {
        unread.set(room, (unread.get(room) ?? 0) + added)
        renderRooms()
      }
      return
    } catch (err) {
      if (!(err instanceof ConnectError && (err.code === Code.Unavailable || err.code === Code.DeadlineExceeded))) {
        toast(describe(err))
        return
      }
    }
    // Again shortly; once this session has ended, the next one's catch-up takes over.
    await sleep(Math.min(5000, 500 * attempt))
    if (session !== outbox) return
  }
}

/** The room's Presence stream (server streaming), until the room changes or the session ends. */
async function watchPresence (room: string): Promise<void> {
  presenceStop?.abort()
  const stop = new AbortController()
  presenceStop = stop
  try {
    for await (const update of chat.presence({ room }, { signal: stop.signal })) {
      if (room === current) renderPeople(update.members)
    }
  } catch (err) {
    if (!stop.signal.aborted && !(err instanceof ConnectError && err.code === Code.Unavailable)) toast(describe(err))
  }
}

/** Adds the messages not seen yet; returns how many. */
function addMessages (room: string, incoming: ChatMessage[]): number {
  const list = messages.get(room) ?? []
  let added = 0
  for (const message of incoming) {
    if (seen.has(message.id)) continue
    seen.add(message.id)
    list.push(message)
    added++
  }
  list.sort((a, b) => a.sentAt - b.sentAt)
  messages.set(room, list)
  return added
}

function selectRoom (room: string): void {
  current = room
  unread.delete(room)
  const fresh = !joined.has(room)
  if (fresh) {
    joined.add(room)
    // Not connected: the next session joins it.
    if (session !== null) joinOn(session, room)
  }
  $('room-name').textContent = room
  $<HTMLInputElement>('text').placeholder = `Message #${room}`
  renderRooms()
  renderMessages(true)
  renderPeople([])
  // A room joined before is live already; a new one starts with "joined".
  if (!fresh) void watchPresence(room)
  $<HTMLInputElement>('text').focus()
}

// --- sending ------------------------------------------------------------------------

function post (): void {
  const input = $<HTMLInputElement>('text')
  const text = input.value.trim()
  if (text === '') return
  if (!send({ event: { case: 'post', value: { room: current, text } } })) return
  input.value = ''
  // Posting ends "typing" on the server: the next keystroke may say it again.
  lastTypingSent = 0
}

function typing (): void {
  if ($<HTMLInputElement>('text').value.trim() === '' || Date.now() - lastTypingSent < 2500 || session === null) return
  lastTypingSent = Date.now()
  send({ event: { case: 'typing', value: current } })
}

async function upload (file: File): Promise<void> {
  if (file.size > MAX_UPLOAD) {
    toast(`${file.name} is larger than 8 MB`)
    return
  }
  const box = $('upload')
  const progress = $<HTMLProgressElement>('upload-progress')
  $('upload-name').textContent = `Uploading ${file.name}`
  progress.value = 0
  box.hidden = false
  // The file goes in 64 KiB chunks, each when the server's credit allows.
  async function * chunks (): AsyncGenerator<MessageInitShape<typeof UploadChunkSchema>> {
    const reader = file.stream().getReader()
    let first = true
    let sent = 0
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      for (let at = 0; at < value.byteLength; at += CHUNK) {
        const data = value.subarray(at, at + CHUNK)
        yield first ? { name: file.name, mimeType: file.type, data } : { data }
        first = false
        sent += data.byteLength
        progress.value = sent / Math.max(1, file.size)
      }
    }
  }
  try {
    const attachment: Attachment = await chat.upload(chunks(), { timeoutMs: 120_000 })
    const input = $<HTMLInputElement>('text')
    if (send({ event: { case: 'post', value: { room: current, text: input.value.trim(), attachment } } })) input.value = ''
  } catch (err) {
    toast(describe(err))
  } finally {
    box.hidden = true
  }
}

// --- rendering ----------------------------------------------------------------------

function initials (name: string): string {
  return name.split(/\s+/).filter(Boolean).slice(0, 2).map(w => [...w][0]!.toUpperCase()).join('')
}

function avatar (name: string, bot: boolean): HTMLElement {
  const node = el('div', bot ? 'avatar bot' : 'avatar', bot ? '' : initials(name))
  let hash = 0
  for (const c of name) hash = (hash * 31 + c.codePointAt(0)!) >>> 0
  node.style.setProperty('--hue', String(hash % 360))
  if (bot) node.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><rect x="4" y="7" width="16" height="12" rx="4"/><circle cx="9.5" cy="13" r="1.6"/><circle cx="14.5" cy="13" r="1.6"/><path d="M12 3v4"/></svg>'
  return node
}

function time (ms: number): string {
  return new Date(ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
}

function textWithMentions (text: string): HTMLElement {
  const node = el('div', 'text')
  for (const part of text.split(/(@[\w-]+)/)) {
    if (part === '') continue
    node.append(part.startsWith('@') ? el('span', 'mention', part) : document.createTextNode(part))
  }
  return node
}

function attachmentView (attachment: Attachment, list: HTMLElement): HTMLElement {
  if (attachment.mimeType.startsWith('image/')) {
    const link = el('a', 'image')
    link.href = attachment.url
    link.target = '_blank'
    const img = el('img')
    img.src = attachment.url
    img.alt = attachment.name
    // Keep the view at the bottom once the picture has its height.
    img.addEventListener('load', () => { if (nearBottom(list, 400)) list.scrollTop = list.scrollHeight })
    link.append(img)
    return link
  }
  const link = el('a', 'file')
  link.href = attachment.url
  link.download = attachment.name
  link.append(el('b', '', attachment.name), el('span', '', `${Math.max(1, Math.round(attachment.size / 1024))} KB`))
  return link
}

function nearBottom (list: HTMLElement, slack = 120): boolean {
  return list.scrollHeight - list.scrollTop - list.clientHeight < slack
}

function renderMessages (jump = false): void {
  const list = $('messages')
  const stick = jump || nearBottom(list)
  list.replaceChildren()
  const roomMessages = messages.get(current) ?? []
  if (roomMessages.length === 0) list.append(el('div', 'empty', `This is the start of #${current}.`))
  let previous: ChatMessage | undefined
  for (const message of roomMessages) {
    if (message.system) {
      list.append(el('div', 'system', message.text))
      previous = undefined
      continue
    }
    // Messages from one author close together form one group.
    const grouped = previous !== undefined && previous.author === message.author && message.sentAt - previous.sentAt < 5 * 60_000
    const row = el('div', `msg${grouped ? ' grouped' : ''}${message.author === me ? ' own' : ''}`)
    row.dataset.author = message.author
    if (grouped) {
      row.append(el('time', 'side-time', time(message.sentAt)))
    } else {
      row.append(avatar(message.author, message.bot))
    }
    const body = el('div', 'body')
    if (!grouped) {
      const meta = el('div', 'meta')
      meta.append(el('strong', '', message.author))
      if (message.bot) meta.append(el('span', 'badge', 'bot'))
      meta.append(el('time', '', time(message.sentAt)))
      body.append(meta)
    }
    if (message.text !== '') body.append(textWithMentions(message.text))
    if (message.attachment !== undefined) body.append(attachmentView(message.attachment, list))
    row.append(body)
    list.append(row)
    previous = message
  }
  if (stick) list.scrollTop = list.scrollHeight
}

function renderRooms (): void {
  const nav = $('rooms')
  nav.replaceChildren()
  const names = new Set([...rooms.map(r => r.name), ...joined])
  for (const name of names) {
    const room = rooms.find(r => r.name === name)
    const button = el('button', name === current ? 'room active' : 'room')
    button.type = 'button'
    button.append(el('span', 'hash', '#'), el('span', 'name', name))
    const count = unread.get(name) ?? 0
    if (count > 0) button.append(el('span', 'unread', String(count)))
    else if (room !== undefined && room.members > 0) button.append(el('span', 'members', String(room.members)))
    button.addEventListener('click', () => { selectRoom(name) })
    nav.append(button)
  }
  $('room-topic').textContent = rooms.find(r => r.name === current)?.topic ?? ''
  const total = [...unread.values()].reduce((a, b) => a + b, 0)
  document.title = total > 0 ? `(${total}) grpc-ws chat` : 'grpc-ws chat'
}

function renderPeople (members: Member[]): void {
  const list = $('people')
  list.replaceChildren()
  for (const member of members) {
    const item = el('li', member.typing ? 'person is-typing' : 'person')
    item.append(avatar(member.name, member.bot))
    const label = el('div', 'who')
    const name = el('span', 'name', member.name)
    if (member.name === me) name.append(el('span', 'you', ' (you)'))
    label.append(name, el('small', '', member.typing ? 'typing…' : member.bot ? 'native gRPC, HTTP/2' : 'online'))
    item.append(label)
    if (member.bot) item.append(el('span', 'badge', 'bot'))
    list.append(item)
  }
  $('people-count').textContent = members.length > 0 ? String(members.length) : ''
  const typists = members.filter(m => m.typing && m.name !== me).map(m => m.name)
  const line = $('typing')
  line.replaceChildren()
  if (typists.length > 0) {
    const who = typists.length === 1 ? `${typists[0]!} is typing` : typists.length === 2 ? `${typists[0]!} and ${typists[1]!} are typing` : 'Several people are typing'
    const dots = el('span', 'dots')
    dots.append(el('i'), el('i'), el('i'))
    line.append(dots, el('span', '', who))
  }
}

const stateText: Record<ConnectionState, string> = { idle: 'Offline', connecting: 'Connecting…', ready: 'Connected', closed: 'Closed' }
function renderState (state: ConnectionState): void {
  $('status').dataset.state = state
  $('status-text').textContent = stateText[state]
}

let toastTimer: ReturnType<typeof setTimeout> | undefined
function toast (text: string): void {
  const node = $('toast')
  node.textContent = text
  node.hidden = false
  clearTimeout(toastTimer)
  toastTimer = setTimeout(() => { node.hidden = true }, 4000)
}

function describe (err: unknown): string {
  return err instanceof ConnectError ? `${err.rawMessage} (${Code[err.code]})` : String(err)
}

// --- wiring ----------------------------------------------------------------------------

function join (name: string): void {
  me = name
  localStorage.setItem('chat-name', name)
  $('join').hidden = true
  $('me-name').textContent = name
  $('me-avatar').replaceWith(Object.assign(avatar(name, false), { id: 'me-avatar' }))
  renderRooms()
  renderMessages(true)
  void runSession()
  $<HTMLInputElement>('text').focus()
}

client.onStateChange(renderState)
renderState(client.state)

$('join-form').addEventListener('submit', event => {
  event.preventDefault()
  const name = $<HTMLInputElement>('join-name').value.replace(/\s+/g, ' ').trim()
  if (name !== '') join(name)
})
$('composer').addEventListener('submit', event => {
  event.preventDefault()
  post()
})
$('text').addEventListener('input', typing)
$<HTMLInputElement>('file').addEventListener('change', () => {
  const input = $<HTMLInputElement>('file')
  const file = input.files?.[0]
  input.value = ''
  if (file !== undefined) void upload(file)
})
$('new-room').addEventListener('submit', event => {
  event.preventDefault()
  const input = $<HTMLInputElement>('new-room-name')
  const name = input.value.toLowerCase().trim().replace(/[\s_]+/g, '-').replace(/[^a-z0-9-]/g, '').slice(0, 20)
  input.value = ''
  if (name !== '') selectRoom(name)
})

const saved = localStorage.getItem('chat-name')
if (saved !== null && saved !== '') join(saved)
else $<HTMLInputElement>('join-name').focus()
