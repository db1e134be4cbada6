/**
 * Prompt forwarding: a document's new changes go to the other peers syncing it at once, not up to 100 ms
 * later.
 *
 * Why this exists: automerge-repo 2.5's DocSynchronizer forwards a document's changes to its peers
 * through `asyncThrottle(syncWithPeers, syncDebounceRate)`, with `syncDebounceRate = 100`, a class field
 * read in its constructor and no option to set it. Only the answer to the peer that sent a sync message
 * goes at once. So a change that arrives within 100 ms of the previous send waits up to 100 ms, on every
 * Repo it passes: the writer's `concord sync --watch` (its own writes), then `concord serve` (forwarding
 * to the watchers). With reports 40-100 ms apart that alone put the p99 of "visible through the sync
 * server" above 100 ms.
 *
 * What it does: on a handle's "heads-changed" (coalesced per document to one check per turn of the event
 * loop), for every peer the document's synchronizer syncs with whose last known heads (the library's
 * "sync-state" events, `syncState.theirHeads`) are known, not ours, and all in our document (the peer
 * is only behind us: during a catch-up both ways the library's own exchange is left alone), it makes
 * the synchronizer send now, in one message with the changes the peer lacks: it hands the synchronizer
 * (`DocSynchronizer.receiveMessage`) the last sync message that peer sent for the document once more
 * (recorded from `repo.networkSubsystem` "message" events, without the changes it carried, applied
 * already, and its needs, answered already). The synchronizer answers any sync message of a peer at
 * once, from the sync state it keeps for it; the peer's heads and "have" in that message are what the
 * state already holds, so receiving it again changes nothing but the sending: the answer carries
 * exactly the changes the peer has not been sent. (Automerge's sync protocol takes a message twice
 * without harm; a peer may send its state again at any time.) A peer that has not sent a message
 * saying what it has (only asked for changes, or nothing yet) gets `DocSynchronizer.beginSync([peer])`,
 * the library's public way to start a conversation: it starts afresh from the shared heads (see its
 * HACK comment), so that forward is three messages (our heads; their need; our changes).
 *
 * Why it cannot storm, and batches under load: a forward happens only when our heads changed, and
 * changes are finite; a check never changes a document. The peer a change came from already has our
 * heads, so it is skipped (no echo). At most one forward per peer and document is under way: until the
 * peer's heads move (it applied what we sent; at most `answerWaitMs`), further changes wait, and are
 * forwarded together as soon as they do. So when changes come faster than a forward's round trip (the
 * server judges each message and fsyncs its audit trail before applying it) they go in batches rather
 * than queue up one by one. The stock throttled send keeps running underneath, so nothing depends on
 * this module for correctness: it only makes sends earlier.
 *
 * Robust to the internals moving: what it uses (`repo.synchronizer` with `docSynchronizers`, `peers`,
 * "sync-state" events; `repo.networkSubsystem` "message" and "peer-disconnected" events; a doc
 * synchronizer's `beginSync`, `hasPeer` and `receiveMessage`, without which it forwards by beginSync)
 * is feature-checked; if anything is missing it installs nothing and the Repo
 * keeps the stock behaviour (`installPromptSync` returns why).
 *
 * `CONCORD_PROMPT_SYNC=0` in the environment turns it off (to compare against the stock behaviour).
 */
import * as A from "@automerge/automerge"
import type { DocHandle, DocumentId, PeerId, Repo } from "@automerge/automerge-repo/slim"
import { containsHeads } from "../../doc/heads.js"

/** The parts of automerge-repo's internals this module relies on (checked at install). */
interface DocSynchronizerLike {
  beginSync(peerIds: PeerId[]): Promise<void> | void
  hasPeer(peerId: PeerId): boolean
  receiveMessage?(message: SyncMessageLike): void
}
interface SyncMessageLike {
  type: string
  senderId: PeerId
  targetId: PeerId
  documentId: DocumentId
  data: Uint8Array
}
interface Emitter {
  on(event: string, fn: (payload: never) => void): unknown
}
interface SynchronizerLike extends Emitter {
  docSynchronizers: Record<string, DocSynchronizerLike | undefined>
  readonly peers: PeerId[]
}
interface SyncStateEvent {
  peerId: PeerId
  documentId: DocumentId
  syncState: { theirHeads?: string[] | null }
}

export interface PromptSyncOptions {
  /** A forward after which the peer's heads did not move within this long no longer holds the next one back. Default 1000 ms. */
  answerWaitMs?: number
  /** Clock (tests). Default Date.now. */
  now?: () => number
}

