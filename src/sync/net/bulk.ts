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
import { retrying } from "../../lib/async.js"
import type { PlanStore } from "../store/PlanStore.js"
import { writeFileAtomic } from "../storage/atomic.js"
import { chunkContents } from "../storage/chunk-format.js"
import type { Backend } from "./access.js"
import { type PlansResponse, ServerApi, SyncError } from "./api.js"
import { choosePlans } from "./choose.js"
import { encodeFramed, type ExchangeAnswerDoc, type ExchangeRequestDoc, jobsOf, parseAnswer } from "./exchange.js"
import type { SyncOptions, SyncResult } from "./sync.js"

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
  /** our copy, read without its view (undefined: none here, or not read: `known`) */
  raw: Backend | undefined
  /** the chunk files `raw` was read from, or that make `known` */
  keys?: Set<string>
  /** our copy was not read: unchanged since the last sync with this server, these are its heads */
  known?: string[]
  /** the server has it (per its plan list) */
  onServer: boolean
}

const SAFE_ID = /^[A-Za-z0-9_-]{1,128}$/

/** Where the heads of the last successful sync with a server are kept. */
export function basesFile(storeDir: string, storageId: string): string | undefined {
  return SAFE_ID.test(storageId) ? path.join(storeDir, "sync-bases", `${storageId}.json`) : undefined
}

/**
 * What the last successful sync with a server left: per document, the heads both sides had after it
 * (`docs`), and the chunk files our copy was made of then (`files`, "type/hash"): while a document's
 * files are still exactly those, its heads are the recorded ones and nothing of ours is new to the
 * server, so it is not read for the sync. Empty when none, or unreadable: it only saves work.
 */
interface Bases {
  heads: Map<string, string[]>
  files: Map<string, string[]>
}

const HEX64 = /^[0-9a-f]{64}$/

async function readBases(storeDir: string, storageId: string): Promise<Bases> {
  const out: Bases = { heads: new Map(), files: new Map() }
  const file = basesFile(storeDir, storageId)
  if (!file) return out
  try {
    const v = JSON.parse(await fsp.readFile(file, "utf8")) as { docs?: Record<string, unknown>; files?: Record<string, unknown> }
    for (const [id, heads] of Object.entries(v.docs ?? {})) {
      if (Array.isArray(heads) && heads.every(h => typeof h === "string" && HEX64.test(h))) out.heads.set(id, heads as string[])
    }
    for (const [id, files] of Object.entries(v.files ?? {})) {
      if (Array.isArray(files) && files.every(f => typeof f === "string")) out.files.set(id, files as string[])
    }
    return out
  } catch {
    return out
  }
}

async function writeBases(storeDir: string, storageId: string, bases: Bases): Promise<void> {
  const file = basesFile(storeDir, storageId)
  if (!file) return
  // a cache: rebuilt by the next sync if lost, so no fsync
  const body = { v: 1, docs: Object.fromEntries(bases.heads), files: Object.fromEntries(bases.files) }
  await writeFileAtomic(file, JSON.stringify(body), { root: storeDir, durable: false })
}

const sameList = (a: string[] | undefined, b: string[]) => !!a && a.length === b.length && a.every((x, i) => x === b[i])

const has = (raw: Backend, h: string) => raw.getChangeByHash(h) !== null

/**
 * A one-shot sync by exchange alone: the server's plan list, the plans chosen, one exchange (sync.ts's
 * syncOnce, and the lean start-up of `concord sync`, src/cli/lean-sync.ts). `declined`, having written
 * nothing, when the server has no exchange endpoint or the request is over its size limit: the caller
 * then syncs through the sync protocol, from the plan list it was given. `ready`: resolves once Automerge
 * can run (a process that is still compiling its WebAssembly); the plan list is asked for meanwhile.
 */
export async function syncOnceByExchange(store: PlanStore, opts: SyncOptions, ready?: Promise<unknown>): Promise<SyncResult | { declined: PlansResponse }> {
  const t0 = Date.now()
  const log = opts.log ?? (() => {})
  const api = new ServerApi(opts.url, opts.token, opts.ca)
  const asked = api.syncPlans()
  if (ready) {
    asked.catch(() => {}) // (awaited below)
    await ready
  }
  const remote = await asked
  const { chosen, skipped } = await choosePlans(store, remote, opts.plans)
  const r = await syncByExchange(store, remote, api, chosen, { deadline: t0 + (opts.timeoutMs ?? 120_000), log })
  if (!r) return { declined: remote }
  for (const s of [...skipped, ...r.skipped]) log(`skipped plan ${s.id}: ${s.why}`)
  return { url: opts.url, ms: Date.now() - t0, plans: r.plans, skipped: [...skipped, ...r.skipped] }
}

