/**
 * Automerge documents on disk for short-lived CLI processes and long-running watchers, without
 * automerge-repo's Repo.
 *
 * Layout and key scheme are automerge-repo's (`[docId, "snapshot", headsHash]`,
 * `[docId, "incremental", sha256(bytes)]`), via {@link ConcordStorageAdapter}, so a Repo using a
 * NodeFSStorageAdapter or ConcordStorageAdapter on the same directory sees the same documents.
 *
 * Safety rules:
 *  - a document is loaded chunk by chunk (snapshots, then incrementals), each chunk verified first,
 *    so one damaged chunk cannot hide the others (Automerge.loadIncremental silently drops bad
 *    input);
 *  - a compaction deletes only chunks this instance loaded or wrote itself, only after the snapshot
 *    that replaces them is durable, only if the document being saved contains everything those
 *    chunks contained, and never while the document has changes with missing dependencies.
 */
import * as Automerge from "@automerge/automerge"
import type { StorageKey } from "@automerge/automerge-repo/slim"
import { createHash, randomBytes } from "node:crypto"
import { watch as fsWatch, promises as fsp, type FSWatcher } from "node:fs"
import path from "node:path"
import { ConcordStorageAdapter, defaultWarning, type ConcordStorageAdapterOptions } from "../storage/ConcordStorageAdapter.js"
import { StoreError } from "../storage/StoreError.js"
import { ensureDirIn } from "../storage/atomic.js"
import { chunkContents } from "../storage/chunk-format.js"
import { containsHeads, sameHeads } from "../../doc/heads.js"
import { viewCatchesUp } from "../../doc/view.js"

export { StoreError } from "../storage/StoreError.js"

/** sha256 hex of the bytes: automerge-repo's `keyHash`. */
export function keyHash(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex")
}

/** automerge-repo's `headsHash`: sha256 hex of the concatenated hex head strings. */
export function headsHash(heads: Automerge.Heads): string {
  const h = createHash("sha256")
  for (const head of heads) h.update(head, "utf8")
  return h.digest("hex")
}

export interface DocStoreOptions {
  /** Warnings (damaged chunks, compaction refused, watcher errors). Default: stderr. */
  onWarning?: (msg: string) => void
  /**
   * hex Automerge actor id. Documents returned by load() get it (default: a random actor per load, so
   * callers may change copies concurrently); update() always uses this instance's actor (default: one
   * random actor per DocStore instance), since it serialises load-change-save per document.
   */
  actor?: string
  /** See ConcordStorageAdapterOptions.quarantineGraceMs (default $CONCORD_QUARANTINE_GRACE_MS, else 60 s). */
  quarantineGraceMs?: number
  /**
   * Compact when more than this many incremental chunks are tracked. Default 64; a big document's limit
   * is one chunk per 256 bytes of its snapshot, when that is more (compacting costs its size).
   */
  maxIncrementals?: number
  /** Compact when the tracked incremental chunks hold more than this many changes. Default 256 (or, as above, four per 256 snapshot bytes). */
  maxIncrementalChanges?: number
  /**
   * Keep this instance's own copy (for loads that read only new chunk files) of at most this many
   * documents, least recently used first out; a copy is made from a document's second load on, so a
   * process that loads a document once never pays for one. Default 8.
   */
  maxCopies?: number
  /**
   * For long-lived processes (`concord mcp`, the endpoint of `concord run`): keep every document loaded
   * or saved as this instance's one current copy and hand out that copy itself instead of a clone, so a
   * load or update costs only the chunk files that are new since (no copy of the document per call).
   * Documents returned are read-only for the caller: change them only through update(). A caller that
   * changes one anyway makes the kept copy outdated, which the next call notices (a full load). Every
   * change is made by this instance's one actor. Default false.
   */
  live?: boolean
  /**
   * Write chunk files with blocking system calls (ConcordStorageAdapterOptions.blockingWrites): for a
   * process that serves one writer at a time (`concord mcp` speaks for one agent), a durable write then
   * makes no round trips through Node's thread pool. "alone": only while no other write is under way,
   * for a process that serves many at once (the endpoint of `concord run`: a lone report is written
   * with blocking calls, concurrent ones overlap in the thread pool; always blocking measured slower
   * there). Default false.
   */
  blockingWrites?: boolean | "alone"
  /** Read with blocking system calls (ConcordStorageAdapterOptions.blockingReads): a one-shot `concord report`. */
  blockingReads?: boolean
  /**
   * Group commit of chunk files (ConcordStorageAdapterOptions.groupWrites), for a process that serves
   * many writers at once (the endpoint of `concord run`): the chunk files of every document saved in one
   * turn of the event loop, and of those saved while a group is being made durable, are written together
   * (each file fsynced, each directory once, all at once through the thread pool); each save still
   * returns only once its file is durable. Takes precedence over blockingWrites. Default false.
   */
  groupWrites?: boolean
  /**
   * Called after every durable save (an incremental chunk or a compaction) with the document saved,
   * the heads it was loaded at by this instance (empty if none), and the chunk files this instance knows
   * make it up ("snapshot/<hash>", "incremental/<hash>"). Awaited; errors become warnings. PlanStore
   * uses it to keep report digests current for every writer (reports, sync, compaction). After a change
   * made in place (changeInPlace), the document's JavaScript view may lag behind its heads: read its
   * heads and bytes, or load() it, not its values.
   */
  onSaved?: (docId: string, doc: Automerge.Doc<unknown>, info: SavedInfo) => Promise<void> | void
  /**
   * Create the store's directory at the first write if it does not exist (default false: writes into a
   * store whose directory is gone fail with StoreGoneError; see ConcordStorageAdapterOptions.create).
   */
  create?: boolean
  /**
   * Automerge may be called only once this resolves: a one-shot `concord report` compiles Automerge's
   * WebAssembly while it starts, and reads the store's files meanwhile. Loads read their chunk files,
   * then wait for it; saves wait for it. If it rejects, so do they. Default: no wait.
   */
  ready?: Promise<unknown>
}

export interface SavedInfo {
  /** heads of what this instance had loaded or saved before (a base the saved doc contains) */
  base: Automerge.Heads
  /** chunk files whose content makes up the saved document (complete only if `complete`) */
  chunks: string[]
  /** `chunks` together hold exactly the saved document */
  complete: boolean
}

type ChunkType = "snapshot" | "incremental"

interface TrackedChunk {
  key: StorageKey
  type: ChunkType
  size: number
  /** changes held (incrementals; 0 for snapshots) */
  changes: number
}

interface DocState {
  /** chunks this instance loaded or wrote, which a compaction may delete */
  chunks: Map<string, TrackedChunk>
  /**
   * Heads covering everything in `chunks` (the heads last loaded/saved). A document must contain
   * all of them before the chunks may be replaced by its snapshot. Also the `since` of saveSince.
   */
  heads: Automerge.Heads
  /** the last load found changes whose dependencies are missing */
  missingDeps: string[]
  /** already warned that compaction is blocked for this state */
  warnedNoCompact: boolean
  /** `chunks` hold exactly the document at `heads` (false after saving a doc that lacked some of them) */
  exact: boolean
  /** (live) the #tick at which the last look at the disk for new chunks of this document began */
  listedAt?: number
  /** (live) Date.now() when that look began */
  lookedAtMs?: number
  /**
   * (live) The document's directories' stamp (adapter.chunkDirsStamp) taken just before a look that found
   * every chunk file listed in `chunks`, and Date.now() then: while the stamp stays the same (for at most
   * STAMP_TRUST_MS), a look need not list them again.
   */
  stamp?: { dirs: string; at: number }
  /**
   * This instance's own copy of the document as of `heads` (never handed out: callers get clones), so
   * a long-lived process's next load reads only the chunk files that are new since.
   */
  doc?: Automerge.Doc<unknown>
  /** (live) `doc`'s JavaScript view lags behind its backend (changeInPlace): brought up to date when handed out */
  viewBehind?: boolean
  /** (live) `doc` itself may be held by a caller (it was handed out, or kept from a call that returned it) */
  handedOut?: boolean
}

