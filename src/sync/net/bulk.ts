/**
 * One-shot `concord sync` by direct change exchange (exchange.ts, POST /v1/exchange), with no Repo and
 * no Automerge sync protocol on the client: documents are read from the store without their JavaScript
 * view, the changes the server lacks go up as `saveSince` chunks, the changes we lack come back as
 * chunks and are added to the store as they are (DocStore.addChunk: nothing is replaced).
 *
 * What the server lacks is found without the sync protocol, from a base both sides have:
 *  - the heads we had after our last successful sync with this server (its storage id), recorded in the
 *    store (`sync-bases/<storage id>.json`): everything up to them is on the server, durably;
 *  - else, for a report log, its genesis change (every copy of a log starts with the same one);
 *  - else the server's durable heads (POST /v1/confirm) that we have;
 *  - else (nothing in common, or a document new to the server) the whole document, compressed.
 * A wrong or missing record costs bytes only: the server says when changes build on changes it lacks,
 * and the document goes again whole.
 */
import * as A from "@automerge/automerge"
import { promises as fsp } from "node:fs"
import path from "node:path"
import { reportDocId } from "../../doc/ids.js"
import { isPlanDoc, readPlan } from "../../doc/plan.js"
import { reportsGenesis } from "../../doc/reports.js"
import type { PlanStore } from "../store/PlanStore.js"
import { writeFileAtomic } from "../storage/atomic.js"
import { chunkContents, listChunks } from "../storage/chunk-format.js"
import type { Backend } from "./access.js"
import { type PlansResponse, type ServerApi, SyncError } from "./api.js"
import { encodeFramed, type ExchangeAnswerDoc, type ExchangeRequestDoc, jobsOf, parseAnswer } from "./exchange.js"

export interface BulkPlan {
  id: string
  onServer: boolean
  serverDocs: Set<string>
  serverJobs: string[]
}

export interface BulkResult {
  plans: { id: string; name: string; docs: number; received: number; newHere: boolean; newThere: boolean }[]
  skipped: { id: string; why: string }[]
}

interface Item {
  id: string
  planId: string
  /** set for a report log */
  job?: string
  raw: Backend | undefined
  /** the chunk files `raw` was read from */
  keys?: Set<string>
  /** the server has it (per its plan list) */
  onServer: boolean
}

const SAFE_ID = /^[A-Za-z0-9_-]{1,128}$/
const sleep = (ms: number) => new Promise(r => setTimeout(r, ms))

/** Where the heads of the last successful sync with a server are kept. */
export function basesFile(storeDir: string, storageId: string): string | undefined {
  return SAFE_ID.test(storageId) ? path.join(storeDir, "sync-bases", `${storageId}.json`) : undefined
}

/** The recorded heads per document (empty when none, or unreadable: it only saves bytes). */
async function readBases(storeDir: string, storageId: string): Promise<Map<string, string[]>> {
  const file = basesFile(storeDir, storageId)
  if (!file) return new Map()
  try {
    const v = JSON.parse(await fsp.readFile(file, "utf8")) as { docs?: Record<string, unknown> }
    const out = new Map<string, string[]>()
    for (const [id, heads] of Object.entries(v.docs ?? {})) {
      if (Array.isArray(heads) && heads.every(h => typeof h === "string" && /^[0-9a-f]{64}$/.test(h))) out.set(id, heads as string[])
    }
    return out
  } catch {
    return new Map()
  }
}

async function writeBases(storeDir: string, storageId: string, bases: Map<string, string[]>): Promise<void> {
  const file = basesFile(storeDir, storageId)
  if (!file) return
  // a cache: rebuilt by the next sync if lost, so no fsync
  await writeFileAtomic(file, JSON.stringify({ v: 1, docs: Object.fromEntries(bases) }), { root: storeDir, durable: false })
}

const has = (raw: Backend, h: string) => raw.getChangeByHash(h) !== null

/**
 * Sync the chosen plans in one exchange (a second one only for documents whose base was wrong).
 * Returns undefined, having written nothing, when the server has no exchange endpoint or the request
 * is over its size limit (the caller then syncs through the sync protocol).
 */
