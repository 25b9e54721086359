export { createWebSocketChannel, type WebSocketChannelOptions } from './channel.js'