/**
 * Sync the chosen plans in one exchange (a second one only for documents whose base was wrong).
 * Returns undefined, having written nothing, when the server has no exchange endpoint or the request
 * is over its size limit (the caller then syncs through the sync protocol).
 */
async function syncByExchange(
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

  // the documents, each plan before its report logs (a plan new to the server tells it which logs are its).
  // A document whose chunk files are those the last sync recorded is not read: its heads are the
  // recorded ones, which the server has.
  const open = async (id: string, onServer: boolean): Promise<Pick<Item, "raw" | "keys" | "known">> => {
    const files = await store.docs.chunkFiles(id)
    const heads = bases.heads.get(id)
    if (onServer && heads && files.length > 0 && sameList(bases.files.get(id), files)) return { raw: undefined, keys: new Set(files), known: heads }
    const local = await store.docs.loadBackend(id)
    return { raw: local?.raw, keys: local?.keys }
  }
  const items: Item[] = []
  for (const c of chosen) {
    const plan = await open(c.id, c.onServer)
    items.push({ id: c.id, planId: c.id, ...plan, onServer: c.onServer })
    // an unchanged plan has no job the server's copy lacks
    for (const job of new Set([...(plan.raw ? jobsOf(plan.raw) : []), ...c.serverJobs])) {
      const rid = reportDocId(c.id, job)
      const local = await open(rid, c.serverDocs.has(rid))
      if (!local.raw && !local.known && !c.serverDocs.has(rid)) continue
      items.push({ id: rid, planId: c.id, job, ...local, onServer: c.serverDocs.has(rid) })
    }
  }
  // read an unchanged document after all (to send it whole, or for what came back)
  const read = async (it: Item): Promise<Backend | undefined> => {
    if (it.raw || !it.known) return it.raw
    const local = await store.docs.loadBackend(it.id)
    it.raw = local?.raw
    it.keys = local?.keys
    it.known = undefined
    return it.raw
  }
  // a base for each document we have and the server has: the record, else the server's heads we have
  const base = new Map<string, string[]>()
  const ask: string[] = []
  for (const it of items) {
    if (it.known) {
      base.set(it.id, it.known)
      continue
    }
    if (!it.raw || !it.onServer) continue
    const recorded = (bases.heads.get(it.id) ?? []).filter(h => has(it.raw!, h))
    if (recorded.length) {
      base.set(it.id, recorded)
      continue
    }
    // a report log starts with a change every copy shares (its genesis): a base without asking
    const genesis = it.job !== undefined ? A.getHeads(reportsGenesis(it.planId, it.job)).filter(h => has(it.raw!, h)) : []
    if (genesis.length) base.set(it.id, genesis)
    else ask.push(it.id)
  }
  if (ask.length) {
    const heads = await retryingCall(api, opts, () => api.confirm(ask))
    for (const id of ask) {
      const it = items.find(x => x.id === id)!
      const common = (heads[id] ?? []).filter(h => has(it.raw!, h))
      if (common.length) base.set(id, common)
    }
  }

  const received = new Map<string, number>()
  const addedKeys = new Map<string, string>()
  const answered = new Map<string, ExchangeAnswerDoc>()
  const refusals: { id: string; reason: string }[] = []
  let round = items
  for (let attempt = 0; round.length > 0 && attempt < 2; attempt++) {
    const docs: ExchangeRequestDoc[] = []
    const chunks: Uint8Array[] = []
    for (const it of round) {
      const b = attempt === 0 ? base.get(it.id) : undefined
      if (it.known && b) {
        // unchanged since the last sync: nothing of ours is new to the server
        docs.push({ id: it.id, heads: it.known, bytes: 0 })
        chunks.push(new Uint8Array(0))
        continue
      }
      const raw = await read(it)
      docs.push({ id: it.id, heads: raw ? raw.getHeads() : [], bytes: 0 })
      chunks.push(!raw ? new Uint8Array(0) : b ? raw.saveSince(b) : await wholeDocument(store, it, raw))
    }
    const body = encodeFramed(docs, chunks)
    const buf = await retryingCall(api, opts, () => api.exchange(body, Math.max(1000, opts.deadline - Date.now())))
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
        // what came back builds on our heads (it is what the server has beyond them), unless it is a
        // whole document: then our copy is read (`read`), to count what is new
        const got = await addReceived(store, it, bytes, read, !!a.heads && !a.refused && !a.missingDeps)
        addedKeys.set(it.id, got.key)
        received.set(it.id, (received.get(it.id) ?? 0) + got.count)
        // a report log's cached digest follows what came in, as a save's hook would keep it (status reads
        // only what the cache does not cover): the server's heads are ours now, unless it refused ours
        if (it.job !== undefined && a.heads && !a.refused && !a.missingDeps) {
          const before = it.raw && it.keys ? { raw: it.raw, keys: it.keys } : it.known && it.keys ? { heads: it.known, keys: it.keys } : undefined
          // a cache that does not cover our unchanged copy exactly: read the copy, and note again
          if (!(await store.noteAddedChunk(it.id, before, got, a.heads))) {
            // read now, our copy holds what came in too: the changes since the cache are all in it
            const raw = await read(it)
            await store.noteAddedChunk(it.id, raw && it.keys ? { raw, keys: it.keys } : undefined, { key: got.key, changes: [] }, a.heads)
          }
        }
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
    const got = addedKeys.get(it.id)
    const agreed = a?.heads && !a.refused && !a.missingDeps ? a.heads : undefined
    if (agreed) bases.heads.set(it.id, agreed)
    // our copy is now the files it was read from and the one added: both sides' heads
    if (agreed && (it.keys || got)) bases.files.set(it.id, [...new Set([...(it.keys ?? []), ...(got ? [got] : [])])].sort())
    else bases.files.delete(it.id)
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
    const hadPlan = !!mine[0]?.raw || !!mine[0]?.known
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
      docs: mine.filter(x => x.raw || x.known || answered.get(x.id)?.heads).length,
      received: mine.reduce((n, x) => n + (received.get(x.id) ?? 0), 0),
      newHere: !hadPlan,
      newThere: !c.onServer,
    })
  }
  return out
}

