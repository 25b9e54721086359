/**
 * The TopicBus contract through the registry, with a bus written against
 * the public interface: a hub joining two plugin apps in this process (what
 * a NATS or other broker bus would be). Checks what the Redis bus relies on
 * without Redis: one bus subscription per topic per instance whatever the
 * churn, own publishes not echoed, remote messages delivered once, a topic
 * without a serializer refused on a remote bus, bus failures reported.
 */
import * as grpc from '@grpc/grpc-js'
import t from 'tap'
import { ERR_TOPIC_SERIALIZER, type TopicBus } from '../../index.js'
import { startFanoutApp } from '../helpers/fanout-app.js'
import { h2Subscriber, until } from '../helpers/fanout-clients.js'
import { TestClient, testDefinition } from '../helpers/test-service.js'

/** Instances joined by one hub; each bus records its subscribe / unsubscribe calls. */
function hub () {
  const members = new Map<TopicBus, Map<string, (bytes: Buffer) => void>>()
  const make = (options: { failSubscribe?: boolean } = {}): TopicBus & { log: string[] } => {
    const topics = new Map<string, (bytes: Buffer) => void>()
    const log: string[] = []
    const bus: TopicBus & { log: string[] } = {
      remote: true,
      log,
      subscribe: async (topic, onMessage) => {
        await new Promise(resolve => setTimeout(resolve, 2)) // a broker round trip
        if (options.failSubscribe === true) throw new Error('broker refused')
        log.push(`+${topic}`)
        topics.set(topic, onMessage)
      },
      unsubscribe: async topic => {
        await new Promise(resolve => setTimeout(resolve, 2))
        log.push(`-${topic}`)
        topics.delete(topic)
      },
      publish: async (topic, bytes) => {
        const copy = Buffer.from(bytes)
        for (const [other, subs] of members) if (other !== bus) subs.get(topic)?.(copy)
      },
      close: async () => { members.delete(bus) }
    }
    members.set(bus, topics)
    return bus
  }
  return make
}

const encode = (message: string): Buffer => testDefinition.ServerStream!.responseSerialize({ message })

t.test('Should carry publishes between instances through a bus, once, without echo, with one bus subscription per topic', async t => {
  const make = hub()
  const busA = make()
  const busB = make()
  const [a, b] = await Promise.all([startFanoutApp({ topics: { bus: busA } }), startFanoutApp({ topics: { bus: busB } })])
  t.teardown(async () => { await a.close(); await b.close() })
  const ca = new TestClient(a.grpcAddress, grpc.credentials.createInsecure()) as any
  const cb = new TestClient(b.grpcAddress, grpc.credentials.createInsecure()) as any
  t.teardown(() => { ca.close(); cb.close() })

  const subs = [...Array.from({ length: 5 }, () => h2Subscriber(ca, { message: 'hub' })), ...Array.from({ length: 5 }, () => h2Subscriber(cb, { message: 'hub' }))]
  await Promise.all(subs.map(async s => await s.headers))
  t.same(busA.log, ['+hub'], 'one bus subscription on A for its 5 subscribers')
  t.same(busB.log, ['+hub'])
  for (let i = 0; i < 20; i++) {
    await a.app.grpc.topics.publish('hub', { message: `a${i}` })
    await b.app.grpc.topics.publish('hub', { message: `b${i}` })
  }
  await until(() => subs.every(s => s.received.messages.length === 40))
  await new Promise(resolve => setTimeout(resolve, 20))
  for (const s of subs) {
    t.same(s.received.messages.filter(m => m.startsWith('a')), Array.from({ length: 20 }, (_, i) => `a${i}`))
    t.same(s.received.messages.filter(m => m.startsWith('b')), Array.from({ length: 20 }, (_, i) => `b${i}`))
  }
  t.equal(subs.every(s => s.received.messages.length === 40), true, 'no echo, no duplicate')
  t.match(a.app.grpc.topics.stats('hub'), { subscribers: 5, published: 20, received: 20 })

  // Churn: 50 subscribers come and go on one topic; the bus sees a few operations, not 100.
  const churn = Array.from({ length: 50 }, () => h2Subscriber(cb, { message: 'churny' }))
  await Promise.all(churn.map(async s => await s.headers))
  for (const s of churn) s.call.cancel()
  await until(() => b.app.grpc.topics.stats('churny') === undefined)
  await until(() => busB.log.at(-1) === '-churny')
  t.ok(busB.log.filter(x => x.endsWith('churny')).length <= 4, `coalesced: ${busB.log.filter(x => x.endsWith('churny')).join(' ')}`)

  // No local subscriber, a remote bus: publish needs a serializer (or encoded bytes).
  await t.rejects(a.app.grpc.topics.publish('elsewhere', { message: 'x' }), ERR_TOPIC_SERIALIZER)
  const remoteOnly = h2Subscriber(cb, { message: 'elsewhere' })
  await remoteOnly.headers
  await a.app.grpc.topics.publishEncoded('elsewhere', encode('encoded on A'))
  const typed = a.app.grpc.topics.topic<{ message: string }>('elsewhere', { serialize: m => testDefinition.ServerStream!.responseSerialize(m) })
  await typed.publish({ message: 'typed on A' })
  await until(() => remoteOnly.received.messages.length === 2)
  t.same(remoteOnly.received.messages, ['encoded on A', 'typed on A'], 'B\'s subscriber got what A published with no subscriber of its own')
  remoteOnly.call.cancel()
  for (const s of subs) s.call.cancel()
  await until(() => busA.log.at(-1) === '-hub' && busB.log.at(-1) === '-hub')
  t.pass('the last subscriber leaving drops the bus subscription')
})

t.test('Should fail a subscription whose bus cannot subscribe, and report it', async t => {
  const make = hub()
  const fx = await startFanoutApp({ topics: { bus: make({ failSubscribe: true }) } })
  t.teardown(async () => { await fx.close() })
  const c = new TestClient(fx.grpcAddress, grpc.credentials.createInsecure()) as any
  t.teardown(() => { c.close() })
  const s = h2Subscriber(c, { message: 'refused', id: 'refused-1' })
  const end = await s.received.done
  t.ok(end !== null && end.code !== grpc.status.OK, `the call fails (${end?.code}: ${end?.details})`)
  await t.rejects(fx.subscriptions.get('refused-1')!.ready, /broker refused/, 'ready rejects with the bus error')
})