/** What changeInPlace's function gets: the document's backend, to change, and its heads before. */
export interface InPlace<T> {
  backend: ReturnType<typeof Automerge.getBackend>
  heads: Automerge.Heads
  /**
   * The document with its JavaScript view up to date, to read before changing the backend (brings a
   * lagging view up to date, once). Not to be kept: it is an outdated document once fn changes the backend.
   */
  view(): Automerge.Doc<T>
}

const keyStr = (key: StorageKey) => key.join("/")

/**
 * (live) How long a look at a document's directories may be answered by their stamp instead of a listing
 * (see #loadNewChunks): a full listing at least this often also restores quarantined files of the document
 * that have become readable (as the adapter's restoreIntervalMs) and retries a file another writer had not
 * finished writing when it was listed.
 */
const STAMP_TRUST_MS = 1000

/** Snapshot bytes per incremental chunk a big document may gather before it is compacted (see #saveChunks). */
const SNAPSHOT_BYTES_PER_CHUNK = 256

/** Incremental bytes a small document may gather before it is compacted (see #saveChunks): live stores, other stores. */
const COMPACT_FLOOR_BYTES = { live: 8192, other: 1024 }

export interface UpdateOptions {
  /**
   * Live stores: skip looking at the disk for chunks other processes wrote if this instance looked
   * within this many ms. Only for changes that do not depend on what others wrote (appending a report
   * to a log: the change merges with theirs all the same, and the next look brings theirs in).
   */
  recentMs?: number
}

export interface LoadOptions {
  /**
   * Keep this instance's own copy of the document, so that the next load reads only new chunk files
   * (default true; at most maxCopies documents are kept). Pass false for a document read once.
   */
  keepCopy?: boolean
  /**
   * Live stores: return this instance's copy without looking at the disk if it looked within this many
   * ms. Only for reads whose answer a slightly older copy gives as well (a fact that, once true, stays
   * true), and whose caller looks again before it acts on the copy lacking something.
   */
  recentMs?: number
}

interface ReadChunk {
  key: StorageKey
  type: ChunkType
  data: Uint8Array
}

interface LoadedChunks {
  doc: Automerge.Doc<unknown> | undefined
  /** chunks whose every change is in `doc` */
  applied: TrackedChunk[]
  /** chunks read but not (fully) in `doc`: missing dependencies, or rejected; never delete these */
  notApplied: ReadChunk[]
}

export class DocStore {
  readonly dir: string
  readonly adapter: ConcordStorageAdapter
  readonly #warn: (msg: string) => void
  readonly #actor: string | undefined
  /** the actor of update(): one per instance */
  readonly #ownActor: string
  readonly #maxIncrementals: number
  readonly #maxIncrementalChanges: number
  readonly #maxCopies: number
  readonly #live: boolean
  readonly #onSaved: DocStoreOptions["onSaved"]
  readonly #ready: Promise<unknown> | undefined
  readonly #state = new Map<string, DocState>()
  /** docIds whose DocState holds a copy, least recently used first */
  readonly #copies = new Set<string>()
  /** docIds loaded at least once: a copy is kept from the second load on (a one-shot process never pays for one) */
  readonly #loadedOnce = new Set<string>()
  readonly #locks = new Map<string, Promise<unknown>>()
  /** orders load requests and looks at the disk (see #sharedLoad) */
  #tick = 0
  /** live stores: how often a kept copy's lagging JavaScript view was brought up to date (for tests) */
  readonly viewStats = { updates: 0 }

  constructor(dir: string, opts: DocStoreOptions = {}) {
    this.dir = path.resolve(dir)
    this.#warn = opts.onWarning ?? defaultWarning
    this.#actor = opts.actor
    this.#ownActor = opts.actor ?? randomBytes(16).toString("hex")
    this.#maxIncrementals = opts.maxIncrementals ?? 64
    this.#maxIncrementalChanges = opts.maxIncrementalChanges ?? 256
    this.#live = opts.live ?? false
    this.#maxCopies = opts.maxCopies ?? (this.#live ? 4096 : 8)
    this.#onSaved = opts.onSaved
    this.#ready = opts.ready
    const adapterOpts: ConcordStorageAdapterOptions = { onWarning: this.#warn, create: opts.create ?? false }
    if (opts.quarantineGraceMs !== undefined) adapterOpts.quarantineGraceMs = opts.quarantineGraceMs
    if (this.#live) adapterOpts.restoreIntervalMs = 1000
    if (opts.blockingWrites) adapterOpts.blockingWrites = opts.blockingWrites
    if (opts.blockingReads) adapterOpts.blockingReads = true
    if (opts.groupWrites) adapterOpts.groupWrites = true
    this.adapter = new ConcordStorageAdapter(this.dir, adapterOpts)
  }

  /** Documents handed out are this instance's own copies (see DocStoreOptions.live): never free them. */
  get live(): boolean {
    return this.#live
  }

  // ------------------------------------------------------------------ load

  /**
   * Load a document chunk by chunk. Returns undefined if the document has no (valid) chunk.
   * Records the chunks loaded and the heads seen, for the next save() of this docId.
   */
  async load<T>(docId: string, opts: LoadOptions = {}): Promise<Automerge.Doc<T> | undefined> {
    checkDocId(docId)
    const arrived = ++this.#tick
    return this.#withLock(docId, () => {
      const shared = this.#sharedLoad(docId, arrived, true) ?? this.#recentCopy(docId, opts.recentMs, true)
      if (shared) return Promise.resolve(shared as Automerge.Doc<T>)
      return this.#load<T>(docId, this.#live ? this.#ownActor : this.#actor, this.#live || opts.keepCopy !== false, true)
    })
  }

  /**
   * Live stores: the kept copy, if this instance looked at the disk for the document within `ms`; with
   * `view`, as it is handed out (its JavaScript view up to date), else as it is (see changeInPlace).
   */
  #recentCopy(docId: string, ms: number | undefined, view: boolean): Automerge.Doc<unknown> | undefined {
    if (!this.#live || !ms) return undefined
    const st = this.#state.get(docId)
    if (!st?.doc || st.lookedAtMs === undefined || st.missingDeps.length > 0 || isOutdated(st.doc)) return undefined
    const age = Date.now() - st.lookedAtMs
    if (age < 0 || age >= ms) return undefined
    this.#keepCopy(docId, st.doc)
    return view ? this.#handOut(st) : st.doc
  }

  /**
   * Live stores: loads of one document that were waiting while another load of it looked at the disk,
   * a look that began after they were asked for, share what it found (16 senders reporting at once cost
   * one listing of the plan, not 16). Whatever was durable when such a load was asked for is in it.
   */
  #sharedLoad(docId: string, arrived: number, view: boolean): Automerge.Doc<unknown> | undefined {
    if (!this.#live) return undefined
    const st = this.#state.get(docId)
    if (!st?.doc || st.listedAt === undefined || st.listedAt <= arrived || st.missingDeps.length > 0 || isOutdated(st.doc)) return undefined
    this.#keepCopy(docId, st.doc)
    return view ? this.#handOut(st) : st.doc
  }

