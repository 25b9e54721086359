/**
 * The server side, independent of Fastify: the handler registry shared by
 * both transports, the dispatcher, the open connections, and shutdown.
 * index.ts binds it to a Fastify route.
 */
import { Server, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js'
import type { IncomingMessage } from 'node:http'
import type { WebSocket } from 'ws'
import { ERR_ADD_SERVICE_TOO_LATE, ERR_DUPLICATE_METHOD, ERR_UPSTREAM_CONFLICT, ERR_UPSTREAM_DISCOVERY } from '../errors.js'
import { checkService, type ResolvedOptions } from '../options.js'
import { CloseCode } from '../protocol/frame.js'
import { serviceOfPath } from '../upstream-options.js'
import { ServerConnection, type ConnectionContext, type ConnectionLimits, type Logger } from './connection.js'
import { runCallBackends } from '../grpc-internals.js'
import { Dispatcher } from './dispatch.js'
import { Upstream } from './upstream/forward.js'
import { DiscoveryError } from './upstream/reflection.js'

/** What the server keeps of any kind of connection: grpc-ws.v1 or grpc-websockets. */
export interface ManagedConnection {
  /** Periodic keepalive and idle checks. */
  tick (now: number): void
  /** Stops taking calls; resolves once no call is left. */
  goAway (reason: string): Promise<void>
  /** Closes the socket; calls still running see 'cancelled'. */
  close (code: number, reason: string): void
}

const identity = (b: Buffer): Buffer => b
const silentLogger: Logger = { debug () {}, info () {}, warn () {}, child: () => silentLogger }

export class GrpcWsServer {
  /**
   * Holds the handlers for WebSocket calls and never listens. grpc-js's own
   * addService does the method lookup, so both transports find the same functions.
   */
  private readonly registry = new Server({ 'grpc.enable_channelz': 0 })
  readonly dispatcher: Dispatcher
  /** Open connections of both protocols. */
  readonly connections = new Set<ManagedConnection>()
  private readonly limits: ConnectionLimits
  private started = false
  /** Services served in-process, and the upstream of each forwarded one (see upstream/forward.ts). */
  private readonly inProcess = new Set<string>()
  private readonly forwarded = new Map<string, Upstream>()
  readonly upstreams: Upstream[]
  private ticker: ReturnType<typeof setInterval> | null = null

  /**
   * @param warn where a service registered without some of its methods is
   *   reported (the app's logger)
   * @param log where forwarded calls are logged, naming their upstream
   */
  constructor (private readonly options: ResolvedOptions, private readonly warn: (obj: object, msg: string) => void = () => {}, log: Logger = silentLogger) {
    this.dispatcher = new Dispatcher(this.registry, options.interceptors)
    this.limits = {
      maxConcurrentStreams: options.maxConcurrentStreams,
      initialWindowSize: options.initialWindowSize,
      maxFrameSize: options.maxFrameSize,
      maxMessageSize: options.maxReceiveMessageSize === -1 ? 0xffffffff : options.maxReceiveMessageSize,
      maxMetadataSize: options.maxMetadataSize,
      maxSendMessageSize: options.maxSendMessageSize,
      socketHighWaterMark: options.socketHighWaterMark,
      pingInterval: options.pingInterval,
      pingTimeout: options.pingTimeout,
      idleTimeout: options.idleTimeout,
      resetRateLimit: options.resetRateLimit === false ? null : options.resetRateLimit,
      errorRateLimit: options.errorRateLimit === false ? null : options.errorRateLimit
    }
    this.upstreams = options.upstreams.map(config => new Upstream(config, log, options.maxSendMessageSize))
    // Services named now are claimed before any in-process one is added.
    for (const upstream of this.upstreams) {
      for (const name of [...upstream.config.known.keys(), ...upstream.config.reflect]) this.claim(name, upstream)
    }
    for (const { definition, implementation } of options.services) this.addService(definition, implementation)
  }

  private claim (service: string, upstream: Upstream): void {
    const other = this.forwarded.get(service)
    if (other !== undefined && other !== upstream) throw new ERR_UPSTREAM_CONFLICT(service, `forwarded to both ${other.config.target} and ${upstream.config.target}`)
    if (this.inProcess.has(service)) throw new ERR_UPSTREAM_CONFLICT(service, `both served in-process and forwarded to ${upstream.config.target}`)
    this.forwarded.set(service, upstream)
  }

  addService (definition: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    if (this.started) throw new ERR_ADD_SERVICE_TOO_LATE()
    checkService({ definition, implementation })
    for (const method of Object.values(definition)) {
      const service = serviceOfPath(method.path)
      const upstream = service === null ? undefined : this.forwarded.get(service)
      if (upstream !== undefined) throw new ERR_UPSTREAM_CONFLICT(service!, `both served in-process and forwarded to ${upstream.config.target}`)
    }
    for (const method of Object.values(definition)) {
      if (this.dispatcher.lookup(method.path) !== undefined) throw new ERR_DUPLICATE_METHOD(method.path)
    }
    // grpc-js answers such methods UNIMPLEMENTED and says nothing; a typo in a
    // handler's name would only show when a call fails.
    const missing = Object.entries(definition)
      .filter(([name, method]) => typeof implementation[name] !== 'function' && typeof implementation[method.originalName ?? ''] !== 'function')
      .map(([, method]) => method.path)
    if (missing.length > 0) {
      this.warn({ methods: missing }, `fastify-grpc-ws: no implementation for ${missing.join(', ')}: calls to ${missing.length === 1 ? 'it' : 'them'} get UNIMPLEMENTED`)
    }
    this.registry.addService(definition, implementation)
    this.options.grpcServer?.addService(definition, implementation)
    for (const method of Object.values(definition)) {
      const service = serviceOfPath(method.path)
      if (service !== null) this.inProcess.add(service)
    }
  }

  /**
   * No more services: the app is ready. Learns each upstream's methods
   * (reflection, where asked for) and registers their paths.
   */
  async start (): Promise<void> {
    this.started = true
    const found = await Promise.all(this.upstreams.map(async upstream => {
      try {
        return { upstream, services: await upstream.discover() }
      } catch (err) {
        if (!(err instanceof DiscoveryError)) throw err
        const hint = upstream.config.reflectAll ? '' : '; list each service\'s methods ({ name, methods }) or give its definition to start without reflection'
        throw new ERR_UPSTREAM_DISCOVERY(upstream.config.target, `${err.message}${hint}`)
      }
    }))
    // Forwarded methods are call backends: the app's HTTP/2 server must hand them its calls as the dispatcher does.
    if (found.length > 0 && this.options.grpcServer !== undefined) runCallBackends(this.options.grpcServer)
    for (const { upstream, services } of found) {
      for (const { name, paths } of services) {
        this.claim(name, upstream)
        for (const path of paths) {
          // Generic bidi call backends with identity (de)serializers: see upstream/forward.ts.
          this.registry.register(path, upstream.handler, identity, identity, 'bidi')
          this.options.grpcServer?.register(path, upstream.handler, identity, identity, 'bidi')
        }
      }
    }
  }

  /** Closes the upstream channels (calls still on them are cancelled). */
  closeUpstreams (): void {
    for (const upstream of this.upstreams) upstream.close()
  }

  /** Serves an upgraded socket that negotiated grpc-ws.v1. */
  accept (socket: WebSocket, request: IncomingMessage, context: ConnectionContext): ServerConnection {
    const conn = new ServerConnection(socket, request, this.dispatcher, this.limits, this, context)
    this.track(conn)
    return conn
  }

  /** Counts a connection in, for limits, keepalive and shutdown. */
  track (conn: ManagedConnection): void {
    this.connections.add(conn)
    this.startTicker()
  }

  /** The connection has closed. */
  untrack (conn: ManagedConnection): void {
    this.connections.delete(conn)
    if (this.connections.size === 0) this.stopTicker()
  }

  // One timer for all connections' pings and idle checks, running only
  // while there are connections.
  private startTicker (): void {
    if (this.ticker !== null) return
    const { pingInterval, pingTimeout, idleTimeout } = this.limits
    const periods = [pingInterval, pingTimeout, idleTimeout].filter(ms => ms > 0)
    if (periods.length === 0) return
    const period = Math.max(10, Math.min(1000, Math.min(...periods) / 4))
    this.ticker = setInterval(() => {
      const now = Date.now()
      for (const conn of this.connections) conn.tick(now)
    }, period)
    this.ticker.unref()
  }

  private stopTicker (): void {
    if (this.ticker !== null) clearInterval(this.ticker)
    this.ticker = null
  }

  /** GOAWAY to all, let calls finish within the grace period, then close with 1001. */
  async shutdown (): Promise<void> {
    const open = [...this.connections]
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      Promise.all(open.map(async conn => await conn.goAway('server shutting down'))),
      new Promise<void>(resolve => { timer = setTimeout(resolve, this.options.closeGracePeriod) })
    ])
    clearTimeout(timer)
    for (const conn of open) conn.close(CloseCode.GOING_AWAY, 'server shutting down')
  }
}