export async function syncByExchange(
  store: PlanStore,
  remote: PlansResponse,
  api: ServerApi,
  chosen: BulkPlan[],
  opts: { deadline: number; log: (line: string) => void }
): Promise<BulkResult | undefined> {
  const storageId = remote.server.storageId
  const bases = await readBases(store.dir, storageId)
  const indexed = new Map((await store.listPlans()).map(p => [p.id, p]))
  const serverPlans = new Map(remote.plans.map(p => [p.id, p]))

  // the documents, each plan before its report logs (a plan new to the server tells it which logs are its)
  const items: Item[] = []
  for (const c of chosen) {
    const raw = (await store.docs.loadBackend(c.id))?.raw
    items.push({ id: c.id, planId: c.id, raw, onServer: c.onServer })
    for (const job of new Set([...(raw ? jobsOf(raw) : []), ...c.serverJobs])) {
      const rid = reportDocId(c.id, job)
      const local = await store.docs.loadBackend(rid)
      if (!local && !c.serverDocs.has(rid)) continue
      items.push({ id: rid, planId: c.id, job, raw: local?.raw, keys: local?.keys, onServer: c.serverDocs.has(rid) })
    }
  }

  // a base for each document we have and the server has: the record, else the server's heads we have
  const base = new Map<string, string[]>()
  const ask: string[] = []
  for (const it of items) {
    if (!it.raw || !it.onServer) continue
    const recorded = (bases.get(it.id) ?? []).filter(h => has(it.raw!, h))
    // a report log starts with a change every copy shares (its genesis): a base without asking
    const genesis = it.job !== undefined ? A.getHeads(reportsGenesis(it.planId, it.job)).filter(h => has(it.raw!, h)) : []
    if (recorded.length) base.set(it.id, recorded)
    else if (genesis.length) base.set(it.id, genesis)
    else ask.push(it.id)
  }
  if (ask.length) {
    const heads = await retrying(api, opts, () => api.confirm(ask))
    for (const id of ask) {
      const it = items.find(x => x.id === id)!
      const common = (heads[id] ?? []).filter(h => has(it.raw!, h))
      if (common.length) base.set(id, common)
    }
  }

  const received = new Map<string, number>()
  const answered = new Map<string, ExchangeAnswerDoc>()
  const refusals: { id: string; reason: string }[] = []
  let round = items
  for (let attempt = 0; round.length > 0 && attempt < 2; attempt++) {
    const docs: ExchangeRequestDoc[] = []
    const chunks: Uint8Array[] = []
    for (const it of round) {
      const b = attempt === 0 ? base.get(it.id) : undefined
      docs.push({ id: it.id, heads: it.raw ? it.raw.getHeads() : [], bytes: 0 })
      chunks.push(!it.raw ? new Uint8Array(0) : b ? it.raw.saveSince(b) : it.raw.save())
    }
    const body = encodeFramed(docs, chunks)
    const buf = await retrying(api, opts, () => api.exchange(body, Math.max(1000, opts.deadline - Date.now())))
    if (buf === null) {
      if (attempt === 0) return undefined
      throw new SyncError("protocol", `the server at ${api.base.host} stopped taking the change exchange (404 or request over its size limit)`)
    }
    let answer: ReturnType<typeof parseAnswer>
    try {
      answer = parseAnswer(buf)
    } catch (e) {
      throw new SyncError("protocol", `unreadable exchange answer from ${api.base.host}: ${(e as Error).message}`)
    }
    if (answer.docs.length !== round.length) {
      throw new SyncError("protocol", `the server answered for ${answer.docs.length} of the ${round.length} documents sent`)
    }
    const again: Item[] = []
    for (let i = 0; i < answer.docs.length; i++) {
      const a = answer.docs[i]
      const it = round.find(x => x.id === a.id)
      if (!it) throw new SyncError("protocol", `the server answered for document ${a.id}, which we did not send`)
      const bytes = answer.chunks[i]
      if (bytes.byteLength > 0) {
        const got = await addReceived(store, it, bytes)
        received.set(it.id, (received.get(it.id) ?? 0) + got.count)
        // a report log's cached digest follows what came in, as a save's hook would keep it (status reads
        // only what the cache does not cover): the server's heads are ours now, unless it refused ours
        if (it.job !== undefined && a.heads && !a.refused && !a.missingDeps)
          await store.noteAddedChunk(it.id, it.raw && it.keys ? { raw: it.raw, keys: it.keys } : undefined, got, a.heads)
      }
      if (a.missingDeps && attempt === 0) again.push(it)
      else if (a.refused) refusals.push({ id: a.id, reason: a.refused })
      else if (a.missingDeps) refusals.push({ id: a.id, reason: "the server lacks changes ours build on" })
      answered.set(a.id, a)
    }
    round = again
  }

  // the bases for next time: what both sides now have
  for (const it of items) {
    const a = answered.get(it.id)
    if (a?.heads && !a.refused && !a.missingDeps) bases.set(it.id, a.heads)
  }
  await writeBases(store.dir, storageId, bases).catch(e => opts.log(`cannot record what the server has (${(e as Error).message}); the next sync sends more`))

  if (refusals.length) {
    const r = refusals[0]
    throw new SyncError("refused", `the server refused our changes to document ${r.id}: ${r.reason}`)
  }

  const out: BulkResult = { plans: [], skipped: [] }
  for (const c of chosen) {
    const mine = items.filter(x => x.planId === c.id)
    const plan = answered.get(c.id)
    const hadPlan = !!mine[0]?.raw
    if (!hadPlan && !plan?.heads) {
      out.skipped.push({ id: c.id, why: "the server did not send it" })
      continue
    }
    let name = indexed.get(c.id)?.name ?? serverPlans.get(c.id)?.name ?? ""
    if (!indexed.has(c.id)) {
      // new here: into the local plans index, after its document is durable (it is: addChunk)
      const doc = await store.docs.load<unknown>(c.id, { keepCopy: false })
      if (!isPlanDoc(doc)) throw new SyncError("protocol", `document ${c.id} is not a concord plan`)
      const v = readPlan(doc)
      name = v.name
      await store.registerPlan({ id: c.id, name: v.name, createdAt: v.createdAt, createdBy: v.createdBy })
    }
    out.plans.push({
      id: c.id,
      name,
      docs: mine.filter(x => x.raw || answered.get(x.id)?.heads).length,
      received: mine.reduce((n, x) => n + (received.get(x.id) ?? 0), 0),
      newHere: !hadPlan,
      newThere: !c.onServer,
    })
  }
  return out
}