/**
 * A whole document to send: the file it was read from when that is one snapshot of exactly these
 * heads (a store compacts a document into one snapshot: `save()` would only make the same bytes
 * again), else `save()`.
 */
async function wholeDocument(store: PlanStore, it: Item, raw: Backend): Promise<Uint8Array> {
  const only = it.keys?.size === 1 ? [...it.keys][0].split("/") : []
  if (only[0] === "snapshot" && only.length === 2) {
    const bytes = await store.docs.adapter.load([it.id, "snapshot", only[1]]).catch(() => undefined)
    const c = bytes && chunkContents(bytes)
    const heads = raw.getHeads()
    if (c && c.chunks.length === 1 && c.hasDocument && !c.opaque && sameList([...c.documentHeads].sort(), [...heads].sort())) return bytes
  }
  return raw.save()
}

/**
 * Add what the server sent to the store as one chunk file; returns how many of its changes are new here,
 * the file ("incremental/<hash>") and the changes in it (one change's bytes each).
 */
async function addReceived(
  store: PlanStore,
  it: Item,
  bytes: Uint8Array,
  read: (it: Item) => Promise<Backend | undefined>,
  /** the server took our changes: it has our heads, and sent only changes past them, all new here */
  pastOurs: boolean
): Promise<{ count: number; key: string; changes: Uint8Array[] }> {
  // one parse of the chunk headers, one hash per change (checksums included)
  const contents = chunkContents(bytes)
  if (!contents) throw new SyncError("protocol", `the server sent damaged changes for document ${it.id}`)
  let count: number
  let changes: Uint8Array[]
  if (contents.hasDocument || contents.opaque) {
    const fresh = A.getBackend(A.init())
    fresh.loadIncremental(bytes)
    const ours = await read(it)
    count = Math.max(0, fresh.stats().numChanges - (ours ? ours.stats().numChanges : 0))
    changes = fresh.getChanges([])
  } else {
    count = pastOurs ? new Set(contents.changeHashes).size : newHere(it.raw, contents.changeHashes)
    changes = contents.chunks.map(c => bytes.subarray(c.offset, c.offset + c.size))
  }
  const key = await store.docs.addChunk(it.id, bytes)
  return { count, key: `${key[1]}/${key[2]}`, changes }
}

/**
 * How many of `hashes` a document lacks, asked once (getMissingDeps: the hashes it does not have, and
 * the missing dependencies of changes it holds back), not per hash (getChangeByHash rebuilds each change).
 */
function newHere(raw: Backend | undefined, hashes: string[]): number {
  if (!raw) return new Set(hashes).size
  const missing = new Set(raw.getMissingDeps(hashes))
  return new Set(hashes.filter(h => missing.has(h))).size
}

/** A call to the server, made again (with backoff) while the server is unreachable, until the deadline. */
function retryingCall<T>(api: ServerApi, opts: { deadline: number; log: (line: string) => void }, call: () => Promise<T>): Promise<T> {
  return retrying(call, {
    retryIf: e => e instanceof SyncError && e.kind === "unreachable",
    baseMs: 250,
    maxMs: 5000,
    deadline: opts.deadline,
    late: e => new SyncError("timeout", `sync did not complete in time: ${(e as Error).message}`),
    onRetry: (e, wait) => opts.log(`disconnected from ${api.base.host} (${(e as Error).message}); reconnecting in ${(wait / 1000).toFixed(1)}s`),
    onRecovered: () => opts.log(`connected to ${api.base.host} again`),
  })
}
