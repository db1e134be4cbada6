/**
 * A store: the directory of documents that every concord process on one machine shares, with no daemon.
 * Plans and their report logs are Automerge documents kept by DocStore (chunk files written atomically,
 * loaded chunk by chunk); an index under `plans/` lists the plans so `plan list` need not open every doc.
 *
 * Each operation loads the current state from disk, applies one pure function from src/doc, and writes
 * only the new changes, durably, before returning: a write is durable when the command that made it
 * exits 0. Processes never overwrite each other's files, so concurrent writers merge instead of losing
 * updates.
 */
import { type Dirent, promises as fsp, readdirSync, readFileSync } from "node:fs"
import path from "node:path"
import type { WriteContext } from "../../doc/actor.js"
import { DamagedError, NotFoundError } from "../../doc/errors.js"
import { type DocId, isDocId, newDocId, reportDocId } from "../../doc/ids.js"
import { createPlan, isPlanDoc, type PlanDocument, readPlan } from "../../doc/plan.js"
import { containsHeads, sameHeads } from "../../doc/heads.js"
import * as A from "@automerge/automerge"
import {
  appendedReports,
  appendReports,
  appendReportsToBackend,
  backendAppendWorks,
  type DigestRecord,
  digestReports,
  foldReport,
  mergeDigests,
  type NewReport,
  type ReportDigest,
  reportsGenesis,
  type ReportsDocument,
  reportsInChanges,
} from "../../doc/reports.js"
import { REPORTS_KIND, type ReportsDoc } from "../../doc/model.js"
import type { PlanSpec } from "../../doc/spec.js"
import { StoreError, StoreGoneError } from "../storage/StoreError.js"
import { DocStore, type DocStoreOptions, type SavedInfo } from "./DocStore.js"

/**
 * A live store brings each log's cached digest up to date at most this often (each time costs a cache
 * file written; a status run in between reads the few logs the cache does not cover yet), and looks at the
 * disk for other writers' chunks of a log it appends to at most this often (an append does not depend on
 * them). At 250 ms each, 16 logs written at once spent about a tenth of the endpoint's CPU on them (profiled).
 */
const DIGEST_DELAY_MS = 1000
const APPEND_LOOK_MS = 1000

/** Report logs read at once by status: each is freed after digesting, so memory stays bounded. */
const DIGEST_CONCURRENCY = 4

/** Logs whose cached digest status checks with synchronous calls before letting other work run. */
const SYNC_BATCH = 128

/** A cached report digest: the digest of the log at `heads`; `chunks` are chunk files it covers. */
interface DigestCache {
  v: 2
  heads: string[]
  chunks: string[]
  digest: ReportDigest
}

function isDigestCache(v: DigestCache | undefined): v is DigestCache {
  return v?.v === 2 && Array.isArray(v.heads) && Array.isArray(v.chunks) && !!v.digest && typeof v.digest.byAttempt === "object"
}

function intersect(a: string[], b: string[]): string[] {
  const s = new Set(b)
  return a.filter(x => s.has(x))
}

function isReportsDoc(doc: unknown): doc is ReportsDocument {
  const kind = (doc as { kind?: unknown } | undefined)?.kind
  return kind !== undefined && String(kind) === REPORTS_KIND
}

export interface PlanIndexEntry {
  id: DocId
  name: string
  createdAt: number
  createdBy: string
  /** Set by `concord plan archive`: hidden from `plan list` and from the default plan choice. */
  archivedAt?: number
}

const INDEX_DIR = "plans"

interface OwnFold {
  from: string[]
  to: string[]
  digest: ReportDigest
}

interface ReportQueue {
  waiting: { report: NewReport; ctx: WriteContext; resolve: (heads: A.Heads) => void; reject: (e: unknown) => void }[]
  busy: boolean
}

export interface PlanStoreOptions extends DocStoreOptions {
  /**
   * Live stores: append reports to a log's Automerge backend and bring the log's JavaScript view up to
   * date only when the log is read (DocStore.changeInPlace), so that a report costs the same however
   * long the log. Default: when this Automerge build supports it (backendAppendWorks); false appends
   * with Automerge.change, whose cost grows with the log.
   */
  appendInPlace?: boolean
}

/** backendAppendWorks, asked once per process. */
let inPlaceWorks: boolean | undefined