export interface PromptSync {
  readonly installed: true
  /** forwards started (one per peer and change or batch of changes) */
  readonly forwards: number
  /** of those, the ones that went as one message by replaying the peer's last sync message */
  readonly replays: number
  /** Stop forwarding (listeners on handles stay, but do nothing). */
  stop(): void
}

export type PromptSyncResult = PromptSync | { installed: false; reason: string }

interface PeerState {
  /** the peer's heads as the sync protocol last told us (hex, sorted, joined) */
  heads?: string
  /** the same, as a list */
  headList?: string[]
  /** when our last forward to it was started, while its heads have not moved since */
  pendingSince?: number
  /** the last sync message it sent us for this document (as received; stripped when replayed) */
  last?: Uint8Array
  /** `last` without changes and needs, ready to replay; undefined: not made yet; null: not replayable */
  replay?: Uint8Array | null
}

/** A peer's sync message up to this size is kept as it is until a forward needs its replay; larger ones are stripped at once. */
const KEEP_RAW_BYTES = 2048

const key = (heads: readonly string[] | null | undefined): string | undefined => (heads ? [...heads].sort().join(",") : undefined)

// (containsHeads: Automerge.hasHeads rebuilds each change to answer)
const hasAll = (doc: A.Doc<unknown>, heads: string[] | undefined): boolean => {
  try {
    return !!heads && containsHeads(doc, heads)
  } catch {
    return false
  }
}

/**
 * A peer's sync message made fit to be received again (see forward): its heads and its "have" (what it
 * has since the heads it shares with us) as sent, without the changes it carried (applied already) and
 * without its needs (answered already). null when it says nothing of what the peer has (a message
 * asking only for missing changes), or cannot be read: a replay would not carry our new changes then.
 */
export function replayable(data: Uint8Array): Uint8Array | null {
  try {
    const m = A.decodeSyncMessage(data)
    if (m.have.length === 0) return null
    if (m.changes.length === 0 && m.need.length === 0) return data
    return A.encodeSyncMessage({ ...m, need: [], changes: [] })
  } catch {
    return null
  }
}

/** Why these internals cannot be used, or undefined if they can. */
export function missingInternals(repo: unknown): string | undefined {
  const r = repo as { synchronizer?: Partial<SynchronizerLike>; networkSubsystem?: Partial<Emitter>; handles?: unknown }
  const s = r?.synchronizer
  if (!s || typeof s.on !== "function") return "repo.synchronizer is not an event emitter"
  if (!s.docSynchronizers || typeof s.docSynchronizers !== "object") return "repo.synchronizer.docSynchronizers is missing"
  if (!Array.isArray(s.peers)) return "repo.synchronizer.peers is missing"
  if (!r.networkSubsystem || typeof r.networkSubsystem.on !== "function") return "repo.networkSubsystem is not an event emitter"
  if (!r.handles || typeof r.handles !== "object") return "repo.handles is missing"
  const proto = Object.values(s.docSynchronizers).find(Boolean) as Partial<DocSynchronizerLike> | undefined
  if (proto && (typeof proto.beginSync !== "function" || typeof proto.hasPeer !== "function")) return "DocSynchronizer has no beginSync/hasPeer"
  return undefined
}

/**
 * Make `repo` forward changes to its other peers at once (see the module comment). Install right after
 * creating the Repo. Returns `{ installed: false, reason }` and changes nothing when the internals it
 * needs are missing or `CONCORD_PROMPT_SYNC=0`.
 */