  /**
   * Live stores: the kept copy as a caller may see it: its JavaScript view brought up to date if changes
   * made in place left it behind (one batch for all of them), and marked as held by a caller.
   */
  #handOut(st: DocState): Automerge.Doc<unknown> {
    if (st.viewBehind && st.doc) {
      st.doc = viewCatchesUp(st.doc)
      this.viewStats.updates++
    }
    st.viewBehind = false
    st.handedOut = true
    return st.doc!
  }

  /**
   * Load, change, save, with no other load or save of this document by this instance in between, so
   * every change can be made by this instance's one actor (a new actor per change makes documents
   * slower to load as they grow). `fn` gets the document (undefined if there is none) and returns the
   * document to save, or undefined to write nothing; if it throws, nothing is written. It also gets the
   * actor to use for a document it creates.
   */
  async update<T, R extends Automerge.Doc<T> | undefined>(
    docId: string,
    fn: (doc: Automerge.Doc<T> | undefined, actor: string) => R,
    opts: UpdateOptions = {}
  ): Promise<R> {
    checkDocId(docId)
    const arrived = ++this.#tick
    return this.#withLock(docId, async () => {
      const known = this.#state.get(docId)?.heads
      const kept = this.#sharedLoad(docId, arrived, true) ?? this.#recentCopy(docId, opts.recentMs, true)
      let doc = (kept as Automerge.Doc<T> | undefined) ?? (await this.#load<T>(docId, this.#ownActor, true, true))
      // Our actor's next change must follow every change it already made here; if the load somehow
      // lacks one (it cannot, as saves are durable before they return), use a fresh actor instead of
      // risking two different changes with one (actor, seq).
      if (doc && known && known.length > 0 && !containsHeads(doc, known)) doc = Automerge.clone(doc)
      const next = fn(doc, this.#ownActor)
      if (next !== undefined && next !== doc) await this.#save(docId, next)
      return next
    })
  }

  /**
   * Live stores: update() for a change made directly on the document's Automerge backend (`fn` gets it
   * and makes its change with a commit), saved as durably as update()'s, without bringing the document's
   * JavaScript view up to date. Automerge's `change` does that at every change, at a cost that grows
   * with the document (a list of 30,000 reports: ten times the change itself); here it is done when the
   * document is next handed out (load, update), in one batch for every change made in place since. A
   * caller holding the copy handed out before keeps it as it was (an outdated document: readable, its
   * heads its own, refused by Automerge.change). If `fn` throws, nothing is written (and a change it made
   * is dropped with the copy). Returns `done: false`, having called nothing, when the change cannot be
   * made in place: no document (or only one with missing dependencies, or one lacking a change this
   * instance made): use update().
   */
  async changeInPlace<T, R>(docId: string, fn: (target: InPlace<T>) => R, opts: UpdateOptions = {}): Promise<{ done: false } | { done: true; result: R }> {
    if (!this.#live) throw new Error("changeInPlace is for live stores")
    checkDocId(docId)
    const arrived = ++this.#tick
    return this.#withLock(docId, async () => {
      const known = this.#state.get(docId)?.heads
      const doc =
        this.#sharedLoad(docId, arrived, false) ?? this.#recentCopy(docId, opts.recentMs, false) ?? (await this.#load<T>(docId, this.#ownActor, true, false))
      const st = this.#state.get(docId)
      if (!doc || !st || st.doc !== doc || st.missingDeps.length > 0) return { done: false }
      if (known && known.length > 0 && !containsHeads(doc, known)) return { done: false }
      // the copy a caller may hold is given up to it (outdated at the heads its view shows); the change goes
      // on a new one of our own, sharing all of its view
      const detach = () => {
        if (!st.handedOut) return
        st.doc = viewCatchesUp(st.doc!)
        st.handedOut = false
      }
      detach()
      const backend = Automerge.getBackend(st.doc!)
      const heads = backend.getHeads()
      let result: R
      try {
        result = fn({
          backend,
          heads,
          view: () => {
            const seen = this.#handOut(st) as Automerge.Doc<T>
            detach()
            return seen
          },
        })
      } catch (e) {
        if (!sameHeads(heads, backend.getHeads())) this.#dropCopy(docId)
        throw e
      }
      if (sameHeads(heads, backend.getHeads())) return { done: true, result }
      st.viewBehind = true
      await this.#save(docId, st.doc!)
      return { done: true, result }
    })
  }

  async #load<T>(docId: string, actor: string | undefined, keepCopy: boolean, view: boolean): Promise<Automerge.Doc<T> | undefined> {
    {
      const again = await this.#loadNewChunks(docId, actor, keepCopy, view)
      if (again) return again as Automerge.Doc<T>
      const lookedAt = ++this.#tick
      const lookedAtMs = Date.now()
      const { doc, applied } = await this.#loadChunks(docId, actor)
      if (!doc) {
        this.#dropCopy(docId)
        this.#state.delete(docId)
        return undefined
      }
      const missingDeps = Automerge.getMissingDeps(doc, Automerge.getHeads(doc))
      if (missingDeps.length > 0) {
        this.#warn(
          `document ${docId} has changes whose dependencies are missing (${missingDeps.length} missing, e.g. ` +
            `${missingDeps[0]}); it will not be compacted while they are missing`
        )
      }
      this.#dropCopy(docId)
      this.#state.set(docId, {
        chunks: new Map(applied.map(c => [keyStr(c.key), c])),
        heads: Automerge.getHeads(doc),
        missingDeps,
        warnedNoCompact: false,
        exact: true,
        listedAt: lookedAt,
        lookedAtMs,
      })
      const loadedBefore = this.#loadedOnce.has(docId)
      this.#loadedOnce.add(docId)
      if (keepCopy && (loadedBefore || this.#live) && this.#maxCopies > 0 && missingDeps.length === 0) this.#keepCopy(docId, this.#fork(doc, undefined))
      return doc as Automerge.Doc<T>
    }
  }

  #fork(doc: Automerge.Doc<unknown>, actor: string | undefined): Automerge.Doc<unknown> {
    // live: one copy, handed out as it is (its actor is this instance's, set when it was loaded)
    if (this.#live) return doc
    return actor ? Automerge.clone(doc, { actor: actor as Automerge.ActorId }) : Automerge.clone(doc)
  }

  /** Keep `copy` as this instance's copy of the document (evicting the least recently used beyond maxCopies). */
  #keepCopy(docId: string, copy: Automerge.Doc<unknown>): void {
    const st = this.#state.get(docId)
    if (!st) return
    // (live: an older copy shares its memory with the new one, or is still held by a caller)
    if (st.doc && st.doc !== copy && !this.#live) Automerge.free(st.doc)
    if (st.doc !== copy) {
      // a new copy: its view is up to date (Automerge made it), and the call that made it returns it
      st.viewBehind = false
      st.handedOut = true
    }
    st.doc = copy
    this.#copies.delete(docId)
    this.#copies.add(docId)
    while (this.#copies.size > this.#maxCopies) {
      const oldest = this.#copies.values().next().value as string
      this.#dropCopy(oldest)
    }
  }

  #dropCopy(docId: string): void {
    const st = this.#state.get(docId)
    if (st?.doc && !this.#live) Automerge.free(st.doc)
    if (st) {
      st.doc = undefined
      st.viewBehind = false
      st.handedOut = false
    }
    this.#copies.delete(docId)
  }

  /**
   * A repeated load in the same process: apply only the chunk files that appeared since this instance
   * last loaded or saved the document, to its own copy. Returns undefined (the caller does a full load)
   * when there is no copy, or when a new file vanished before it could be read (another process
   * compacted meanwhile), or when anything did not apply cleanly.
   */
  async #loadNewChunks(docId: string, actor: string | undefined, keepCopy: boolean, view: boolean): Promise<Automerge.Doc<unknown> | undefined> {
    const st = this.#state.get(docId)
    if (st?.doc && this.#live && isOutdated(st.doc)) this.#dropCopy(docId) // a caller changed it: load it again
    if (!st?.doc || st.missingDeps.length > 0) return undefined
    const lookedAt = ++this.#tick
    const lookedAtMs = Date.now()
    // A live store's copy of a document it looked at is current as long as neither of the document's
    // directories changed since (a file added, removed or renamed changes them): two stats instead of two
    // listings, each a trip through the thread pool (a report that names no attempt reads the plan afresh,
    // and the endpoint's one thread serves every report). See ConcordStorageAdapter.chunkDirsStamp.
    const stamp = this.#live ? this.adapter.chunkDirsStamp(docId) : undefined
    const seen = st.stamp
    if (stamp !== undefined && seen?.dirs === stamp && lookedAtMs >= seen.at && lookedAtMs - seen.at < STAMP_TRUST_MS) {
      return this.#unchanged(docId, st, lookedAt, lookedAtMs, actor, keepCopy, view)
    }
    st.stamp = undefined
    // Same listing order as a full load: incrementals first, then snapshots.
    const listed = [
      ...(await this.adapter.listKeys([docId, "incremental"])).map(key => ({ key, type: "incremental" as const })),
      ...(await this.adapter.listKeys([docId, "snapshot"])).map(key => ({ key, type: "snapshot" as const })),
    ].filter(c => c.key.length === 3)
    // Every chunk gone (the document or the whole store was deleted): not our copy, but what a full load
    // finds, so that nobody writes its next changes on top of a document that is no longer there.
    if (listed.length === 0) return undefined
    const onDisk = new Set(listed.map(c => keyStr(c.key)))
    const fresh = listed.filter(c => !st.chunks.has(keyStr(c.key)))
    // Chunks another process compacted away are in a snapshot we list (it is written first).
    for (const k of [...st.chunks.keys()]) if (!onDisk.has(k)) st.chunks.delete(k)
    // (our copy may have been evicted meanwhile, by loads of other documents)
    if (!st.doc) return undefined
    if (fresh.length === 0) {
      if (stamp !== undefined) st.stamp = { dirs: stamp, at: lookedAtMs }
      return this.#unchanged(docId, st, lookedAt, lookedAtMs, actor, keepCopy, view)
    }
    const chunks: ReadChunk[] = []
    for (const c of fresh) {
      const data = await this.adapter.load(c.key)
      if (!data) return undefined
      chunks.push({ key: c.key, type: c.type, data })
    }
    if (!st.doc) return undefined
    const { doc, applied, notApplied } = this.#applyChunks(this.#fork(st.doc, actor), chunks, actor)
    if (!doc || notApplied.length > 0) return undefined
    for (const c of applied) st.chunks.set(keyStr(c.key), c)
    st.heads = Automerge.getHeads(doc)
    st.listedAt = lookedAt
    st.lookedAtMs = lookedAtMs
    // (every listed file is in `chunks` now)
    if (stamp !== undefined) st.stamp = { dirs: stamp, at: lookedAtMs }
    if (keepCopy && this.#maxCopies > 0) this.#keepCopy(docId, this.#fork(doc, undefined))
    else this.#dropCopy(docId)
    return doc
  }

  /** #loadNewChunks found nothing new: our copy is the document as it is on disk. */
  #unchanged(docId: string, st: DocState, lookedAt: number, lookedAtMs: number, actor: string | undefined, keepCopy: boolean, view: boolean) {
    st.listedAt = lookedAt
    st.lookedAtMs = lookedAtMs
    // (live: the copy itself, as a caller may see it unless the caller is changeInPlace)
    const out = this.#live && view ? this.#handOut(st) : this.#fork(st.doc!, actor)
    if (keepCopy) this.#keepCopy(docId, st.doc!)
    else this.#dropCopy(docId)
    return out
  }

  /** Read all chunks of a doc (incremental listing first, for consistency with compactions). */
  async #loadChunks(docId: string, actor: string | undefined): Promise<LoadedChunks> {
    // List/read incremental/ before snapshot/: a compaction writes its snapshot before deleting the
    // chunks it replaces, so any incremental deleted before we listed it is in a snapshot we will
    // list afterwards. Files deleted between listing and reading make loadRange re-list.
    const incrementals = await this.adapter.loadRange([docId, "incremental"])
    const snapshots = await this.adapter.loadRange([docId, "snapshot"])
    // Automerge from here on (a document kept from an earlier load or save has waited already)
    if (this.#ready) await this.#ready
    const chunks: ReadChunk[] = []
    for (const [type, list] of [
      ["snapshot", snapshots],
      ["incremental", incrementals],
    ] as const) {
      for (const c of list) if (c.data && c.key.length === 3) chunks.push({ key: c.key, type, data: c.data })
    }
    return this.#applyChunks(undefined, chunks, actor)
  }

  /**
   * Apply verified chunks to `doc` (a new doc if undefined) so that no chunk can hide another.
   * Chunks holding a document (snapshots) are applied one at a time; change-only chunks in one
   * batch (much faster than one by one, as every loadIncremental materialises its patches), and if
   * afterwards any change of the batch is not in the document, the chunks concerned are applied
   * again one at a time. A chunk counts as applied only if every change it holds is now in the
   * document (checked by hash); the others (missing dependencies, rejected by Automerge) are in
   * `notApplied` and must never be deleted.
   */
  #applyChunks(doc: Automerge.Doc<unknown> | undefined, chunks: ReadChunk[], actor: string | undefined): LoadedChunks {
    const infos = chunks.map(c => ({ ...c, contents: chunkContents(c.data) }))
    const tryApply = (data: Uint8Array, warnAs?: StorageKey, isDocument = false): boolean => {
      try {
        if (!doc && isDocument) {
          // the first chunk holding a whole document: Automerge.load is much faster than
          // loadIncremental into an empty document
          doc = actor ? Automerge.load<unknown>(data, { actor: actor as Automerge.ActorId }) : Automerge.load<unknown>(data)
          return true
        }
        const base = doc ?? (actor ? Automerge.init<unknown>({ actor }) : Automerge.init<unknown>())
        doc = Automerge.loadIncremental(base, data)
        return true
      } catch (e) {
        // (only happens when loading into an empty doc; a non-empty one silently ignores bad input)
        if (warnAs) {
          this.#warn(`Automerge rejected chunk ${this.adapter.filePath(warnAs)} (${(e as Error).message}); skipped it (left on disk)`)
        }
        return false
      }
    }
    const batch = infos.filter(c => c.contents && !c.contents.hasDocument && !c.contents.opaque)
    for (const c of infos) if (!batch.includes(c)) tryApply(c.data, c.key, !!c.contents?.hasDocument && !c.contents.opaque)
    if (batch.length === 1) tryApply(batch[0].data, batch[0].key)
    else if (batch.length > 1) {
      const all = new Uint8Array(batch.reduce((n, c) => n + c.data.length, 0))
      let off = 0
      for (const c of batch) {
        all.set(c.data, off)
        off += c.data.length
      }
      const ok = tryApply(all)
      const wanted = batch.flatMap(c => c.contents!.changeHashes)
      const missing = new Set(doc ? Automerge.getMissingDeps(doc, wanted) : wanted)
      if (!ok || wanted.some(h => missing.has(h))) {
        for (const c of batch) if (c.contents!.changeHashes.some(h => missing.has(h))) tryApply(c.data, c.key)
      }
    }
    const result = doc as Automerge.Doc<unknown> | undefined
    const hashesOf = (c: (typeof infos)[number]) => (c.contents ? [...c.contents.changeHashes, ...c.contents.documentHeads] : [])
    const missing = new Set(result ? Automerge.getMissingDeps(result, infos.flatMap(hashesOf)) : [])
    const applied: TrackedChunk[] = []
    const notApplied: ReadChunk[] = []
    for (const c of infos) {
      if (result && c.contents && !c.contents.opaque && hashesOf(c).every(h => !missing.has(h))) {
        applied.push({ key: c.key, type: c.type, size: c.data.length, changes: c.contents.changeHashes.length })
      } else {
        notApplied.push({ key: c.key, type: c.type, data: c.data })
      }
    }
    if (result && notApplied.length > 0 && Automerge.getMissingDeps(result, Automerge.getHeads(result)).length === 0) {
      // nothing is waiting for dependencies, so these were dropped by Automerge
      for (const c of notApplied) {
        this.#warn(`Automerge did not apply chunk ${this.adapter.filePath(c.key)}; left it on disk`)
      }
    }
    return { doc: result, applied, notApplied }
  }

  // ------------------------------------------------------------------ save

  /**
   * Persist everything in `doc` not yet on disk for this docId (durably). Compacts into a snapshot
   * when many incrementals accumulated, deleting only chunks this instance loaded or wrote.
   */
  async save<T>(docId: string, doc: Automerge.Doc<T>): Promise<void> {
    checkDocId(docId)
    return this.#withLock(docId, () => this.#save(docId, doc))
  }

  async #save<T>(docId: string, doc: Automerge.Doc<T>): Promise<void> {
    if (this.#ready) await this.#ready
    try {
      await this.#saveChunks(docId, doc)
    } catch (e) {
      // whatever reached the disk is found by the next load; our copy may no longer match it
      this.#dropCopy(docId)
      throw e
    }
  }

  async #saveChunks<T>(docId: string, doc: Automerge.Doc<T>): Promise<void> {
    {
      const heads = Automerge.getHeads(doc)
      let st = this.#state.get(docId)
      if (st && sameHeads(st.heads, heads)) return

      // everything this instance loaded/saved that `doc` contains: saveSince those heads
      const since = st ? st.heads.filter(h => containsHeads(doc, [h])) : []
      const containsTracked = st ? since.length === st.heads.length : true
      const incBytes = since.length > 0 ? Automerge.saveSince(doc, since) : Automerge.save(doc)
      if (incBytes.length === 0 && st) {
        // nothing new (doc is an ancestor of what we have)
        return
      }

      if (!st) {
        st = { chunks: new Map(), heads: [], missingDeps: [], warnedNoCompact: false, exact: true }
        this.#state.set(docId, st)
      }
      const base = st.heads

      const incChanges = chunkContents(incBytes)?.changeHashes.length ?? 0
      let snapshotSize = 0
      let incrementalSize = incBytes.length
      let incrementalCount = 1
      let incrementalChanges = incChanges
      for (const c of st.chunks.values()) {
        if (c.type === "snapshot") snapshotSize += c.size
        else {
          incrementalSize += c.size
          incrementalCount++
          incrementalChanges += c.changes
        }
      }
      // Change chunks cost ~10x the bytes per change of a snapshot and load much slower: compact by
      // count of chunks, of changes and of bytes. A compaction writes the whole document again, at a cost
      // in proportion to its size, so a big document's count limits grow with its snapshot (one chunk per
      // SNAPSHOT_BYTES_PER_CHUNK of it): a change's share of the compactions then stays the same however
      // long the document (a report log of 30,000 reports: about 800 chunks between compactions, not 64,
      // which cost more than the report itself), and its chunks still stay within a few times the
      // snapshot's bytes. A compaction also costs the same whatever the document's size (a snapshot file
      // written, the chunks it replaces removed): in a live store (`concord run`'s endpoint, serving every
      // report of a plan, and `concord mcp`) a small document gathers 8 KiB of chunks (about 20 reports) before it
      // compacts, not 1 KiB (a log compacted at every fifth report of its first 50: the endpoint's
      // main-thread CPU per report at 16 logs at once 0.56 ms, against 0.49 ms at 8 KiB; reading such a
      // log costs ~0.15 ms per chunk file more). Other stores compact as a stock automerge-repo does (as
      // soon as the chunks outweigh the snapshot): where a sync server shares the store, its Repo compacts
      // by that rule whatever a writer left (server-local.test.ts), so a one-shot writer would only move
      // the work to the server; the endpoint's thread serves every report, so there it is worth saving.
      const floor = this.#live ? COMPACT_FLOOR_BYTES.live : COMPACT_FLOOR_BYTES.other
      const wantCompact =
        incrementalCount > Math.max(this.#maxIncrementals, snapshotSize / SNAPSHOT_BYTES_PER_CHUNK) ||
        incrementalChanges > Math.max(this.#maxIncrementalChanges, (4 * snapshotSize) / SNAPSHOT_BYTES_PER_CHUNK) ||
        (incrementalSize >= snapshotSize && incrementalSize > floor)

      let blocked: string | undefined
      if (wantCompact) {
        const missing = Automerge.getMissingDeps(doc, heads)
        if (st.missingDeps.length > 0 || missing.length > 0) {
          const m = missing.length > 0 ? missing : st.missingDeps
          blocked = `it has changes whose dependencies are missing (${m.length}, e.g. ${m[0]})`
        } else if (!containsTracked) {
          blocked = "the document being saved does not contain everything this store loaded for it"
        }
      }

      if (wantCompact && !blocked) {
        const bytes = Automerge.save(doc)
        const key: StorageKey = [docId, "snapshot", headsHash(heads)]
        await this.adapter.save(key, bytes)
        // the snapshot is durable: the chunks it replaces can go (removed at once, not one after another:
        // up to 64 files, and the save is answered only after them)
        const replaced = [...st.chunks.values()].filter(c => keyStr(c.key) !== keyStr(key))
        await Promise.all(replaced.map(c => this.adapter.remove(c.key)))
        st.chunks = new Map([[keyStr(key), { key, type: "snapshot", size: bytes.length, changes: 0 }]])
        st.heads = heads
        st.warnedNoCompact = false
        st.exact = true
        this.#copyAfterSave(docId, doc as Automerge.Doc<unknown>, true)
        await this.#notifySaved(docId, doc as Automerge.Doc<unknown>, base, st, true)
        return
      }

      if (blocked && !st.warnedNoCompact) {
        st.warnedNoCompact = true
        this.#warn(`not compacting document ${docId}: ${blocked}`)
      }
      const hash = keyHash(incBytes)
      const key: StorageKey = [docId, "incremental", hash]
      await this.adapter.save(key, incBytes, hash)
      st.chunks.set(keyStr(key), { key, type: "incremental", size: incBytes.length, changes: incChanges })
      st.heads = containsTracked ? heads : dedupe([...st.heads, ...heads])
      // Our copy must be exactly what `heads` covers; when the saved doc lacks something we had, reload.
      const clean = containsTracked && st.missingDeps.length === 0
      st.exact = st.exact && containsTracked
      this.#copyAfterSave(docId, doc as Automerge.Doc<unknown>, clean)
      await this.#notifySaved(docId, doc as Automerge.Doc<unknown>, containsTracked ? base : [], st, st.exact && st.missingDeps.length === 0)
    }
  }

  /** After a save: keep a copy of what was saved if we had one (a long-lived user), else none. */
  #copyAfterSave(docId: string, doc: Automerge.Doc<unknown>, clean: boolean): void {
    if (clean && (this.#copies.has(docId) || this.#live)) this.#keepCopy(docId, this.#fork(doc, undefined))
    else this.#dropCopy(docId)
  }

  async #notifySaved(docId: string, doc: Automerge.Doc<unknown>, base: Automerge.Heads, st: DocState, complete: boolean): Promise<void> {
    if (!this.#onSaved) return
    try {
      // (listed only if the hook reads them: a live store's hook does not, at every report)
      let chunks: string[] | undefined
      const info: SavedInfo = {
        base,
        complete,
        get chunks() {
          chunks ??= [...st.chunks.values()].map(c => `${c.key[1]}/${c.key[2]}`).sort()
          return chunks
        },
      }
      await this.#onSaved(docId, doc, info)
    } catch (e) {
      this.#warn(`after saving document ${docId}: ${(e as Error)?.message ?? String(e)}`)
    }
  }

  /**
   * The chunk files ("snapshot/<hash>", "incremental/<hash>") whose content exactly makes up this
   * instance's copy of the document, as of its last load or save; undefined when there is no clean copy.
   */
  chunkSet(docId: string): string[] | undefined {
    const st = this.#state.get(docId)
    if (!st?.exact || st.missingDeps.length > 0) return undefined
    return [...st.chunks.values()].map(c => `${c.key[1]}/${c.key[2]}`).sort()
  }

  // ------------------------------------------------------------------ raw chunks

  /**
   * Load a document without building its JavaScript view (Automerge's backend only: heads, saveSince,
   * loadIncremental), chunk by chunk, each chunk verified first. For a process that only passes
   * changes on (the sync server answering an exchange). With `known` (a backend and the chunk files it
   * holds, "type/hash"), only the chunk files not among them are read and verified, into that backend
   * (changed in place): a document with nothing new costs two directory listings, whatever its size.
   * The keys returned are the chunk files the backend holds that were still on disk when listed (files
   * another process compacted away are dropped: the snapshot that replaced them is new, so read).
   * Undefined if the document has no valid chunk.
   */
  async loadBackend(
    docId: string,
    known?: { raw: ReturnType<typeof Automerge.getBackend>; keys: Set<string> }
  ): Promise<{ raw: ReturnType<typeof Automerge.getBackend>; keys: Set<string> } | undefined> {
    checkDocId(docId)
    const fileOf = (key: StorageKey) => (key.length === 3 ? `${key[1]}/${key[2]}` : undefined)
    const had = known?.keys ?? new Set<string>()
    const isKnown = (key: StorageKey) => {
      const k = fileOf(key)
      return k !== undefined && had.has(k)
    }
    // as load(): incremental/ before snapshot/, and a file deleted between listing and reading (another
    // process compacted) makes the adapter list again, so the snapshot that replaced it is read
    const incrementals = await this.adapter.loadRangeExcept([docId, "incremental"], isKnown)
    const snapshots = await this.adapter.loadRangeExcept([docId, "snapshot"], isKnown)
    // what the backend holds and is still on disk (a file gone after its listing stays until the next call)
    const keys = new Set<string>()
    for (const key of [...incrementals.listed, ...snapshots.listed]) {
      const k = fileOf(key)
      if (k !== undefined && had.has(k)) keys.add(k)
    }
    let raw = known?.raw
    const fresh = [...snapshots.chunks, ...incrementals.chunks]
    if (fresh.length === 0) return raw ? { raw, keys } : undefined
    // Automerge from here on
    if (this.#ready) await this.#ready
    for (const c of fresh) {
      const k = fileOf(c.key)
      if (!c.data || k === undefined) continue
      const next = raw ?? Automerge.getBackend(Automerge.init())
      try {
        next.loadIncremental(c.data)
        raw = next
        keys.add(k)
      } catch (e) {
        this.#warn(`Automerge did not apply chunk ${this.adapter.filePath(c.key)} (${(e as Error).message}); left it on disk`)
      }
    }
    return raw ? { raw, keys } : undefined
  }

  /**
   * Add Automerge bytes (changes, as saveSince makes them) to a document as one more incremental chunk,
   * durably; nothing on disk is replaced. The caller vouches that the bytes decode (the sync server
   * writes only what it judged). Returns the chunk's key.
   */
  async addChunk(docId: string, bytes: Uint8Array): Promise<StorageKey> {
    checkDocId(docId)
    const key: StorageKey = [docId, "incremental", keyHash(bytes)]
    await this.#withLock(docId, () => this.adapter.save(key, bytes))
    return key
  }

  /**
   * Replace chunk files by one snapshot of `raw` (a view-less document read with loadBackend, plus
   * what the caller added to it): the snapshot is written durably first, then only the chunk files in
   * `keys` ("type/hash", which `raw` holds) are removed; nothing is removed while `raw` has changes
   * whose dependencies are missing. Returns the snapshot's "type/hash", or undefined if it did nothing.
   */
  async compactBackend(docId: string, raw: ReturnType<typeof Automerge.getBackend>, keys: Set<string>): Promise<string | undefined> {
    checkDocId(docId)
    if (raw.getMissingDeps([]).length > 0) return undefined
    return this.#withLock(docId, async () => {
      if (this.#ready) await this.#ready
      const key: StorageKey = [docId, "snapshot", headsHash(raw.getHeads())]
      await this.adapter.save(key, raw.save())
      const own = `${key[1]}/${key[2]}`
      await Promise.all(
        [...keys]
          .filter(k => k !== own)
          .map(k => {
            const [type, hash] = k.split("/")
            return this.adapter.remove([docId, type, hash])
          })
      )
      return own
    })
  }

  // ------------------------------------------------------------------ exists

  /**
   * The document's chunk files, "type/hash", sorted: a directory listing, nothing read (incremental/
   * listed before snapshot/, as loads list them). Chunk files are named by their content (incrementals)
   * or heads (snapshots), so an unchanged list means an unchanged document.
   */
  async chunkFiles(docId: string): Promise<string[]> {
    checkDocId(docId)
    const listed = [...(await this.adapter.listKeys([docId, "incremental"])), ...(await this.adapter.listKeys([docId, "snapshot"]))]
    return listed
      .filter(k => k.length === 3)
      .map(k => `${k[1]}/${k[2]}`)
      .sort()
  }

  /** Does the document have any chunk (snapshot or incremental file) on disk? */
  async exists(docId: string): Promise<boolean> {
    checkDocId(docId)
    for (const t of ["incremental", "snapshot"]) {
      if ((await this.adapter.listKeys([docId, t])).some(k => k.length === 3)) return true
    }
    return false
  }

  // ------------------------------------------------------------------ watch

  /**
   * Watch documents for chunks written by other processes (fs.watch on the doc's snapshot/ and
   * incremental/ directories, plus a poll every `pollMs`, default 500). New chunks are verified
   * and applied to the watcher's copy of the doc; `onChange(docId, doc)` gets a writable copy
   * (Automerge.clone, random actor) whenever the heads changed.
   *
   * The first scan of a doc calls onChange if the doc exists and its heads differ from what this
   * DocStore instance last loaded or saved for it (so load-then-watch misses nothing and does not
   * repeat itself). Never throws from the background; errors go to onWarning.
   */
  watch<T>(docIds: string[], onChange: (docId: string, doc: Automerge.Doc<T>) => void, opts: { pollMs?: number } = {}): DocStoreWatch {
    const w = new DocWatcher(this, this.#warn, (id, d) => onChange(id, d as Automerge.Doc<T>), opts.pollMs ?? 500, {
      loadChunks: (id: string) => this.#loadChunks(id, undefined),
      applyChunks: (doc, chunks) => this.#applyChunks(doc, chunks, undefined),
      knownHeads: (id: string) => this.#state.get(id)?.heads,
    })
    for (const id of docIds) w.add(id)
    return { add: (id: string) => w.add(id), adopt: (id, key, base) => w.adopt(id, key, base), close: () => w.close() }
  }

  /**
   * Watch documents for chunk files written by other processes, as watch() does, but hand over the new
   * chunk files themselves (verified, snapshots first) instead of the document: for a caller that holds
   * its own copy of each document and applies only what is new (the `sync --watch` loop), so that a
   * new chunk costs reading that chunk, whatever the size of the document (no copy of the document is
   * kept, applied to or cloned here).
   *
   * The first look at a document hands over the chunk files this DocStore instance has not itself
   * loaded or saved for it (all of them if it never did): load, then watch, misses nothing and does not
   * read again what the load read. Chunk files may come again (a compaction's snapshot holds what
   * earlier ones held); applying one twice changes nothing. Never throws from the background.
   */
  watchChunks(docIds: string[], onChunks: (docId: string, chunks: WatchedChunk[]) => void, opts: { pollMs?: number } = {}): DocStoreWatch {
    const w = new DocWatcher(this, this.#warn, () => {}, opts.pollMs ?? 500, {
      loadChunks: (id: string) => this.#loadChunks(id, undefined),
      applyChunks: (doc, chunks) => this.#applyChunks(doc, chunks, undefined),
      knownHeads: (id: string) => this.#state.get(id)?.heads,
      knownChunks: (id: string) => {
        const st = this.#state.get(id)
        return st ? new Set(st.chunks.keys()) : undefined
      },
      onChunks,
    })
    for (const id of docIds) w.add(id)
    return { add: (id: string) => w.add(id), adopt: (id, key, base) => w.adopt(id, key, base), close: () => w.close() }
  }

  // ------------------------------------------------------------------ internals

  async #withLock<R>(docId: string, fn: () => Promise<R>): Promise<R> {
    const prev = this.#locks.get(docId) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    this.#locks.set(docId, tail)
    try {
      return await run
    } finally {
      if (this.#locks.get(docId) === tail) this.#locks.delete(docId)
    }
  }
}

