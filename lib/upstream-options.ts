/**
 * The `upstreams` option: gRPC servers (in any language) whose services the
 * plugin forwards to, and its validation into coded errors at register time.
 */
import type { ChannelCredentials, ChannelOptions, ServiceDefinition } from '@grpc/grpc-js'
import { ERR_INVALID_OPTION } from './errors.js'

/** A service of an upstream, with the names of its methods (no reflection needed). */
export interface UpstreamServiceMethods {
  /** Fully-qualified service name, e.g. `'shop.Orders'`. */
  name: string
  /** Method names, e.g. `['Get', 'Watch']`. */
  methods: string[]
}

/** Which request metadata goes to the upstream (response metadata always comes back whole). */
export interface UpstreamMetadataPolicy {
  /**
   * When given, only these keys are forwarded (an allow-list; list `'cookie'`
   * to forward cookies). Transport keys are dropped whatever it says.
   */
  allow?: string[]
  /** Further keys not forwarded. */
  drop?: string[]
  /** Forward `cookie`. Default false: cookies are the browser's credentials for this site. */
  cookie?: boolean
  /**
   * Add `x-forwarded-for` (the client's address appended to any value it
   * came with) and `x-forwarded-host` (the host the call was made to). Default true.
   */
  forwarded?: boolean
}

export interface UpstreamOption {
  /** A grpc-js target: `'host:port'`, `'dns:///host:443'`, `'unix:/path'`, ... */
  target: string
  /**
   * What to forward: `'reflection'` (every service the upstream's reflection
   * lists, learnt at ready), or a list of fully-qualified service names
   * (their methods learnt at ready by reflection), `{ name, methods }`
   * entries, or grpc-js ServiceDefinitions (e.g. from proto-loader); the last
   * two need no reflection.
   */
  services: 'reflection' | Array<string | UpstreamServiceMethods | ServiceDefinition>
  /** Default `grpc.credentials.createInsecure()`. */
  credentials?: ChannelCredentials
  /** grpc-js channel options of the one channel every forwarded call to this upstream shares. */
  channelOptions?: ChannelOptions
  /** Request metadata policy; see {@link UpstreamMetadataPolicy}. */
  metadata?: UpstreamMetadataPolicy
  /** ms the reflection lookups at ready may take in all. Default 10000. */
  discoveryTimeout?: number
}

export interface ResolvedMetadataPolicy {
  allow: ReadonlySet<string> | null
  drop: ReadonlySet<string>
  cookie: boolean
  forwarded: boolean
}

export interface ResolvedUpstream {
  target: string
  credentials: ChannelCredentials | undefined
  channelOptions: ChannelOptions
  metadata: ResolvedMetadataPolicy
  discoveryTimeout: number
  /** Every service the upstream's reflection lists. */
  reflectAll: boolean
  /** Services whose methods reflection must tell. */
  reflect: string[]
  /** Services whose method paths are known now: name → paths. */
  known: Map<string, string[]>
}

export const upstreamDefaults = {
  discoveryTimeout: 10000
} as const

const SERVICE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/
const METHOD_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const METADATA_KEY = /^[0-9a-z_.-]+$/
const policyNames = new Set(['allow', 'drop', 'cookie', 'forwarded'])
const upstreamNames = new Set(['target', 'services', 'credentials', 'channelOptions', 'metadata', 'discoveryTimeout'])

function keyList (name: string, value: unknown): Set<string> {
  if (!Array.isArray(value) || value.some(key => typeof key !== 'string' || !METADATA_KEY.test(key.toLowerCase()))) {
    throw new ERR_INVALID_OPTION(name, 'expected an array of metadata keys')
  }
  return new Set(value.map((key: string) => key.toLowerCase()))
}

function policy (name: string, value: unknown): ResolvedMetadataPolicy {
  if (value === undefined) return { allow: null, drop: new Set(), cookie: false, forwarded: true }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ERR_INVALID_OPTION(name, 'expected { allow?, drop?, cookie?, forwarded? }')
  for (const key of Object.keys(value)) if (!policyNames.has(key)) throw new ERR_INVALID_OPTION(`${name}.${key}`, 'unknown option')
  const p = value as UpstreamMetadataPolicy
  for (const flag of ['cookie', 'forwarded'] as const) {
    if (p[flag] !== undefined && typeof p[flag] !== 'boolean') throw new ERR_INVALID_OPTION(`${name}.${flag}`, `expected a boolean, got ${String(p[flag])}`)
  }
  const allow = p.allow === undefined ? null : keyList(`${name}.allow`, p.allow)
  return {
    allow,
    drop: p.drop === undefined ? new Set() : keyList(`${name}.drop`, p.drop),
    cookie: p.cookie ?? allow?.has('cookie') ?? false,
    forwarded: p.forwarded ?? true
  }
}

/** `/pkg.Service/Method` → `pkg.Service`, or null for anything else. */
export function serviceOfPath (path: string): string | null {
  const match = /^\/([^/]+)\/([^/]+)$/.exec(path)
  return match === null || !SERVICE_NAME.test(match[1]!) ? null : match[1]!
}

