/**
 * prompt.ts in one process: automerge-repo Repos joined by in-memory pipes in a star (a hub, as
 * `concord serve`, and peers, as sync clients). What the module promises: a change made on one peer
 * reaches the others without automerge-repo's 100 ms forwarding throttle on either Repo; nothing is lost;
 * no message storm (no echo, bounded messages per change, silence once everyone has everything); and the
 * stock behaviour when the internals it needs are missing.
 */
import * as A from "@automerge/automerge"
import { type DocHandle, type PeerId, Repo } from "@automerge/automerge-repo"
import { performance } from "node:perf_hooks"
import { afterEach, describe, expect, it } from "vitest"
import { installPromptSync, missingInternals, type PromptSyncResult, replayable } from "../../../src/sync/net/prompt.js"
import { type PipeEnd, pipe } from "./pipe-adapter.js"

type Log = { log: { i: number; from: string }[] }
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

interface Star {
  hub: Repo
  peers: Repo[]
  ends: PipeEnd[]
  prompts: PromptSyncResult[]
  close(): void
}

const open: Star[] = []
afterEach(() => {
  for (const s of open.splice(0)) s.close()
})

/** A hub and `n` peers, each peer piped to the hub; prompt forwarding on every Repo, or none. */
function star(n: number, prompt: boolean): Star {
  const hubEnds: PipeEnd[] = []
  const peerEnds: PipeEnd[] = []
  for (let i = 0; i < n; i++) {
    const [h, p] = pipe()
    hubEnds.push(h)
    peerEnds.push(p)
  }
  // like concord serve: never pushes a document nobody asked for
  const hub = new Repo({ network: hubEnds, peerId: "hub" as PeerId, shareConfig: { announce: async () => false, access: async () => true } })
  const peers = peerEnds.map((e, i) => new Repo({ network: [e], peerId: `peer-${i}` as PeerId }))
  const prompts = prompt ? [hub, ...peers].map(r => installPromptSync(r)) : []
  const s: Star = {
    hub,
    peers,
    ends: [...hubEnds, ...peerEnds],
    prompts,
    close() {
      for (const e of s.ends) e.disconnect()
    },
  }
  open.push(s)
  return s
}

const messages = (s: Star) => s.ends.reduce((n, e) => n + e.sent, 0)

async function until(what: string, fn: () => boolean, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now()
  while (!fn()) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await sleep(5)
  }
}

/** Peer 0 makes `n` changes `gapMs` apart; the other peers record when they first see each. */
async function paced(s: Star, n: number, gapMs: number) {
  const [writer, ...watchers] = s.peers
  const h = writer.create<Log>({ log: [] })
  const others: DocHandle<Log>[] = []
  for (const w of watchers) others.push(await w.find<Log>(h.url))
  await until("everyone has the document", () => others.every(o => o.isReady()))
  await sleep(150) // past the throttle window the first sync opened
  const made: number[] = []
  const seen = others.map(() => new Map<number, number>())
  others.forEach((o, k) =>
    o.on("heads-changed", ({ doc }) => {
      const t = performance.now()
      for (const e of doc.log) if (!seen[k].has(e.i)) seen[k].set(e.i, t)
    })
  )
  for (let i = 0; i < n; i++) {
    h.change(d => {
      d.log.push({ i, from: "peer-0" })
    })
    made.push(performance.now())
    await sleep(gapMs)
  }
  await until("every change seen by every watcher", () => seen.every(m => m.size === n))
  const lat = seen.flatMap(m => [...m].map(([i, t]) => t - made[i]))
  return { h, others, lat, start: made[0] }
}