export class PlanStore {
  readonly dir: string
  readonly docs: DocStore
  /** live stores only: the digest cache entry this instance wrote last, per report log */
  readonly #lastDigest = new Map<string, DigestCache>()
  /** live stores only: digests to bring up to date, by report log */
  readonly #digestTimers = new Map<string, NodeJS.Timeout>()
  readonly #digestsRunning = new Set<Promise<void>>()
  /** live stores only: reports waiting for the write under way to their log (group commit) */
  readonly #queues = new Map<string, ReportQueue>()
  /**
   * live stores only, per report log: this instance's own appends since the log's digest was last brought
   * up to date, folded as they are made (heads before the first, after the last), so that bringing it up
   * to date does not decode them again; null once anything else came between them.
   */
  readonly #ownFolds = new Map<string, OwnFold | null>()
  /**
   * live stores only, per report log: the report ids of the log at `heads` (an endpoint's sender gives
   * every report one): a report is checked against them instead of reading the whole log each time.
   * Read from the log again whenever the log is not at `heads` (another writer's chunks merged, a reload).
   */
  readonly #rids = new Map<string, { heads: string[]; rids: Set<string> }>()
  /** live stores only: how often a log's report ids were read from the log (for tests) */
  readonly ridStats = { reads: 0 }
  /** live stores: reports are appended in place (PlanStoreOptions.appendInPlace) */
  readonly appendsInPlace: boolean

  constructor(dir: string, opts: PlanStoreOptions = {}) {
    this.dir = path.resolve(dir)
    this.appendsInPlace = !!opts.live && (opts.appendInPlace ?? (inPlaceWorks ??= backendAppendWorks()))
    const userHook = opts.onSaved
    this.docs = new DocStore(this.dir, {
      ...opts,
      onSaved: async (docId, doc, info) => {
        await this.#afterSave(docId, doc, info)
        await userHook?.(docId, doc, info)
      },
    })
  }

  /* ------------------------------------------------------------- plans index */

  async listPlans(): Promise<PlanIndexEntry[]> {
    let names: string[]
    try {
      names = await fsp.readdir(path.join(this.dir, INDEX_DIR))
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
      throw StoreError.from("list", path.join(this.dir, INDEX_DIR), e)
    }
    const entries: PlanIndexEntry[] = []
    for (const n of names.filter(n => n.endsWith(".json"))) {
      try {
        const v = JSON.parse(await fsp.readFile(path.join(this.dir, INDEX_DIR, n), "utf8"))
        if (v && typeof v.id === "string") entries.push(v)
      } catch {
        // an unreadable index entry: the plan document itself is still intact; skip the entry
      }
    }
    return entries.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
  }

  /** Record a plan in the index (also used when a plan arrives from another machine). */
  async registerPlan(entry: PlanIndexEntry): Promise<void> {
    const target = path.join(this.dir, INDEX_DIR, `${entry.id}.json`)
    try {
      await this.docs.adapter.writeFile(target, `${JSON.stringify(entry)}\n`)
    } catch (e) {
      throw StoreError.from("write", target, e)
    }
  }

  /** Mark a plan archived in this store's index (the plan document itself is unchanged). */
  async archivePlan(id: DocId, at: number): Promise<void> {
    const entry = (await this.listPlans()).find(p => p.id === id)
    if (!entry) throw new NotFoundError(`plan ${id} is not in the index of ${this.dir}`)
    await this.registerPlan({ ...entry, archivedAt: at })
  }

  /** Delete a job log file directory of a plan (`logs/<plan>/`); returns how many files went. */
  async removeLogs(id: DocId): Promise<number> {
    const dir = path.join(this.dir, "logs", id)
    let n = 0
    try {
      n = (await fsp.readdir(dir)).length
    } catch {
      return 0
    }
    await fsp.rm(dir, { recursive: true, force: true })
    return n
  }

