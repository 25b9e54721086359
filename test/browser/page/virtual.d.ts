// Modules the browser tests' esbuild build provides in memory.
declare module 'test-descriptor' {
  const descriptor: import('protobufjs').INamespace
  export default descriptor
}
declare module 'test-files' {
  const files: string[]
  export default files
}
declare module 'types-descriptor' {
  const descriptor: import('protobufjs').INamespace
  export default descriptor
}