/**
 * Add what the server sent to the store as one chunk file; returns how many of its changes are new here,
 * the file ("incremental/<hash>") and the changes in it (one change's bytes each).
 */
async function addReceived(store: PlanStore, it: Item, bytes: Uint8Array): Promise<{ count: number; key: string; changes: Uint8Array[] }> {
  const contents = chunkContents(bytes)
  const listed = listChunks(bytes)
  if (!contents || !listed.ok) throw new SyncError("protocol", `the server sent damaged changes for document ${it.id}`)
  let count: number
  let changes: Uint8Array[]
  if (contents.hasDocument || contents.opaque) {
    const fresh = A.getBackend(A.init())
    fresh.loadIncremental(bytes)
    count = Math.max(0, fresh.stats().numChanges - (it.raw ? it.raw.stats().numChanges : 0))
    changes = fresh.getChanges([])
  } else {
    count = it.raw ? contents.changeHashes.filter(h => !has(it.raw!, h)).length : contents.changeHashes.length
    changes = listed.chunks.map(c => bytes.subarray(c.offset, c.offset + c.size))
  }
  const key = await store.docs.addChunk(it.id, bytes)
  return { count, key: `${key[1]}/${key[2]}`, changes }
}

/** A call to the server, made again (with backoff) while the server is unreachable, until the deadline. */
async function retrying<T>(api: ServerApi, opts: { deadline: number; log: (line: string) => void }, call: () => Promise<T>): Promise<T> {
  let lost: string | undefined
  for (let attempt = 0; ; attempt++) {
    try {
      const r = await call()
      if (lost) opts.log(`connected to ${api.base.host} again`)
      return r
    } catch (e) {
      if (!(e instanceof SyncError) || e.kind !== "unreachable") throw e
      const wait = Math.min(5000, 250 * 2 ** Math.min(attempt, 5))
      if (Date.now() + wait > opts.deadline) throw new SyncError("timeout", `sync did not complete in time: ${e.message}`)
      lost = e.message
      opts.log(`disconnected from ${api.base.host} (${e.message}); reconnecting in ${(wait / 1000).toFixed(1)}s`)
      await sleep(wait)
    }
  }
}