/**
 * A document another change or load has superseded (Automerge then refuses to change it; reading it
 * still works). Automerge keeps this as the `heads` of the document's hidden state.
 */
function isOutdated(doc: Automerge.Doc<unknown>): boolean {
  const state = (doc as Record<symbol, { heads?: unknown } | undefined>)[Symbol.for("_am_meta")]
  return state?.heads !== undefined
}

function dedupe(heads: string[]): string[] {
  return [...new Set(heads)].sort()
}

function checkDocId(docId: string): void {
  if (typeof docId !== "string" || docId.length < 3 || /[/\\\u0000]/.test(docId) || docId.startsWith(".")) {
    throw new StoreError("use document id", JSON.stringify(docId), "EINVAL", "invalid document id")
  }
}

// -------------------------------------------------------------------- watcher

export interface DocStoreWatch {
  add(docId: string): void
  /**
   * A chunk this process wrote itself (`key`, already durable) whose content the caller already has in
   * memory: the watcher does not read it back. `base()` gives a document holding at least what the
   * chunk holds (e.g. the sync server's live copy); the watcher takes a copy of it as its own the next
   * time other processes' chunks are to be applied (or reads everything again if it gives nothing).
   */
  adopt(docId: string, key: StorageKey, base: () => Automerge.Doc<unknown> | undefined): void
  close(): void
}

