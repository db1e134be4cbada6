/**
 * `concord sync`: bring this store's plans and a server's plans together, both ways.
 *
 * syncOnce: the plans the server has together with the report logs of their jobs that exist on either
 * side, in one round; a plan new to the server first, then its logs (the server learns from the plan
 * which report logs belong to it); waits until the server durably has exactly what we have (one
 * confirmation, which the server answers once it has our heads), then saves what we received into
 * the local store.
 *
 * syncWatch: the same, then stays connected: local writes (their new chunk files, DocStore.watchChunks,
 * applied to the session's copies) go up at once, nothing the store has is written back, remote changes are
 * saved as they arrive, new plans and report logs on either side are picked up (the server's plan list
 * is polled), and the connection is re-made with backoff whenever the server goes away. Now and then
 * it also compares its heads with the server's durable heads: a difference that does not move is a
 * conversation that lost a message, and the connection is re-made to start it afresh (stall.ts).
 */
import * as A from "@automerge/automerge"
import { reportDocId } from "../../doc/ids.js"
import { sameHeads } from "../../doc/heads.js"
import { isPlanDoc, readPlan } from "../../doc/plan.js"
import { retrying, sleep } from "../../lib/async.js"
import { holdsChunk } from "../store/DocStore.js"
import type { PlanStore } from "../store/PlanStore.js"
import { type PlansResponse, ServerApi, SyncError } from "./api.js"
import type { ConnectOptions } from "./client.js"
import { syncOnceByExchange } from "./bulk.js"
import { choosePlans } from "./choose.js"
import { DivergenceWatch } from "./stall.js"

export interface SyncOptions extends ConnectOptions {
  /** Plan references (id, url, name, id prefix); default: every plan on either side this token may sync. */
  plans?: string[]
  /** Give up after this long (reconnects included). Default 120 s. */
  timeoutMs?: number
  /**
   * One-shot syncs exchange changes directly (bulk.ts, POST /v1/exchange) when the server offers it
   * (default true; also off with CONCORD_SYNC_EXCHANGE=0); false: through the Repo and the sync protocol.
   */
  exchange?: boolean
}

export interface PlanSyncResult {
  id: string
  name: string
  /** documents synced (plan + report logs) */
  docs: number
  /** changes received from the server */
  received: number
  newHere: boolean
  newThere: boolean
}

export interface SyncResult {
  url: string
  ms: number
  plans: PlanSyncResult[]
  skipped: { id: string; why: string }[]
}

/** Report logs a sync fetches from the server at once. */
const FETCH_CONCURRENCY = 16

/** How many changes a document has (Automerge's own count: instant, where listing them takes ~40 µs each). */
const changeCount = (doc: A.Doc<unknown>) => A.stats(doc).numChanges

