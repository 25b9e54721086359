// The Chat service descriptor (protobufjs JSON), put into the page's bundle
// by the server at startup (see bundlePage in ../server.ts).
declare module 'chat-descriptor' {
  const descriptor: import('protobufjs').INamespace
  export default descriptor
}