  /**
   * Delete a plan from this store: its document, its jobs' report logs, their cached digests, its job logs,
   * and last its index entry. Safe to repeat after an interruption (a half-removed plan reads as damaged
   * until removed again).
   */
  async removePlan(id: DocId, jobs: string[]): Promise<void> {
    const docDir = (d: DocId) => path.join(this.dir, d.slice(0, 2), d.slice(2))
    try {
      await fsp.rm(docDir(id), { recursive: true, force: true })
      for (const j of jobs) {
        const rid = reportDocId(id, j)
        await fsp.rm(docDir(rid), { recursive: true, force: true })
        await fsp.rm(this.#digestFile(rid), { force: true })
      }
      await this.removeLogs(id)
      await fsp.rm(path.join(this.dir, INDEX_DIR, `${id}.json`), { force: true })
    } catch (e) {
      throw StoreError.from("remove", path.join(this.dir, id), e)
    }
  }

  /* ------------------------------------------------------------------- plans */

  /**
   * Make the store's directory if it does not exist. Only the commands that deliberately create a store
   * call it (creating a plan, `concord serve`, `concord sync`, `concord run --remote`); every other write
   * into a store whose directory is gone fails with StoreGoneError instead of creating it again.
   */
  async create(): Promise<void> {
    await this.docs.adapter.createRoot()
  }

  /** Does the store's directory exist? */
  async exists(): Promise<boolean> {
    return fsp.stat(this.dir).then(
      st => st.isDirectory(),
      () => false
    )
  }

  /** Creates the store's directory if this is its first plan. */
  async createPlan(spec: PlanSpec, baseDir: string, ctx: WriteContext): Promise<{ id: DocId; doc: PlanDocument }> {
    await this.create()
    const id = newDocId()
    const doc = createPlan(spec, { baseDir }, ctx)
    await this.docs.save(id, doc)
    await this.registerPlan({ id, name: spec.name, createdAt: ctx.now, createdBy: ctx.by })
    return { id, doc }
  }

  async loadPlan(id: DocId): Promise<PlanDocument> {
    const doc = await this.findPlan(id)
    if (!doc) throw new NotFoundError(`plan ${id} is not in store ${this.dir}`)
    return doc
  }

  /**
   * A plan document, or undefined when the store has no document with this id. A document that exists
   * but is not a plan is refused: a report log or foreign document is bad input (exit 2); a document the
   * index lists as a plan that no longer reads as one is damage (exit 1, see `concord doctor`).
   */
  async findPlan(id: DocId, opts: { recentMs?: number } = {}): Promise<PlanDocument | undefined> {
    const doc = await this.docs.load<unknown>(id, opts)
    if (doc && isPlanDoc(doc)) return doc
    if (!doc) await this.#mustExist()
    if (!doc && !(await this.#indexed(id))) return undefined
    if (await this.#indexed(id)) {
      throw new DamagedError(`plan ${id} cannot be read: its document in ${this.dir} is damaged or incomplete (see concord doctor)`)
    }
    throw new NotFoundError(`document ${id} is not a concord plan`)
  }

  /** A plan looked up by id in a store whose directory is gone: say so (exit 1), not "no such plan". */
  async #mustExist(): Promise<void> {
    if (!(await this.exists())) throw new StoreGoneError(this.dir)
  }

  async #indexed(id: DocId): Promise<boolean> {
    try {
      await fsp.access(path.join(this.dir, INDEX_DIR, `${id}.json`))
      return true
    } catch {
      return false
    }
  }

  /**
   * The plans index, checked against the documents: a plan whose index entry was deleted or damaged
   * (a full disk, a stray `rm`) is found again and its entry rewritten, so no plan vanishes from
   * `plan list`. Documents known not to be plans are remembered in `cache/doc-kinds.json` (derived data).
   */
  async listPlansChecked(): Promise<{ plans: PlanIndexEntry[]; rebuilt: DocId[] }> {
    const plans = await this.listPlans()
    const known = new Set<string>(plans.map(p => p.id))
    const docIds = await this.#allDocIds()
    if (docIds.every(d => known.has(d))) return { plans, rebuilt: [] }
    // Report logs of indexed plans are expected; find them from the plans' job names.
    for (const p of plans) {
      try {
        for (const j of readPlan(await this.loadPlan(p.id)).jobs) known.add(reportDocId(p.id, j.name))
      } catch {
        // unreadable plan: its logs stay candidates, which costs a load, not correctness
      }
    }
    const kindsFile = path.join(this.dir, "cache", "doc-kinds.json")
    let kinds: Record<string, "other"> = {}
    try {
      kinds = JSON.parse(await fsp.readFile(kindsFile, "utf8"))
    } catch {
      // no cache yet
    }
    const rebuilt: DocId[] = []
    let kindsChanged = false
    for (const id of docIds) {
      if (known.has(id) || kinds[id]) continue
      let doc: unknown
      try {
        doc = await this.docs.load<unknown>(id)
      } catch {
        continue
      }
      if (doc && isPlanDoc(doc as PlanDocument)) {
        const v = readPlan(doc as PlanDocument)
        const entry = { id, name: v.name, createdAt: v.createdAt, createdBy: v.createdBy }
        await this.registerPlan(entry)
        plans.push(entry)
        rebuilt.push(id)
        for (const j of v.jobs) known.add(reportDocId(id, j.name))
      } else {
        kinds[id] = "other"
        kindsChanged = true
      }
    }
    if (kindsChanged) await this.docs.adapter.writeFile(kindsFile, JSON.stringify(kinds), { durable: false }).catch(() => {})
    plans.sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
    return { plans, rebuilt }
  }

  /** Every document id with a directory in the store (automerge-repo layout: `<id[0:2]>/<id[2:]>/`). */
  async #allDocIds(): Promise<DocId[]> {
    const ids: DocId[] = []
    let tops: string[]
    try {
      tops = await fsp.readdir(this.dir)
    } catch {
      return ids
    }
    for (const t of tops.filter(t => t.length === 2)) {
      let rest: string[]
      try {
        rest = await fsp.readdir(path.join(this.dir, t))
      } catch {
        continue
      }
      for (const r of rest) if (isDocId(t + r) && (await this.docs.exists(t + r))) ids.push(t + r)
    }
    return ids
  }