/** A chunk file handed over by DocStore.watchChunks. */
export interface WatchedChunk {
  /** "snapshot/<hash>" or "incremental/<hash>" */
  file: string
  type: ChunkType
  /** the file's bytes, verified */
  data: Uint8Array
}

/**
 * Does `doc` hold every change of this chunk file already (a compaction's snapshot of what it has, a
 * chunk file it wrote itself)? false when that cannot be read from the file: then apply it.
 */
export function holdsChunk(doc: Automerge.Doc<unknown>, chunk: Uint8Array): boolean {
  const c = chunkContents(chunk)
  if (!c || c.opaque) return false
  const hashes = [...c.changeHashes, ...c.documentHeads]
  return hashes.length > 0 && containsHeads(doc, hashes)
}

interface WatchHooks {
  loadChunks(docId: string): Promise<LoadedChunks>
  applyChunks(doc: Automerge.Doc<unknown> | undefined, chunks: ReadChunk[]): LoadedChunks
  knownHeads(docId: string): Automerge.Heads | undefined
  /** chunks mode (watchChunks): the chunk files the DocStore instance loaded or saved for a document */
  knownChunks?(docId: string): Set<string> | undefined
  /** chunks mode: new chunk files go here instead of a document to onChange */
  onChunks?(docId: string, chunks: WatchedChunk[]): void
}