/** One sync round: both ways, waits for the server to have everything, saves locally. */
export async function syncOnce(store: PlanStore, opts: SyncOptions): Promise<SyncResult> {
  const t0 = Date.now()
  const timeoutMs = opts.timeoutMs ?? 120_000
  const log = opts.log ?? (() => {})
  // The HTTP API first: it answers fast and clearly for unreachable servers and refused tokens.
  let remote: PlansResponse
  if (opts.exchange !== false && process.env.CONCORD_SYNC_EXCHANGE !== "0") {
    const r = await syncOnceByExchange(store, opts)
    if (!("declined" in r)) return r
    log(`debug: the server has no change exchange (an older concord) or the request is over its size limit; syncing through the sync protocol`)
    remote = r.declined
  } else remote = await new ServerApi(opts.url, opts.token, opts.ca).plans()
  // automerge-repo is loaded only for this path (and for syncWatch)
  const { RemoteSession } = await import("./client.js")
  const session = await RemoteSession.open(opts)
  try {
    const { chosen, skipped } = await choosePlans(store, remote, opts.plans)
    for (const s of skipped) log(`skipped plan ${s.id}: ${s.why}`)
    // how many changes each local document had before the sync (undefined: none here); the documents
    // themselves go to the session: each is loaded once, and handed over without a save + load round trip
    const before = new Map<string, number | undefined>()
    const results = new Map<string, PlanSyncResult>()
    const deadline = t0 + timeoutMs
    const left = () => Math.max(1000, deadline - Date.now())

    // 1. plan documents, and the report logs of the plans the server already has: their jobs are the
    // ones in our copy and in the server's (the server's list says which logs it has), so everything goes
    // in one round. A plan new to the server is synced first and its logs after: the server learns from
    // the plan which report logs belong to it (access control).
    const planIds: string[] = []
    const owner = new Map<string, string>()
    const toFetch = new Set<string>()
    const addLogs = async (id: string, jobs: Iterable<string>, serverDocs: Set<string>) => {
      for (const job of jobs) {
        const rid = reportDocId(id, job)
        if (owner.has(rid)) continue
        const local = await store.docs.load<unknown>(rid, { keepCopy: false })
        before.set(rid, local && changeCount(local))
        if (local) session.importDoc(rid, local)
        else if (!serverDocs.has(rid)) continue
        else toFetch.add(rid)
        owner.set(rid, id)
      }
    }
    for (const c of chosen) {
      const local = await store.docs.load<unknown>(c.id, { keepCopy: false })
      before.set(c.id, local && changeCount(local))
      const localJobs = local && isPlanDoc(local) ? Object.keys((local as { jobs?: object }).jobs ?? {}) : []
      if (local) session.importDoc(c.id, local)
      else if (!(await session.fetch(c.id, left()))) {
        skipped.push({ id: c.id, why: "the server did not send it" })
        continue
      }
      planIds.push(c.id)
      if (c.onServer) await addLogs(c.id, new Set([...localJobs, ...c.serverJobs]), c.serverDocs)
    }
    // logs only the server has: fetched several at a time (one round trip each, not one after another)
    const fetched = new Set<string>()
    const tried = new Set<string>()
    const fetchAll = async () => {
      const ids = [...toFetch].filter(id => !tried.has(id))
      for (const id of ids) tried.add(id)
      let next = 0
      const fetcher = async () => {
        while (next < ids.length) {
          const rid = ids[next++]
          if (await session.fetch(rid, left())) fetched.add(rid)
        }
      }
      await Promise.all(Array.from({ length: Math.min(FETCH_CONCURRENCY, ids.length) }, fetcher))
    }
    await fetchAll()
    const reportIds = () => [...owner.keys()].filter(rid => !toFetch.has(rid) || fetched.has(rid))
    await session.waitSynced([...planIds, ...reportIds()], left())

    // 2. the report logs of plans new to the server, now that it has the plans (and of any job the
    // first round did not know)
    const logsBefore = owner.size
    for (const id of planIds) {
      const doc = session.handle(id)!.doc()
      if (!isPlanDoc(doc)) throw new SyncError("protocol", `document ${id} is not a concord plan`)
      const c = chosen.find(x => x.id === id)!
      await addLogs(
        id,
        readPlan(doc).jobs.map(j => j.name),
        c.serverDocs
      )
    }
    if (owner.size > logsBefore) {
      await fetchAll()
      await session.waitSynced(reportIds(), left())
    }
    const reportDocs = reportIds()

    // 3. save what we have now (only new chunks are written; nothing local is replaced)
    for (const id of [...planIds, ...reportDocs]) {
      const doc = session.handle(id)!.doc() as A.Doc<unknown>
      await store.docs.save(id, doc)
      const planId = owner.get(id) ?? id
      const prev = before.get(id)
      let r = results.get(planId)
      if (!r) {
        const view = readPlan(session.handle(planId)!.doc() as never)
        r = {
          id: planId,
          name: view.name,
          docs: 0,
          received: 0,
          newHere: before.get(planId) === undefined,
          newThere: !chosen.find(x => x.id === planId)!.onServer,
        }
        results.set(planId, r)
      }
      r.docs++
      // the session's copy holds everything ours held, and what the server sent
      r.received += changeCount(doc) - (prev ?? 0)
    }
    // plans new here: into the local plans index, after their document is durable
    const known = new Set((await store.listPlans()).map(p => p.id))
    for (const id of planIds) {
      if (known.has(id)) continue
      const v = readPlan(session.handle(id)!.doc() as never)
      await store.registerPlan({ id, name: v.name, createdAt: v.createdAt, createdBy: v.createdBy })
    }
    return { url: opts.url, ms: Date.now() - t0, plans: [...results.values()], skipped }
  } finally {
    await session.close()
  }
}

export interface WatchOptions extends SyncOptions {
  signal: AbortSignal
  /** How often the server's plan list is polled for new plans / report logs. Default 2000 ms. */
  pollMs?: number
  /** Called after remote changes were saved locally. */
  onSaved?: (docIds: string[]) => void
  /** How often heads are compared with the server's (anti-entropy). Default 5000 ms. */
  checkMs?: number
}