  /**
   * Load, apply a pure change, save. If `fn` throws, nothing is written. Returns the new document and
   * whatever `fn` returned alongside it.
   */
  async updatePlan<R = void>(
    id: DocId,
    fn: (doc: PlanDocument) => PlanDocument | { doc: PlanDocument; result: R }
  ): Promise<{ doc: PlanDocument; result: R | undefined }> {
    // One actor per store instance for every change it makes (DocStore.update serialises them).
    let result: R | undefined
    let missing = false
    const doc = await this.docs
      .update<unknown, PlanDocument>(id, loaded => {
        if (!loaded) {
          missing = true
          throw new NotFoundError(`plan ${id} is not in store ${this.dir}`)
        }
        if (!isPlanDoc(loaded)) throw new NotFoundError(`document ${id} is not a concord plan`)
        const out = fn(loaded)
        if ("doc" in out && "result" in out) {
          result = out.result
          return out.doc
        }
        return out as PlanDocument
      })
      .catch(async e => {
        if (missing) await this.#mustExist()
        throw e
      })
    return { doc, result }
  }

  /* ----------------------------------------------------------------- reports */

  async loadReports(planId: DocId, job: string): Promise<ReportsDocument | undefined> {
    return this.docs.load(reportDocId(planId, job))
  }

  /**
   * Append a report to a job's log (creating the log if this is its first report); durable when it
   * resolves. A report whose `rid` the log already holds is not appended again. In a live store (one
   * long-lived process serving many senders) reports that arrive for a log while a write to it is under
   * way are written together next, in one change and one fsync (a group commit).
   */
  async appendReport(planId: DocId, job: string, report: NewReport, ctx: WriteContext): Promise<A.Heads> {
    if (!this.docs.live) return this.#appendBatch(planId, job, [{ report, ctx }])
    const id = reportDocId(planId, job)
    let q = this.#queues.get(id)
    if (!q) {
      q = { waiting: [], busy: false }
      this.#queues.set(id, q)
    }
    const queue = q
    return new Promise<A.Heads>((resolve, reject) => {
      queue.waiting.push({ report, ctx, resolve, reject })
      if (!queue.busy) void this.#drain(planId, job, id, queue)
    })
  }

  async #drain(planId: DocId, job: string, id: string, q: ReportQueue): Promise<void> {
    q.busy = true
    try {
      while (q.waiting.length > 0) {
        const batch = q.waiting.splice(0)
        try {
          const heads = await this.#appendBatch(planId, job, batch)
          for (const b of batch) b.resolve(heads)
        } catch (e) {
          // one report the batch could not take must not fail the others: one at a time
          if (batch.length === 1) batch[0].reject(e)
          else {
            for (const b of batch) {
              try {
                b.resolve(await this.#appendBatch(planId, job, [b]))
              } catch (e1) {
                b.reject(e1)
              }
            }
          }
        }
      }
    } finally {
      q.busy = false
      if (q.waiting.length === 0) this.#queues.delete(id)
    }
  }

