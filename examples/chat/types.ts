/**
 * The chat's messages as plain objects (camelCase fields, as
 * @grpc/proto-loader gives them), shared by the server and the bot. The page
 * has its own types, generated from chat.proto (web/gen).
 */

export interface Attachment { id: string, name: string, mimeType: string, size: number, url: string }

export interface ChatMessage {
  id: string
  room: string
  author: string
  bot: boolean
  text: string
  /** ms since the epoch */
  sentAt: number
  attachment: Attachment | null
  system: boolean
}

export interface Room { name: string, topic: string, members: number }
export interface Member { name: string, bot: boolean, typing: boolean }

export type ClientEvent =
  | { hello: { name: string, bot?: boolean } }
  | { join: string }
  | { leave: string }
  | { post: { room: string, text: string, attachment?: Attachment | null } }
  | { typing: string }

/** `event` names the field that is set (the oneof). */
export interface ServerEvent {
  event?: 'rooms' | 'message' | 'joined'
  rooms?: { rooms: Room[] }
  message?: ChatMessage
  joined?: string
}

export interface PresenceUpdate { room: string, members: Member[] }
export interface HistoryRequest { room: string, limit?: number, sinceId?: string }
export interface HistoryResponse { messages: ChatMessage[] }
export interface UploadChunk { name?: string, mimeType?: string, data: Uint8Array }
