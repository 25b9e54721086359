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
declare module 'test-file-descriptors' {
  /** The FileDescriptorProtos of test.proto, base64, as @grpc/proto-loader serializes them. */
  const files: string[]
  export default files
}
