/**
 * The Chat service, written as plain grpc-js handlers: the plugin serves
 * them to browsers over WebSocket and the grpc-js Server to the bot over
 * HTTP/2, unchanged.
 */
import * as grpc from '@grpc/grpc-js'
import type { Subscription, Topics } from 'fastify-grpc-ws'
import { randomUUID } from 'node:crypto'
import { FileStore, MAX_FILE_BYTES, type StoredFile } from './files.js'
import type { ChatStore, Person } from './store.js'
import type { Attachment } from './types.js'

const MAX_TEXT = 2000

/** 1 to 24 printable characters, spaces collapsed; null if none is left. */
export function cleanName (name: unknown): string | null {
  const clean = String(name ?? '').replace(/[\p{Cc}\p{Cf}]/gu, '').replace(/\s+/g, ' ').trim().slice(0, 24)
  return clean === '' ? null : clean
}

/** Room names are slugs: lower-case letters, digits and dashes, up to 20. */
export function cleanRoom (room: unknown): string | null {
  const clean = String(room ?? '').toLowerCase().trim().replace(/[\s_]+/g, '-').replace(/[^a-z0-9-]/g, '').slice(0, 20)
  return clean === '' ? null : clean
}

function attachmentOf (file: StoredFile): Attachment {
  return { id: file.id, name: file.name, mimeType: file.mimeType, size: file.data.byteLength, url: `/files/${file.id}/${encodeURIComponent(file.name)}` }
}

function fail (call: grpc.ServerWritableStream<any, any> | grpc.ServerDuplexStream<any, any>, code: grpc.status, details: string): void {
  call.emit('error', { code, details })
}

/** Where a room's messages are published: every session in the room, on every instance, is subscribed. */
const roomTopic = (room: string): string => `chat:room:${room}`

export function createChatService (rooms: ChatStore, files: FileStore, topics: Topics, definition: grpc.ServiceDefinition): grpc.UntypedServiceImplementation {
  // A message is encoded once, as the ServerEvent every session receives.
  const encodeEvent = definition.Connect!.responseSerialize
  return {
    Connect (call: grpc.ServerDuplexStream<any, any>) {
      let person: Person | null = null
      let over = false
      const joined = new Map<string, Subscription>()
      const unsubscribe: Array<() => void> = []
      const end = (): void => {
        if (over) return
        over = true
        for (const stop of unsubscribe) stop()
        for (const [room, subscription] of joined) {
          subscription.unsubscribe()
          if (person !== null) void rooms.leave(person, room).catch(() => {})
        }
      }
      const send = (event: object): void => { if (!over) call.write(event) }

      const handle = async (event: any): Promise<void> => {
        if (over) return
        if (person === null) {
          if (event.event !== 'hello') {
            end()
            fail(call, grpc.status.FAILED_PRECONDITION, 'The first event of a session is hello')
            return
          }
          const name = cleanName(event.hello.name)
          if (name === null) {
            end()
            fail(call, grpc.status.INVALID_ARGUMENT, 'A name is 1 to 24 characters')
            return
          }
          person = { id: randomUUID(), name, bot: event.hello.bot === true }
          unsubscribe.push(rooms.onRooms(list => { send({ rooms: { rooms: list } }) }))
          send({ rooms: { rooms: await rooms.list() } })
          return
        }
        switch (event.event) {
          case 'join': {
            const room = cleanRoom(event.join)
            if (room === null || joined.has(room)) return
            // Subscribed before joining, so that nothing posted after "joined" is missed.
            const subscription = topics.subscribe(roomTopic(room), call)
            joined.set(room, subscription)
            await subscription.ready
            if (over) return
            if (!await rooms.join(person, room)) {
              subscription.unsubscribe()
              joined.delete(room)
              return
            }
            // The session ended while joining: end() left before this join was in.
            if (over) await rooms.leave(person, room)
            else send({ joined: room })
            return
          }
          case 'leave':
            if (!joined.has(event.leave)) return
            joined.get(event.leave)!.unsubscribe()
            joined.delete(event.leave)
            await rooms.leave(person, event.leave)
            return
          case 'typing':
            await rooms.typing(person, event.typing)
            return
          case 'post': {
            const text = String(event.post.text ?? '').trim().slice(0, MAX_TEXT)
            // Only files this server stored: a client cannot point others anywhere else.
            const file = typeof event.post.attachment?.id === 'string' ? files.get(event.post.attachment.id) : undefined
            if (text === '' && file === undefined) return
            const message = await rooms.post(person, event.post.room, text, file === undefined ? null : attachmentOf(file))
            if (message !== null) await topics.publishEncoded(roomTopic(message.room), encodeEvent({ message }))
          }
        }
      }
      // One event at a time, in order: a post waits for the join before it.
      let queue = Promise.resolve()
      call.on('data', (event: any) => {
        queue = queue.then(async () => { await handle(event) }).catch(() => {
          end()
          fail(call, grpc.status.UNAVAILABLE, 'The chat\'s store is unavailable')
        })
      })
      call.on('end', () => {
        void queue.then(() => {
          end()
          call.end()
        })
      })
      call.on('cancelled', end)
    },

    Presence (call: grpc.ServerWritableStream<any, any>) {
      const room = call.request.room as string
      let updated = false
      const stop = rooms.onPresence((changed, members) => {
        if (changed !== room) return
        updated = true
        call.write({ room, members })
      })
      call.on('cancelled', stop)
      rooms.has(room).then(async exists => {
        if (!exists) {
          stop()
          fail(call, grpc.status.NOT_FOUND, `No room named ${room}`)
          return
        }
        const members = await rooms.presence(room)
        // An update that came meanwhile is newer.
        if (!updated) call.write({ room, members })
      }).catch(() => {
        stop()
        fail(call, grpc.status.UNAVAILABLE, 'The chat\'s store is unavailable')
      })
    },

    History (call: grpc.ServerUnaryCall<any, any>, callback: grpc.sendUnaryData<any>) {
      const { room, limit, sinceId } = call.request
      rooms.has(room).then(async exists => {
        if (!exists) {
          callback({ code: grpc.status.NOT_FOUND, details: `No room named ${String(room)}` })
          return
        }
        callback(null, { messages: await rooms.history(room, Math.min(200, limit > 0 ? limit : 50), sinceId) })
      }).catch(() => { callback({ code: grpc.status.UNAVAILABLE, details: 'The chat\'s store is unavailable' }) })
    },

    Upload (call: grpc.ServerReadableStream<any, any>, callback: grpc.sendUnaryData<any>) {
      let name = ''
      let mimeType = ''
      let size = 0
      let refused = false
      const chunks: Buffer[] = []
      call.on('data', (chunk: { name: string, mimeType: string, data: Buffer }) => {
        if (refused) return
        if (chunks.length === 0) {
          name = chunk.name.replace(/[\p{Cc}/\\]/gu, '').trim().slice(0, 100) || 'file'
          mimeType = /^[\w.+-]+\/[\w.+-]+$/.test(chunk.mimeType) ? chunk.mimeType : 'application/octet-stream'
        }
        size += chunk.data.byteLength
        if (size > MAX_FILE_BYTES) {
          refused = true
          callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: `Files are limited to ${MAX_FILE_BYTES / 1024 / 1024} MB` })
          return
        }
        chunks.push(chunk.data)
      })
      call.on('end', () => {
        if (refused) return
        if (size === 0) {
          callback({ code: grpc.status.INVALID_ARGUMENT, details: 'The file is empty' })
          return
        }
        callback(null, attachmentOf(files.add(name, mimeType, Buffer.concat(chunks))))
      })
    }
  }
}

export { FileStore }