/**
 * Keep syncing until `signal` aborts: local writes go up, remote changes are saved locally, new plans
 * and report logs are picked up, the connection is re-made with backoff. Resolves after everything
 * received was saved.
 */
export async function syncWatch(store: PlanStore, opts: WatchOptions): Promise<void> {
  const log = opts.log ?? (() => {})
  const pollMs = opts.pollMs ?? 2000
  const api = new ServerApi(opts.url, opts.token, opts.ca)
  // The server may not be up yet: retry the first contact with backoff (a refused token is fatal).
  let remote: PlansResponse
  try {
    remote = await retrying(() => api.plans(), {
      retryIf: e => e instanceof SyncError && e.kind !== "unauthorized" && e.kind !== "refused",
      baseMs: 250,
      maxMs: 10_000,
      signal: opts.signal,
      onRetry: (e, wait) => log(`${(e as Error).message}; retrying in ${(wait / 1000).toFixed(1)}s`),
    })
  } catch (e) {
    if (opts.signal.aborted) return
    throw e
  }
  const { RemoteSession } = await import("./client.js")
  const session = await RemoteSession.open({ ...opts, retry: true, connectTimeoutMs: 60_000, refusedResyncMs: 1000 })
  const tracked = new Map<string, string>() // docId -> planId
  const dirty = new Set<string>()
  let saveTimer: NodeJS.Timeout | undefined
  let saving: Promise<void> = Promise.resolve()
  let inFlight = 0
  let final = false
  const flush = () => {
    saveTimer = undefined
    inFlight++
    saving = saving
      .then(async () => {
        // what arrived while the previous save ran is saved now, together (read when this save starts)
        const ids = [...dirty]
        dirty.clear()
        const saved: string[] = []
        for (const id of ids) {
          const h = session.handle(id)
          if (!h) continue
          const doc = h.doc() as A.Doc<unknown>
          const heads = A.getHeads(doc)
          // nothing the local store lacks (local writes merged in, or what the server sent is saved)
          if (stored.has(id) && sameHeads(stored.get(id)!, heads)) continue
          try {
            await store.docs.save(id, doc)
            stored.set(id, heads)
            saved.push(id)
          } catch (e) {
            log(`cannot save ${id} locally: ${(e as Error).message}`)
            dirty.add(id)
          }
        }
        for (const id of saved) {
          const planId = tracked.get(id)
          if (planId === id) await registerIfNew(store, id, session.handle(id)!.doc())
        }
        if (saved.length && !final) opts.onSaved?.(saved)
      })
      .finally(() => inFlight--)
  }
  // Saved at once (a report reaches this store's watchers without waiting); changes that arrive while a
  // save is under way wait for it and are saved together next, so a burst costs a few saves, not one each.
  const markDirty = (id: string) => {
    dirty.add(id)
    if (inFlight < 2) saveTimer ??= setTimeout(flush, 0)
  }
  // Heads each document had when everything the session holds of it was in the local store (after
  // a load, a save, or local chunk files applied to such a copy): a document whose heads are still
  // these has nothing to save.
  const stored = new Map<string, string[]>()
  const noteStored = (id: string) => {
    const h = session.handle(id)
    if (h) stored.set(id, A.getHeads(h.doc() as A.Doc<unknown>))
  }
  // Local writes: the new chunk files go into the session's copy as they are (a new report costs
  // reading and applying that report, whatever the size of its log), and so to the server at once.
  const mergeLocal = (id: string, doc: A.Doc<unknown>) => {
    const h = session.handle(id)
    const wasStored = !h || (stored.has(id) && sameHeads(stored.get(id)!, A.getHeads(h.doc() as A.Doc<unknown>)))
    session.merge(id, doc)
    hook(id)
    if (wasStored) noteStored(id)
  }
  const loading = new Set<string>()
  const watcher = store.docs.watchChunks([], (id, chunks) => {
    if (!tracked.has(id)) return
    const h = session.handle(id)
    if (!h) {
      // not in the session yet (new here, or still coming from the server): the whole document
      if (loading.has(id)) return
      loading.add(id)
      void store.docs
        .load<unknown>(id, { keepCopy: false })
        .then(doc => doc && tracked.has(id) && mergeLocal(id, doc))
        .catch(e => log(`cannot merge local changes of ${id}: ${(e as Error).message}`))
        .finally(() => loading.delete(id))
      return
    }
    try {
      const before = h.doc() as A.Doc<unknown>
      // (a compaction's snapshot, or a chunk file this process wrote, holds nothing new)
      const fresh = chunks.filter(c => !holdsChunk(before, c.data))
      if (fresh.length === 0) return
      const wasStored = stored.has(id) && sameHeads(stored.get(id)!, A.getHeads(before))
      h.update(d => fresh.reduce((x, c) => A.loadIncremental(x, c.data), d))
      if (wasStored) noteStored(id)
    } catch (e) {
      log(`cannot merge local changes of ${id}: ${(e as Error).message}`)
    }
  })
  const hooked = new Set<string>()
  const hook = (id: string) => {
    const h = session.handle(id)
    if (!h || hooked.has(id)) return
    hooked.add(id)
    h.on("heads-changed", () => markDirty(id))
  }
  const track = (id: string, planId: string) => {
    if (tracked.has(id)) return false
    tracked.set(id, planId)
    watcher.add(id)
    return true
  }
  const fetching = new Set<string>()
  const fetchRemote = (id: string) => {
    if (fetching.has(id) || session.handle(id)) return
    fetching.add(id)
    session
      .fetch(id, 60_000)
      .then(h => {
        if (h) {
          hook(id)
          markDirty(id)
        }
      })
      .catch(e => log(`cannot fetch ${id}: ${(e as Error).message}`))
      .finally(() => fetching.delete(id))
  }
  const addPlan = async (planId: string, serverDocs: Set<string>) => {
    track(planId, planId)
    if (!session.handle(planId)) {
      const local = await store.docs.load<unknown>(planId)
      if (local) {
        session.importDoc(planId, local)
        noteStored(planId)
      } else fetchRemote(planId)
    }
    hook(planId)
    const h = session.handle(planId)
    if (!h) return
    for (const j of readPlan(h.doc() as never).jobs) {
      const rid = reportDocId(planId, j.name)
      track(rid, planId)
      if (session.handle(rid)) continue
      const local = await store.docs.load<unknown>(rid)
      if (local) {
        session.importDoc(rid, local)
        noteStored(rid)
        hook(rid)
      } else if (serverDocs.has(rid)) fetchRemote(rid)
    }
  }
  const refresh = async () => {
    const r = await api.plans()
    const { chosen } = await choosePlans(store, r, opts.plans)
    for (const c of chosen) await addPlan(c.id, c.serverDocs)
  }
  // anti-entropy: the same difference from the server's durable heads twice in a row = a lost message
  const checkMs = opts.checkMs ?? 5000
  const divergence = new DivergenceWatch(2)
  let lastCheck = Date.now()
  const check = async () => {
    if (Date.now() - lastCheck < checkMs || !session.connected) return
    lastCheck = Date.now()
    const local: Record<string, string[]> = {}
    for (const id of tracked.keys()) {
      const h = session.handle(id)
      if (h) local[id] = A.getHeads(h.doc() as A.Doc<unknown>)
    }
    const ids = Object.keys(local)
    if (ids.length === 0) return
    const server = await api.confirm(ids)
    if (!session.connected) return
    const stuck = divergence.compare(server, local)
    if (stuck.length) session.adapter.resync(`${stuck.length} document(s) stayed apart from the server's (e.g. ${stuck[0]})`)
  }
  try {
    const { chosen, skipped } = await choosePlans(store, remote, opts.plans)
    for (const s of skipped) log(`skipped plan ${s.id}: ${s.why}`)
    for (const c of chosen) await addPlan(c.id, c.serverDocs)
    log(`watching ${chosen.length} plan(s) with ${api.base.host}`)
    while (!opts.signal.aborted) {
      if (!(await sleep(pollMs, opts.signal))) break
      try {
        await refresh()
        await check()
      } catch (e) {
        if (e instanceof SyncError && (e.kind === "unauthorized" || e.kind === "refused")) throw e
        // server away: the adapter reconnects with backoff; the next poll tries again
      }
    }
  } finally {
    watcher.close()
    if (saveTimer) clearTimeout(saveTimer)
    for (const id of tracked.keys()) if (session.handle(id)) dirty.add(id)
    final = true
    flush()
    await saving
    await session.close()
  }
}

async function registerIfNew(store: PlanStore, id: string, doc: unknown): Promise<void> {
  if (!isPlanDoc(doc)) return
  const known = await store.listPlans()
  if (known.some(p => p.id === id)) return
  const v = readPlan(doc)
  await store.registerPlan({ id, name: v.name, createdAt: v.createdAt, createdBy: v.createdBy })
}
