/**
 * A backend bot: a stock @grpc/grpc-js client that reaches the chat over
 * native gRPC (HTTP/2), joins #general, welcomes newcomers it sees through
 * the Presence stream, and answers messages that mention @bot. The browsers
 * see it live, over their WebSocket.
 */
import * as grpc from '@grpc/grpc-js'
import type { ChatMessage, PresenceUpdate, Room, ServerEvent } from './types.js'

export const BOT_NAME = 'gRPC bot'
const ROOM = 'general'

/** What the bot answers to a message that mentions it. */
export function answer (author: string, text: string, rooms: Room[]): string {
  const said = text.replace(/@bot\b/gi, '').trim()
  const command = said.toLowerCase()
  if (command.startsWith('help')) {
    return 'Ask me for "time" or "stats". I reach this server over native gRPC on HTTP/2 with a stock @grpc/grpc-js client; your browser uses one WebSocket. Same handlers, two transports.'
  }
  if (command.startsWith('time')) return `It is ${new Date().toLocaleTimeString('en-GB')} on the server.`
  if (command.startsWith('stats')) {
    const people = rooms.reduce((n, room) => n + room.members, 0)
    return `${rooms.length} rooms, ${people} people in them (me included).`
  }
  return `Hi ${author}! “${said === '' ? '…' : said}” reached me over HTTP/2. Try “@bot help”.`
}

export interface Bot {
  stop: () => void
  /** In #general now: it hears every post made there from now on. */
  readonly ready: boolean
}

export interface BotOptions {
  /** Taking over from a bot that was on another instance: no introduction, and whoever is there already was welcomed. */
  takeover?: boolean
}

export function startBot (address: string, ChatClient: grpc.ServiceClientConstructor, { takeover = false }: BotOptions = {}): Bot {
  const client = new ChatClient(address, grpc.credentials.createInsecure())
  let stopped = false
  let session: grpc.ClientDuplexStream<any, ServerEvent> | null = null
  let presence: grpc.ClientReadableStream<PresenceUpdate> | null = null
  let rooms: Room[] = []
  const greeted = new Set<string>()
  let announced = takeover
  let seenPresence = false
  let ready = false

  const post = (text: string): void => {
    // A moment of "typing…" first, which the pages show through Presence.
    session?.write({ typing: ROOM })
    setTimeout(() => { session?.write({ post: { room: ROOM, text } }) }, 600)
  }

  const connect = (): void => {
    if (stopped) return
    const call: grpc.ClientDuplexStream<any, ServerEvent> = client.Connect()
    session = call
    ready = false
    call.write({ hello: { name: BOT_NAME, bot: true } })
    call.write({ join: ROOM })
    call.on('data', (event: ServerEvent) => {
      if (event.event === 'rooms') rooms = event.rooms!.rooms
      if (event.event === 'joined' && event.joined === ROOM) ready = true
      const message: ChatMessage | undefined = event.message
      if (message === undefined || message.bot || message.room !== ROOM) return
      if (/@bot\b/i.test(message.text)) post(answer(message.author, message.text, rooms))
    })
    call.on('error', () => {})
    call.on('status', () => {
      // The server went away (or restarted): come back when it does.
      if (!stopped) setTimeout(connect, 1000)
    })
    if (!announced) {
      announced = true
      post('I\'m a backend bot on native gRPC (HTTP/2). Mention @bot and I\'ll answer.')
    }
    watchPresence()
  }

  const watchPresence = (): void => {
    presence?.cancel()
    const stream: grpc.ClientReadableStream<PresenceUpdate> = client.Presence({ room: ROOM })
    presence = stream
    stream.on('data', (update: PresenceUpdate) => {
      const welcome = !takeover || seenPresence
      seenPresence = true
      for (const member of update.members) {
        if (!welcome) {
          greeted.add(member.name)
          continue
        }
        if (member.bot || greeted.has(member.name)) continue
        greeted.add(member.name)
        post(`Welcome, ${member.name}! Mention @bot to talk to me.`)
      }
    })
    stream.on('error', () => {})
  }

  connect()
  return {
    get ready () { return ready && !stopped },
    stop () {
      stopped = true
      presence?.cancel()
      session?.end()
      client.close()
    }
  }
}