interface WatchEntry {
  docId: string
  doc: Automerge.Doc<unknown> | undefined
  /** chunk keys (as strings) applied to `doc` that are still on disk */
  keys: Set<string>
  watchers: FSWatcher[]
  initialized: boolean
  scanning: boolean
  dirty: boolean
  watchFailed: boolean
  warnedWatch: boolean
  settingUp: boolean
  /** inode numbers of the watched incremental/ and snapshot/ directories */
  inodes: number[]
  /** set by adopt(): `doc` lacks chunks this process wrote; take a copy of this before applying more */
  base?: () => Automerge.Doc<unknown> | undefined
  /** adopted chunk keys not yet seen on disk (announced before they are written); then moved to `keys` */
  adopted: Set<string>
}

/** Documents a watcher's poll looks at per tick (see DocWatcher.#poll). */
const POLL_SLICE = 64

class DocWatcher {
  readonly #entries = new Map<string, WatchEntry>()
  readonly #timer: NodeJS.Timeout
  #pollAt = 0
  #closed = false

  constructor(
    private readonly store: DocStore,
    private readonly warn: (msg: string) => void,
    private readonly onChange: (docId: string, doc: Automerge.Doc<unknown>) => void,
    pollMs: number,
    private readonly hooks: WatchHooks
  ) {
    this.#timer = setInterval(() => this.#poll(), Math.max(10, pollMs))
  }