export function installPromptSync(repo: Repo, opts: PromptSyncOptions = {}): PromptSyncResult {
  if (process.env.CONCORD_PROMPT_SYNC === "0") return { installed: false, reason: "turned off by CONCORD_PROMPT_SYNC=0" }
  const missing = missingInternals(repo)
  if (missing) return { installed: false, reason: missing }
  const sync = (repo as unknown as { synchronizer: SynchronizerLike }).synchronizer
  const net = (repo as unknown as { networkSubsystem: Emitter }).networkSubsystem
  const answerWaitMs = opts.answerWaitMs ?? 1000
  const now = opts.now ?? Date.now
  const docs = new Map<string, Map<PeerId, PeerState>>()
  const hooked = new Set<string>()
  const scheduled = new Set<string>()
  let stopped = false
  let forwards = 0
  let replays = 0

  const peerState = (docId: string, peerId: PeerId): PeerState => {
    let peers = docs.get(docId)
    if (!peers) docs.set(docId, (peers = new Map()))
    let p = peers.get(peerId)
    if (!p) peers.set(peerId, (p = {}))
    return p
  }

  const forward = (docId: string) => {
    scheduled.delete(docId)
    if (stopped) return
    const handle = repo.handles[docId as DocumentId] as DocHandle<unknown> | undefined
    const ds = sync.docSynchronizers[docId]
    if (!handle?.isReady() || !ds || typeof ds.beginSync !== "function" || typeof ds.hasPeer !== "function") return
    const doc = handle.doc() as A.Doc<unknown>
    const ours = key(A.getHeads(doc))
    const t = now()
    const targets: PeerId[] = []
    for (const peerId of sync.peers) {
      if (!ds.hasPeer(peerId)) continue // only peers already syncing this document: never announce it to others
      const p = peerState(docId, peerId)
      // no heads heard yet: the conversation that opened the document is still under way and will carry it
      if (p.heads === undefined) continue
      if (p.heads === ours) continue // it has everything (e.g. the peer the change came from)
      // it has changes we lack: a catch-up both ways (a big sync) that the library's own exchange is
      // doing; restarting it would only make it send its changes again
      if (!hasAll(doc, p.headList)) continue
      if (p.pendingSince !== undefined && t - p.pendingSince < answerWaitMs) continue // one under way: goes when it lands
      p.pendingSince = t
      targets.push(peerId)
    }
    if (targets.length === 0) return
    forwards += targets.length
    const fresh: PeerId[] = []
    for (const peerId of targets) {
      const p = peerState(docId, peerId)
      if (p.last && p.replay === undefined) p.replay = replayable(p.last)
      if (!p.replay || typeof ds.receiveMessage !== "function") {
        fresh.push(peerId)
        continue
      }
      try {
        // the peer's last word again: the synchronizer answers it from the sync state it keeps, with
        // the changes the peer lacks, in one message
        ds.receiveMessage({ type: "sync", senderId: peerId, targetId: repo.peerId, documentId: docId as DocumentId, data: p.replay })
        replays++
      } catch {
        fresh.push(peerId)
      }
    }
    if (fresh.length === 0) return
    try {
      void Promise.resolve(ds.beginSync(fresh)).catch(() => {})
    } catch {
      // the stock throttled send still goes
    }
  }

  const hook = (docId: string) => {
    if (hooked.has(docId)) return
    const handle = repo.handles[docId as DocumentId] as DocHandle<unknown> | undefined
    if (!handle || typeof handle.on !== "function") return
    hooked.add(docId)
    handle.on("heads-changed", () => schedule(docId))
  }

  // after the current message is processed (the library answers its sender first); coalesces a batch
  const schedule = (docId: string) => {
    if (stopped || scheduled.has(docId)) return
    scheduled.add(docId)
    setImmediate(() => forward(docId))
  }

  // the peers' heads, as the sync protocol learns them; a document in a sync conversation gets hooked
  sync.on("sync-state", ((e: SyncStateEvent) => {
    if (stopped || !e || typeof e.documentId !== "string") return
    hook(e.documentId)
    const heads = key(e.syncState?.theirHeads)
    if (heads === undefined) return
    const p = peerState(e.documentId, e.peerId)
    const moved = p.heads !== heads
    p.heads = heads
    p.headList = [...(e.syncState.theirHeads ?? [])]
    // the peer applied what the forward carried (or changed itself): what came meanwhile goes now
    if (moved && p.pendingSince !== undefined) {
      p.pendingSince = undefined
      schedule(e.documentId)
    }
  }) as (payload: never) => void)
  // the peers' last sync message per document, to replay (see forward)
  net.on("message", ((m: Partial<SyncMessageLike>) => {
    if (stopped || m?.type !== "sync" || typeof m.documentId !== "string" || !m.senderId || !(m.data instanceof Uint8Array)) return
    const p = peerState(m.documentId, m.senderId)
    if (m.data.byteLength > KEEP_RAW_BYTES) {
      // one carrying many changes (a catch-up): not kept as it is, only what a replay needs
      p.last = undefined
      p.replay = replayable(m.data)
    } else {
      p.last = m.data
      p.replay = undefined
    }
  }) as (payload: never) => void)
  net.on("peer-disconnected", ((e: { peerId?: PeerId }) => {
    if (!e?.peerId) return
    for (const peers of docs.values()) peers.delete(e.peerId)
  }) as (payload: never) => void)

  return {
    installed: true,
    get forwards() {
      return forwards
    },
    get replays() {
      return replays
    },
    stop() {
      stopped = true
    },
  }
}