  /** Append reports to a job's log in one change; resolves to the log's heads after it, once durable. */
  async #appendBatch(planId: DocId, job: string, batch: { report: NewReport; ctx: WriteContext }[]): Promise<A.Heads> {
    // One actor per store instance (DocStore.update serialises the load-change-save), not per report.
    // The digest cache is kept current by the save hook (#afterSave).
    // A live store looks at the disk for other writers' chunks of the log at most every APPEND_LOOK_MS:
    // an append does not depend on them (it merges with them all the same).
    const docId = reportDocId(planId, job)
    if (this.appendsInPlace) {
      const r = await this.docs.changeInPlace<ReportsDoc, A.Heads>(
        docId,
        ({ backend, heads, view }) => {
          // the log's report ids, kept current by every append from here on: read from the log (its view)
          // only when other writers' changes came in or the log was loaded again, when its view is new anyway
          const index = this.#ridsAt(docId, heads, () => view())
          const records = appendReportsToBackend(backend, batch, rid => index.rids.has(rid))
          const after = backend.getHeads()
          if (records.length > 0) {
            this.#foldOwn(docId, heads, after, records)
            for (const b of batch) if (b.report.rid !== undefined) index.rids.add(b.report.rid)
            index.heads = after
          }
          return after
        },
        { recentMs: APPEND_LOOK_MS }
      )
      if (r.done) return r.result
    }
    const doc = await this.docs.update<ReportsDoc, ReportsDocument>(
      docId,
      (loaded, actor) => {
        const before = (loaded ?? A.clone(reportsGenesis(planId, job), { actor: actor as A.ActorId })) as ReportsDocument
        // a new log: its digest so far is known (no report), so the first one is folded from this append
        if (!loaded && this.docs.live) this.#lastDigest.set(docId, { v: 2, heads: A.getHeads(before), chunks: [], digest: { last: null, byAttempt: {} } })
        if (!this.docs.live || !batch.some(b => b.report.rid !== undefined)) {
          const after = appendReports(before, batch)
          if (this.docs.live && after !== before) this.#foldOwn(docId, A.getHeads(before), A.getHeads(after), appendedReports(before, after))
          return after
        }
        const index = this.#ridsAt(docId, A.getHeads(before), () => before)
        const after = appendReports(before, batch, rid => index.rids.has(rid))
        if (after !== before) {
          this.#foldOwn(docId, A.getHeads(before), A.getHeads(after), appendedReports(before, after))
          for (const b of batch) if (b.report.rid !== undefined) index.rids.add(b.report.rid)
          index.heads = A.getHeads(after)
        }
        return after
      },
      { recentMs: APPEND_LOOK_MS }
    )
    return A.getHeads(doc)
  }

  /**
   * The report ids of the log at `heads` (a live store's index of them, read from the log, `view()`,
   * unless the index is at those heads).
   */
  #ridsAt(docId: string, heads: A.Heads, view: () => ReportsDocument): { heads: string[]; rids: Set<string> } {
    let index = this.#rids.get(docId)
    if (!index || !sameHeads(index.heads, heads)) {
      const rids = new Set<string>()
      for (const r of view().reports) if (r.rid !== undefined && r.rid !== null) rids.add(String(r.rid))
      index = { heads, rids }
      this.#rids.set(docId, index)
      this.ridStats.reads++
    }
    return index
  }

  /**
   * Note a live store's own append (one change from heads `from` to `to`, appending `records`; undefined
   * when they are not known) for the log's next digest.
   */
  #foldOwn(docId: string, from: A.Heads, to: A.Heads, records: DigestRecord[] | undefined): void {
    const fold = this.#ownFolds.get(docId)
    if (fold === null) return
    if (!records || (fold !== undefined && !sameHeads(fold.to, from))) return void this.#ownFolds.set(docId, null)
    const digest = records.reduce(foldReport, fold?.digest ?? { last: null, byAttempt: {} })
    this.#ownFolds.set(docId, { from: fold?.from ?? from, to, digest })
  }

  #digestFile(docId: string): string {
    return path.join(this.dir, "cache", "digests", `${docId}.json`)
  }

  async #readDigestCache(docId: string): Promise<DigestCache | undefined> {
    try {
      const v = JSON.parse(await this.docs.adapter.readText(this.#digestFile(docId))) as DigestCache
      if (isDigestCache(v)) return v
    } catch {
      // no cache yet, or unreadable (derived data: computed again)
    }
    return undefined
  }

  /**
   * A log's digest from the document, reusing the cached digest: only the changes the cache does not
   * cover are read (digests merge as sets, so a cache that holds something the document lacks is
   * kept, not lost). Returns the new cache entry, covering `chunks` as well as the cache's own.
   * `own`: the digest of what the document holds beyond the cache's heads, when the caller knows it
   * (a live store's own appends since, and nothing else).
   */
  #digestOf(_docId: string, doc: ReportsDocument, cache: DigestCache | undefined, chunks: string[], own?: ReportDigest): DigestCache {
    const heads = A.getHeads(doc)
    let digest: ReportDigest | undefined
    let otherHeads: string[] = []
    if (cache && own) digest = mergeDigests(cache.digest, own)
    else if (cache) {
      const inDoc = cache.heads.filter(h => containsHeads(doc, [h]))
      otherHeads = cache.heads.filter(h => !inDoc.includes(h))
      if (inDoc.length > 0) {
        const reports = reportsInChanges(A.getChangesSince(doc, inDoc))
        if (reports) digest = reports.reduce(foldReport, cache.digest)
      }
      if (!digest) digest = mergeDigests(cache.digest, digestReports(doc))
    }
    digest ??= digestReports(doc)
    const covered = new Set(chunks)
    if (cache) for (const c of cache.chunks) covered.add(c)
    return { v: 2, heads: [...new Set([...heads, ...otherHeads])].sort(), chunks: [...covered].sort(), digest }
  }

  async #writeDigestCache(docId: string, entry: DigestCache): Promise<void> {
    await this.docs.adapter.writeFile(this.#digestFile(docId), JSON.stringify(entry), { durable: false }).catch(() => {})
  }

  /** DocStore's save hook: every writer (reports, sync, compaction, the orchestrator) keeps digests current. */
  async #afterSave(docId: string, doc: A.Doc<unknown>, info: SavedInfo): Promise<void> {
    if (!isReportsDoc(doc)) return
    if (this.docs.live) return this.#scheduleDigest(docId)
    await this.#storeDigest(docId, doc, await this.#readDigestCache(docId), info.complete ? info.chunks : [], info.chunks.length)
  }

  /**
   * Changes added to a report log as a chunk file of their own, without a save (DocStore.addChunk: a
   * one-shot sync's exchange), keep its cached digest current as a save's hook does. `before`: the log as
   * it was read without its view, and the chunk files it was read from (none: no log here before);
   * `added`: the new chunk file ("incremental/<hash>") and the changes in it, one change's bytes each;
   * `heads`: the log's heads with them. Only the changes the cache does not cover are read; a log holding
   * anything but reports (changes of another shape) is left to status, which reads it.
   * `before` may give the log's heads instead of the log (a sync that did not read it): that does when
   * the cache covers exactly those heads; otherwise nothing is written and false is returned (the
   * caller reads the log and asks again).
   */
  async noteAddedChunk(
    docId: string,
    before: { raw: ReturnType<typeof A.getBackend>; keys: Set<string> } | { heads: string[]; keys: Set<string> } | undefined,
    added: { key: string; changes: Uint8Array[] },
    heads: string[]
  ): Promise<boolean> {
    const cache = await this.#readDigestCache(docId)
    if (before && !("raw" in before)) {
      const same = !!cache && cache.heads.length === before.heads.length && before.heads.every(h => cache.heads.includes(h))
      if (!same) return false
    }
    const prior = before && "raw" in before ? before.raw : undefined
    const inPrior = before && !prior ? cache!.heads : prior && cache ? cache.heads.filter(h => prior.getChangeByHash(h) !== null) : []
    // heads the cache covers that this log lacks stay in the entry (digests merge as sets)
    const otherHeads = cache ? cache.heads.filter(h => !inPrior.includes(h)) : []
    const records = reportsInChanges([...(prior ? prior.getChanges(inPrior) : []), ...added.changes])
    if (!records) return true
    const digest = records.reduce(foldReport, cache?.digest ?? { last: null, byAttempt: {} })
    const chunks = new Set([...(cache?.chunks ?? []), ...(before?.keys ?? []), added.key])
    const entry: DigestCache = { v: 2, heads: [...new Set([...heads, ...otherHeads])].sort(), chunks: [...chunks].sort(), digest }
    await this.#writeDigestCache(docId, entry)
    return true
  }

  /** The digest of `doc` from `cache`, covering `chunks`, written to the cache file; returns the entry. */
  async #storeDigest(
    docId: string,
    doc: A.Doc<unknown>,
    cache: DigestCache | undefined,
    chunks: string[],
    known: number,
    own?: ReportDigest
  ): Promise<DigestCache> {
    return this.#storeEntry(docId, this.#digestOf(docId, doc as ReportsDocument, cache, chunks, own), known)
  }

  /** Write a digest cache entry (`known`: how many chunk files the log is made of). */
  async #storeEntry(docId: string, entry: DigestCache, known: number): Promise<DigestCache> {
    // Forget chunk names a compaction removed, now and then (a name on the list that no longer exists
    // does no harm: status only asks whether every chunk it lists is covered).
    if (entry.chunks.length > known + 64) entry.chunks = intersect(entry.chunks, await this.docs.chunkFiles(docId))
    await this.#writeDigestCache(docId, entry)
    return entry
  }

  /**
   * A live store (one long-lived process serving many reports) brings a log's cached digest up to date
   * at most every DIGEST_DELAY_MS, from its in-memory copy, instead of after every save: a status run in
   * between finds a chunk the cache does not cover yet and reads that log (right, only slower).
   */
  #scheduleDigest(docId: string): void {
    if (this.#digestTimers.has(docId)) return
    const t = setTimeout(() => {
      this.#digestTimers.delete(docId)
      const p = this.#refreshDigest(docId).finally(() => this.#digestsRunning.delete(p))
      this.#digestsRunning.add(p)
    }, DIGEST_DELAY_MS)
    t.unref?.()
    this.#digestTimers.set(docId, t)
  }

  async #refreshDigest(docId: string): Promise<void> {
    try {
      const cache = this.#lastDigest.get(docId) ?? (await this.#readDigestCache(docId))
      // this instance's own copy as it is, without a look at the disk: the entry covers exactly the chunks
      // that copy is made of (chunkSet), and other writers' chunks are picked up by the next look anyway.
      // Read under the log's lock (changeInPlace changing nothing), so that the copy's heads, its chunks
      // and the appends noted since (the fold) are of one moment, whatever appends come next.
      const r = await this.docs.changeInPlace<ReportsDoc, { heads: A.Heads; chunks: string[]; own?: ReportDigest; doc?: ReportsDocument } | undefined>(
        docId,
        ({ heads, view }) => {
          const chunks = this.docs.chunkSet(docId)
          if (!chunks) return undefined
          const fold = this.#ownFolds.get(docId)
          this.#ownFolds.delete(docId)
          // the log holds the cached digest's reports and this instance's own appends since, nothing else:
          // the digest folded as they were made, without reading the log (nor bringing its view up to date)
          if (fold && cache && sameHeads(cache.heads, fold.from) && sameHeads(heads, fold.to)) return { heads, chunks, own: fold.digest }
          return { heads, chunks, doc: view() }
        },
        { recentMs: Number.POSITIVE_INFINITY }
      )
      if (!r.done || !r.result) return
      const { heads, chunks, own, doc } = r.result
      if (doc) {
        this.#lastDigest.set(docId, await this.#storeDigest(docId, doc, cache, chunks, chunks.length))
      } else if (own && cache) {
        const covered = [...new Set([...chunks, ...cache.chunks])].sort()
        const entry: DigestCache = { v: 2, heads: [...heads].sort(), chunks: covered, digest: mergeDigests(cache.digest, own) }
        this.#lastDigest.set(docId, await this.#storeEntry(docId, entry, chunks.length))
      }
    } catch {
      // derived data: the next status reads the log instead
    }
  }

  /** Write the digests a live store still owes (LocalBackend.close calls it). */
  async close(): Promise<void> {
    const due = [...this.#digestTimers.keys()]
    for (const t of this.#digestTimers.values()) clearTimeout(t)
    this.#digestTimers.clear()
    await Promise.all([...this.#digestsRunning, ...due.map(id => this.#refreshDigest(id))])
  }

  /**
   * The digest (latest report, latest progress per attempt) of every job's report log, for status
   * views. Each digest is cached in `cache/digests/<doc>.json` with the heads it covers and the chunk
   * files known to hold no more than that; every save through DocStore (reports, sync, compaction)
   * keeps it current. While every chunk file of a log is covered, its digest is read from the cache
   * instead of loading the log, so `status` stays fast however long the logs grow. Logs that must be
   * read are read a few at a time and freed after digesting, so memory stays bounded however many
   * jobs the plan has. The cache is derived data: deleting it is always safe.
   */
  async loadReportDigests(planId: DocId, jobs: string[]): Promise<Map<string, ReportDigest>> {
    const out = new Map<string, ReportDigest>()
    // 1. every log whose cached digest covers its chunk files, read at once (no log is loaded)
    const rest = (await this.#cachedDigests(planId, jobs, out)) ?? jobs
    // 2. the others: loaded a few at a time
    let next = 0
    const worker = async () => {
      while (next < rest.length) {
        const j = rest[next++]
        const d = await this.#reportDigest(reportDocId(planId, j))
        if (d) out.set(j, d)
      }
    }
    await Promise.all(Array.from({ length: Math.min(DIGEST_CONCURRENCY, rest.length) }, worker))
    // in the jobs' order, whatever order the workers finished in
    return new Map(jobs.filter(j => out.has(j)).map(j => [j, out.get(j)!]))
  }

  /**
   * The fast path of a status: each log's chunk files listed and its cached digest read with
   * synchronous calls (a third of the CPU of the promise-based ones, which cost more than the work
   * itself at 1,000 logs). Puts the digests it can use into `out`; returns the jobs whose log must
   * be read (no cache entry, or a chunk the entry does not cover, or anything unexpected), or
   * undefined when the quarantine holds files: those logs are listed through the storage adapter,
   * which restores quarantined chunks that became valid.
   */
  async #cachedDigests(planId: DocId, jobs: string[], out: Map<string, ReportDigest>): Promise<string[] | undefined> {
    try {
      if (readdirSync(this.docs.adapter.quarantineDirectory).length > 0) return undefined
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") return undefined
    }
    const rest: string[] = []
    for (const [i, j] of jobs.entries()) {
      // a long-lived process (a dashboard, an MCP server) is never blocked for long
      if (i % SYNC_BATCH === SYNC_BATCH - 1) await new Promise(r => setImmediate(r))
      const docId = reportDocId(planId, j)
      const listing = this.#listingSync(docId)
      if (listing?.length === 0) continue // no log (yet)
      const cache = listing && this.#readDigestCacheSync(docId)
      if (cache && listing.every(c => cache.covered.has(c))) out.set(j, cache.entry.digest)
      else rest.push(j)
    }
    return rest
  }

  /** A log's chunk files ("incremental/<hash>", "snapshot/<hash>"); undefined if they cannot be listed. */
  #listingSync(docId: string): string[] | undefined {
    const out: string[] = []
    for (const t of ["incremental", "snapshot"]) {
      let names: Dirent[]
      try {
        names = readdirSync(path.dirname(this.docs.adapter.filePath([docId, t, "x"])), { withFileTypes: true })
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") continue
        return undefined
      }
      for (const n of names) if (n.isFile()) out.push(`${t}/${n.name}`)
    }
    return out
  }

  #readDigestCacheSync(docId: string): { entry: DigestCache; covered: Set<string> } | undefined {
    try {
      const v = JSON.parse(readFileSync(this.#digestFile(docId), "utf8")) as DigestCache
      if (isDigestCache(v)) return { entry: v, covered: new Set(v.chunks) }
    } catch {
      // no cache yet, or unreadable (derived data: computed again)
    }
    return undefined
  }

  async #reportDigest(docId: DocId): Promise<ReportDigest | undefined> {
    const listing = await this.docs.chunkFiles(docId)
    if (listing.length === 0) return undefined
    const cache = await this.#readDigestCache(docId)
    if (cache) {
      const covered = new Set(cache.chunks)
      if (listing.every(c => covered.has(c))) return cache.digest
    }
    const doc = await this.docs.load<ReportsDoc>(docId, { keepCopy: false })
    if (!doc) return undefined
    try {
      // Keyed by the chunks the load actually applied, not by the listing: a listed file that was skipped
      // (damaged, or still being written by a non-atomic writer) keeps its name once complete, and must
      // not be hidden behind a digest computed without it. Not exact (missing deps): no cache entry.
      const applied = this.docs.chunkSet(docId)
      const entry = this.#digestOf(docId, doc, cache, applied ?? [])
      if (applied) await this.#writeDigestCache(docId, entry)
      return entry.digest
    } finally {
      if (!this.docs.live) A.free(doc)
    }
  }

  /** Every report log of a plan, by job (jobs that never reported are absent). */
  async loadAllReports(planId: DocId, jobs: string[]): Promise<Map<string, ReportsDocument>> {
    const out = new Map<string, ReportsDocument>()
    await Promise.all(
      jobs.map(async j => {
        const d = await this.loadReports(planId, j)
        if (d) out.set(j, d)
      })
    )
    return out
  }
}