function addKnown (known: Map<string, string[]>, name: string, service: string, paths: string[]): void {
  if (known.has(service)) throw new ERR_INVALID_OPTION(name, `service ${service} is listed twice`)
  known.set(service, paths)
}

function services (name: string, value: unknown, resolved: Pick<ResolvedUpstream, 'reflectAll' | 'reflect' | 'known'>): void {
  if (value === 'reflection') { resolved.reflectAll = true; return }
  if (!Array.isArray(value) || value.length === 0) {
    throw new ERR_INVALID_OPTION(name, "expected 'reflection' or a non-empty array of service names, { name, methods } or grpc-js ServiceDefinitions")
  }
  value.forEach((entry: unknown, i) => {
    const at = `${name}[${i}]`
    if (typeof entry === 'string') {
      if (!SERVICE_NAME.test(entry)) throw new ERR_INVALID_OPTION(at, `expected a fully-qualified service name like "shop.Orders", got "${entry}"`)
      if (resolved.reflect.includes(entry) || resolved.known.has(entry)) throw new ERR_INVALID_OPTION(at, `service ${entry} is listed twice`)
      resolved.reflect.push(entry)
      return
    }
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new ERR_INVALID_OPTION(at, 'expected a service name, { name, methods } or a grpc-js ServiceDefinition')
    const { name: service, methods } = entry as Partial<UpstreamServiceMethods>
    if (typeof service === 'string' || methods !== undefined) {
      if (typeof service !== 'string' || !SERVICE_NAME.test(service)) throw new ERR_INVALID_OPTION(`${at}.name`, `expected a fully-qualified service name, got ${String(service)}`)
      if (!Array.isArray(methods) || methods.length === 0 || methods.some(m => typeof m !== 'string' || !METHOD_NAME.test(m))) {
        throw new ERR_INVALID_OPTION(`${at}.methods`, 'expected a non-empty array of method names')
      }
      if (resolved.reflect.includes(service)) throw new ERR_INVALID_OPTION(at, `service ${service} is listed twice`)
      addKnown(resolved.known, at, service, [...new Set(methods)].map(m => `/${service}/${m}`))
      return
    }
    // A grpc-js ServiceDefinition: every method's path names the same service.
    const paths = Object.values(entry as ServiceDefinition).map(method => (method as { path?: unknown } | null)?.path)
    const names = new Set(paths.map(path => typeof path === 'string' ? serviceOfPath(path) : null))
    const only = [...names][0]
    if (paths.length === 0 || names.size !== 1 || typeof only !== 'string') {
      throw new ERR_INVALID_OPTION(at, 'expected a grpc-js ServiceDefinition whose methods all have paths /<service>/<method> of one service')
    }
    if (resolved.reflect.includes(only)) throw new ERR_INVALID_OPTION(at, `service ${only} is listed twice`)
    addKnown(resolved.known, at, only, paths as string[])
  })
}

export function validateUpstreams (value: unknown): ResolvedUpstream[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) throw new ERR_INVALID_OPTION('upstreams', 'expected an array of { target, services, ... }')
  return value.map((entry: unknown, i) => {
    const name = `upstreams[${i}]`
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new ERR_INVALID_OPTION(name, 'expected { target, services, ... }')
    for (const key of Object.keys(entry)) if (!upstreamNames.has(key)) throw new ERR_INVALID_OPTION(`${name}.${key}`, 'unknown option')
    const u = entry as Partial<UpstreamOption>
    if (typeof u.target !== 'string' || u.target.length === 0) throw new ERR_INVALID_OPTION(`${name}.target`, `expected a grpc-js target like "host:port", got ${String(u.target)}`)
    if (u.credentials !== undefined && (u.credentials === null || typeof (u.credentials as { compose?: unknown }).compose !== 'function')) {
      throw new ERR_INVALID_OPTION(`${name}.credentials`, 'expected grpc-js ChannelCredentials (grpc.credentials.createInsecure(), createSsl(), ...)')
    }
    if (u.channelOptions !== undefined && (u.channelOptions === null || typeof u.channelOptions !== 'object' || Array.isArray(u.channelOptions))) {
      throw new ERR_INVALID_OPTION(`${name}.channelOptions`, 'expected an object of grpc-js channel options')
    }
    const timeout = u.discoveryTimeout ?? upstreamDefaults.discoveryTimeout
    if (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1 || timeout > 0x7fffffff) {
      throw new ERR_INVALID_OPTION(`${name}.discoveryTimeout`, `expected an integer from 1 to ${0x7fffffff}, got ${String(timeout)}`)
    }
    const resolved: ResolvedUpstream = {
      target: u.target,
      credentials: u.credentials,
      channelOptions: { ...u.channelOptions },
      metadata: policy(`${name}.metadata`, u.metadata),
      discoveryTimeout: timeout,
      reflectAll: false,
      reflect: [],
      known: new Map()
    }
    services(`${name}.services`, u.services, resolved)
    return resolved
  })
}