  /**
   * The safety net under fs.watch (lost events, file systems without them): each document's directories
   * are checked and listed again, at most POLL_SLICE documents per tick, round robin, so that watching a
   * 1,000-job plan costs a few hundred syscalls per tick rather than thousands (each document is then
   * polled every pollMs x documents / POLL_SLICE; fs.watch events are handled at once whatever the poll).
   */
  #poll(): void {
    const all = [...this.#entries.values()]
    if (all.length === 0) return
    const n = Math.min(POLL_SLICE, all.length)
    for (let i = 0; i < n; i++) {
      const e = all[(this.#pollAt + i) % all.length]
      void this.#checkWatch(e).then(() => this.#schedule(e))
    }
    this.#pollAt = (this.#pollAt + n) % all.length
  }

  add(docId: string): void {
    if (this.#closed || this.#entries.has(docId)) return
    try {
      checkDocId(docId)
    } catch (e) {
      this.warn(`watch: ${(e as Error).message}`)
      return
    }
    const e: WatchEntry = {
      docId,
      doc: undefined,
      keys: new Set(),
      watchers: [],
      initialized: false,
      scanning: false,
      dirty: false,
      watchFailed: false,
      warnedWatch: false,
      settingUp: false,
      inodes: [],
      adopted: new Set(),
    }
    this.#entries.set(docId, e)
    e.settingUp = true
    void this.#setupWatch(e)
      .catch(err => this.warn(`watch: document ${docId}: ${(err as Error)?.message ?? String(err)}`))
      .finally(() => {
        e.settingUp = false
        this.#schedule(e)
      })
  }

  adopt(docId: string, key: StorageKey, base: () => Automerge.Doc<unknown> | undefined): void {
    const e = this.#entries.get(docId)
    // not watched, or its first scan (which reads every chunk on disk) is still to come
    if (!e?.initialized || key[0] !== docId || (key[1] !== "incremental" && key[1] !== "snapshot")) return
    e.adopted.add(keyStr(key))
    e.base = base
  }

  close(): void {
    this.#closed = true
    clearInterval(this.#timer)
    for (const e of this.#entries.values()) this.#closeWatchers(e)
    this.#entries.clear()
  }

  #closeWatchers(e: WatchEntry): void {
    for (const w of e.watchers) {
      try {
        w.close()
      } catch {
        // ignore
      }
    }
    e.watchers = []
  }

  async #setupWatch(e: WatchEntry): Promise<void> {
    this.#closeWatchers(e)
    e.watchFailed = false
    e.inodes = []
    const fail = (dir: string, err: unknown) => {
      if (!e.warnedWatch) this.warn(`watch: ${StoreError.from("watch", dir, err).message}; will retry (polling meanwhile)`)
      e.warnedWatch = true
      e.watchFailed = true
    }
    for (const t of ["incremental", "snapshot"]) {
      if (this.#closed) return
      const dir = this.#dirOf(e, t)
      try {
        // Create the document's directories, but never the store itself: a store deleted under a
        // watcher stays deleted (polling meanwhile) instead of coming back as an empty skeleton.
        await ensureDirIn(this.store.dir, dir)
        if (this.#closed) return
        const w = fsWatch(dir, { persistent: true }, (_ev, name) => this.#onEvent(e, t, name))
        w.on("error", err => fail(dir, err))
        e.watchers.push(w)
        e.inodes.push((await fsp.stat(dir)).ino)
      } catch (err) {
        fail(dir, err)
      }
    }
    if (!e.watchFailed) e.warnedWatch = false
    if (this.#closed) this.#closeWatchers(e) // closed while we were setting up
  }

  /**
   * A file event: a chunk file this process wrote itself and announced (adopt) needs no look at the
   * directory (its content is in memory already, and it is the only file the event names); anything
   * else does.
   */
  #onEvent(e: WatchEntry, type: string, name: string | Buffer | null): void {
    const k = name ? `${e.docId}/${type}/${String(name)}` : undefined
    if (k && e.adopted.has(k) && !e.scanning) {
      e.adopted.delete(k)
      e.keys.add(k)
      return
    }
    this.#schedule(e)
  }

  #dirOf(e: WatchEntry, type: string): string {
    return path.dirname(this.store.adapter.filePath([e.docId, type, "x"]))
  }

  /** Poll: re-establish fs.watch if it failed or a watched directory was removed / replaced. */
  async #checkWatch(e: WatchEntry): Promise<void> {
    if (e.settingUp) return
    e.settingUp = true
    try {
      let redo = e.watchFailed
      if (!redo) {
        for (const [i, t] of ["incremental", "snapshot"].entries()) {
          const ino = await fsp.stat(this.#dirOf(e, t)).then(
            st => st.ino,
            () => undefined
          )
          if (ino === undefined || ino !== e.inodes[i]) redo = true
        }
      }
      if (redo && !this.#closed) await this.#setupWatch(e)
    } catch (err) {
      this.warn(`watch: document ${e.docId}: ${(err as Error)?.message ?? String(err)}`)
    } finally {
      e.settingUp = false
    }
  }

  #schedule(e: WatchEntry): void {
    if (this.#closed) return
    if (e.scanning) {
      e.dirty = true
      return
    }
    e.scanning = true
    void (async () => {
      try {
        do {
          e.dirty = false
          try {
            await this.#scan(e)
          } catch (err) {
            this.warn(`watch: document ${e.docId}: ${(err as Error)?.message ?? String(err)}`)
          }
        } while (e.dirty && !this.#closed)
      } finally {
        e.scanning = false
      }
    })()
  }

  async #scan(e: WatchEntry): Promise<void> {
    if (this.#closed) return
    if (this.hooks.onChunks) return this.#scanChunks(e)
    if (!e.initialized) {
      const { doc, applied, notApplied } = await this.hooks.loadChunks(e.docId)
      if (this.#closed) return
      e.initialized = true
      e.doc = doc
      e.keys = new Set([...applied, ...notApplied].map(c => keyStr(c.key)))
      const known = this.hooks.knownHeads(e.docId)
      if (doc && !(known && sameHeads(known, Automerge.getHeads(doc)))) this.#emit(e)
      return
    }
    const adapter = this.store.adapter
    // incremental/ before snapshot/, as in load()
    const listed = [...(await adapter.listKeys([e.docId, "incremental"])), ...(await adapter.listKeys([e.docId, "snapshot"]))].filter(k => k.length === 3)
    if (this.#closed) return
    const present = new Set(listed.map(keyStr))
    for (const k of e.adopted) {
      if (!present.has(k)) continue // not written yet
      e.adopted.delete(k)
      e.keys.add(k)
    }
    for (const k of e.keys) if (!present.has(k)) e.keys.delete(k) // compacted away
    const fresh = listed.filter(k => !e.keys.has(keyStr(k))).sort((a, b) => (a[1] === b[1] ? 0 : a[1] === "snapshot" ? -1 : 1))
    if (fresh.length === 0) return
    const chunks: ReadChunk[] = []
    for (const key of fresh) {
      if (e.adopted.has(keyStr(key))) continue // adopted meanwhile
      const data = await adapter.load(key) // verified; undefined if gone (compacted) or damaged
      if (this.#closed) return
      if (data) chunks.push({ key, type: key[1] as ChunkType, data })
    }
    const toApply = chunks.filter(c => !e.adopted.has(keyStr(c.key)))
    if (toApply.length === 0) return
    if (e.base) {
      // chunks this process wrote were adopted, not read: start from a copy of what it holds
      const base = e.base()
      e.base = undefined
      if (!base) {
        e.initialized = false // nothing to start from: read everything again
        e.doc = undefined
        e.keys.clear()
        e.adopted.clear()
        return this.#scan(e)
      }
      const own = Automerge.clone(base)
      e.doc = e.doc ? Automerge.merge(own, e.doc) : own
    }
    const before = e.doc ? Automerge.getHeads(e.doc) : []
    const { doc } = this.hooks.applyChunks(e.doc, toApply)
    e.doc = doc
    // chunks not applied are either waiting in the doc's queue for their dependencies (applied
    // when those arrive) or were rejected (warned): do not read them again
    for (const c of toApply) e.keys.add(keyStr(c.key))
    if (e.doc && !sameHeads(before, Automerge.getHeads(e.doc))) this.#emit(e)
  }

  /** chunks mode: list, read what is new, hand it over; no document. */
  async #scanChunks(e: WatchEntry): Promise<void> {
    const adapter = this.store.adapter
    // incremental/ before snapshot/, as in load()
    const listed = [...(await adapter.listKeys([e.docId, "incremental"])), ...(await adapter.listKeys([e.docId, "snapshot"]))].filter(k => k.length === 3)
    if (this.#closed) return
    const present = new Set(listed.map(keyStr))
    if (!e.initialized) {
      e.initialized = true
      e.keys = new Set([...(this.hooks.knownChunks!(e.docId) ?? [])].filter(k => present.has(k)))
    }
    for (const k of e.adopted) {
      if (!present.has(k)) continue // not written yet
      e.adopted.delete(k)
      e.keys.add(k)
    }
    for (const k of e.keys) if (!present.has(k)) e.keys.delete(k) // compacted away
    const fresh = listed.filter(k => !e.keys.has(keyStr(k)) && !e.adopted.has(keyStr(k))).sort((a, b) => (a[1] === b[1] ? 0 : a[1] === "snapshot" ? -1 : 1))
    if (fresh.length === 0) return
    const chunks: WatchedChunk[] = []
    for (const key of fresh) {
      const data = await adapter.load(key) // verified; undefined if gone (compacted) or damaged
      if (this.#closed) return
      if (data && !e.adopted.has(keyStr(key))) chunks.push({ file: `${key[1]}/${key[2]}`, type: key[1] as ChunkType, data })
      if (data) e.keys.add(keyStr(key))
    }
    if (chunks.length === 0) return
    try {
      this.hooks.onChunks!(e.docId, chunks)
    } catch (err) {
      this.warn(`watch: onChunks for document ${e.docId} threw: ${(err as Error)?.message ?? String(err)}`)
    }
  }

  #emit(e: WatchEntry): void {
    if (this.#closed || !e.doc) return
    let copy: Automerge.Doc<unknown>
    try {
      copy = Automerge.clone(e.doc)
    } catch (err) {
      this.warn(`watch: cannot copy document ${e.docId}: ${(err as Error).message}`)
      return
    }
    try {
      this.onChange(e.docId, copy)
    } catch (err) {
      this.warn(`watch: onChange for document ${e.docId} threw: ${(err as Error)?.message ?? String(err)}`)
    }
  }
}