describe("prompt forwarding (in-process star)", () => {
  it("forwards at once on the writer's Repo and on the hub: well under the stock throttle, nothing lost, converged", async () => {
    const stock = await paced(star(2, false), 30, 20)
    const s = star(2, true)
    const fast = await paced(s, 30, 20)
    const m = { stock: median(stock.lat), prompt: median(fast.lat) }
    console.log(`in-process star, a change every 20 ms: median latency ${m.prompt.toFixed(1)} ms (stock throttle ${m.stock.toFixed(1)} ms)`)
    // stock: up to 100 ms on the writer's Repo, then up to 100 ms on the hub. Prompt: a few turns of the
    // event loop (about 5 ms on an idle machine; the bound is for a loaded one)
    expect(m.prompt, JSON.stringify(m)).toBeLessThan(60)
    expect(m.prompt, JSON.stringify(m)).toBeLessThan(0.75 * m.stock)
    const heads = [fast.h, ...fast.others, s.hub.handles[fast.h.documentId]].map(x =>
      A.getHeads(x.doc() as A.Doc<unknown>)
        .sort()
        .join()
    )
    expect(new Set(heads).size).toBe(1)
    expect(fast.others[0].doc().log.map(e => e.i)).toEqual([...Array(30).keys()])
    for (const p of s.prompts) expect(p.installed).toBe(true)
    expect(s.prompts.reduce((n, p) => n + (p.installed ? p.forwards : 0), 0)).toBeGreaterThan(0)
  })

  it("no storm: bounded messages per change, no echo, and silence once everyone has everything", async () => {
    const s = star(4, true)
    const before = messages(s)
    const { lat } = await paced(s, 40, 5) // faster than a forward round trip: later changes ride on answers
    expect(lat.length).toBe(3 * 40)
    const during = messages(s) - before
    // each change reaches 3 watchers through the hub; a forward is 1 message per hop (3 when it starts a
    // conversation), the stock throttled send and acknowledgements add a few: allow 8 per change per
    // watcher, far from a storm
    expect(during).toBeLessThan(40 * 3 * 8)
    await sleep(300) // the stock throttle's last sends and their answers
    const settled = messages(s)
    await sleep(600)
    expect(messages(s) - settled).toBe(0)
  })

  it("a forward is one message carrying the change: the peer's last sync message is replayed, not the conversation restarted", async () => {
    const s = star(2, true)
    // what each end sends, decoded: [end, carries changes]
    const sent: { end: number; changes: number; at: number }[] = []
    s.ends.forEach((e, k) => {
      const send = e.send.bind(e)
      e.send = (m: Parameters<typeof send>[0]) => {
        const data = (m as { data?: Uint8Array }).data
        if (m.type === "sync" && data) sent.push({ end: k, changes: A.decodeSyncMessage(data).changes.length, at: performance.now() })
        send(m)
      }
    })
    const n = 30
    // 40 ms apart: each change is forwarded on its own (no batching), past the previous one's answers
    const { lat, start } = await paced(s, n, 40)
    expect(lat.length).toBe(n)
    await sleep(300) // the stock throttle's last sends and their answers
    // ends: 0 hub->writer, 1 hub->watcher, 2 writer->hub, 3 watcher->hub; from the paced changes on (the
    // document's creation went with the watcher's request for it)
    const during = sent.filter(x => x.at >= start)
    const carrying = (end: number) => during.filter(x => x.end === end && x.changes > 0).length
    const count = (end: number) => during.filter(x => x.end === end).length
    // every change went up and down in a message with it, and none went twice (on a loaded machine a
    // change may wait for the previous one's answer and go with the next)
    for (const end of [2, 1]) {
      expect(carrying(end)).toBeLessThanOrEqual(n)
      expect(carrying(end)).toBeGreaterThanOrEqual(Math.floor(0.8 * n))
    }
    // no message announcing the change before the change itself: beginSync sent our heads first, then,
    // asked for them, the changes (a heads-only message per change and hop); what remains are a few
    // of the stock throttle's own sends
    const headsOnly = (end: number) => during.filter(x => x.end === end && x.changes === 0).length
    const counts = JSON.stringify({ hubToWriter: count(0), hubToWatcher: count(1), writerToHub: count(2), watcherToHub: count(3) })
    expect(headsOnly(2), counts).toBeLessThanOrEqual(0.6 * n)
    expect(headsOnly(1), counts).toBeLessThanOrEqual(0.6 * n)
    // every forward (on the writer's Repo and on the hub) was a replay, but for a conversation's first
    const replays = s.prompts.reduce((k, p) => k + (p.installed ? p.replays : 0), 0)
    const forwards = s.prompts.reduce((k, p) => k + (p.installed ? p.forwards : 0), 0)
    expect(replays).toBeGreaterThanOrEqual(n)
    expect(forwards - replays).toBeLessThanOrEqual(2)
  })

  it("a replayed message keeps the peer's heads and what it has, without its changes and needs; one saying nothing of what it has is not replayed", () => {
    let doc = A.from<{ n: number }>({ n: 1 })
    const [, first] = A.generateSyncMessage(doc, A.initSyncState())
    const m = A.decodeSyncMessage(first!)
    expect(m.have.length).toBe(1)
    // as a peer's message carrying a change and asking for one
    const change = A.getLastLocalChange((doc = A.change(doc, d => void (d.n = 2))))!
    const carrying = A.encodeSyncMessage({ ...m, need: [A.getHeads(doc)[0]], changes: [change] })
    const r = A.decodeSyncMessage(replayable(carrying)!)
    expect(r.heads).toEqual(m.heads)
    expect(r.have).toEqual(m.have)
    expect(r.need).toEqual([])
    expect(r.changes).toEqual([])
    expect(replayable(first!)).toBe(first) // nothing to strip: the message itself
    expect(replayable(A.encodeSyncMessage({ ...m, have: [] }))).toBeNull()
    expect(replayable(new Uint8Array([1, 2, 3]))).toBeNull()
  })

  it("many documents and peers: every change everywhere, forwards only to peers syncing the document", async () => {
    const s = star(4, true)
    const docs: DocHandle<Log>[] = []
    for (let d = 0; d < 10; d++) docs.push(s.peers[d % 4].create<Log>({ log: [] }))
    // peers 0 and 1 follow every document; peers 2 and 3 only the ones they created
    const copies = new Map<string, DocHandle<Log>[]>()
    for (const h of docs) {
      const list = [h]
      for (const p of [0, 1]) if (s.peers[p] !== s.peers[docs.indexOf(h) % 4]) list.push(await s.peers[p].find<Log>(h.url))
      copies.set(h.documentId, list)
    }
    for (let round = 0; round < 10; round++) {
      for (const [, list] of copies) {
        const who = list[round % list.length]
        who.change(d => {
          d.log.push({ i: round, from: String(round % list.length) })
        })
      }
      await sleep(3)
    }
    await until("all copies equal", () =>
      [...copies.values()].every(
        list =>
          new Set(
            list.map(h =>
              A.getHeads(h.doc() as A.Doc<unknown>)
                .sort()
                .join()
            )
          ).size === 1
      )
    )
    for (const list of copies.values()) expect(list[0].doc().log.length).toBe(10)
    // a peer never got a document it did not ask for (the hub does not announce; forwards respect that)
    for (const p of [2, 3]) {
      const mine = docs.filter((_h, i) => i % 4 === p).map(h => h.documentId)
      expect(Object.keys(s.peers[p].handles).sort()).toEqual(mine.sort())
    }
  })

  it("falls back to the stock behaviour when the internals are missing", async () => {
    // a Repo-like object from a future automerge-repo
    expect(installPromptSync({} as Repo)).toEqual({ installed: false, reason: "repo.synchronizer is not an event emitter" })
    const hub = new Repo({ network: [] })
    const shaped = { synchronizer: { on() {}, peers: [] }, networkSubsystem: hub.networkSubsystem, handles: {} }
    expect(missingInternals(shaped)).toMatch(/docSynchronizers/)
    expect(missingInternals(hub)).toBeUndefined()
    const prev = process.env.CONCORD_PROMPT_SYNC
    process.env.CONCORD_PROMPT_SYNC = "0"
    try {
      expect(installPromptSync(hub).installed).toBe(false)
    } finally {
      if (prev === undefined) delete process.env.CONCORD_PROMPT_SYNC
      else process.env.CONCORD_PROMPT_SYNC = prev
    }

    // a hub on which it could not be installed (stock), peers with it: still everything, converged
    const s = star(2, false)
    const prompts = s.peers.map(r => installPromptSync(r))
    const { h, others, lat } = await paced(s, 10, 20)
    expect(lat.length).toBe(10)
    expect(others[0].doc().log.length).toBe(10)
    expect(A.getHeads(others[0].doc() as A.Doc<unknown>).sort()).toEqual(A.getHeads(h.doc() as A.Doc<unknown>).sort())
    expect(prompts.every(p => p.installed)).toBe(true)
  })
})
