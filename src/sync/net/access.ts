/**
 * Access control of the sync server. automerge-repo has none (any peer that knows a document id may
 * read and write it), so the server judges every message before its Repo sees it.
 *
 * What a token can read: the plans listed in its record ("*": every plan), and the report logs of those
 * plans' jobs. Every other document is "unavailable" to it (the Repo's `shareConfig.access` hook), and
 * nothing of it is sent to the peer (the adapter's outbound hook).
 *
 * What a token can write (judged on the Automerge changes inside each incoming sync message; a change
 * the server already has is never judged again):
 *  - admin: anything in its plans, including pushing a plan the server does not have yet;
 *  - writer: anything in its plans' documents the server already has, and new report logs of those
 *    plans; it cannot introduce a plan document;
 *  - reader: nothing;
 *  - job:NAME: in the plan document, only operations on the objects `jobs[NAME].status` (set/delete of
 *    a key), `jobs[NAME].skipped` (set/delete), `jobs[NAME].attempts` (creating an attempt record) and the
 *    attempt records under it (set/delete of fields); in its own report log (created with the shared
 *    genesis change if new), only appending report records. Nothing else: not the plan's status,
 *    checkpoint, approvals or lease, not another job, not another job's report log, not editing or
 *    deleting past reports.
 * A message carrying any refused change is dropped whole (none of its changes is stored) and logged.
 * Values are not checked: a job token may write any status string into its own job's status map.
 */
import * as A from "@automerge/automerge"
import { reportDocId } from "../../doc/ids.js"
import { reportsGenesis } from "../../doc/reports.js"
import {
  CHUNK_TYPE_BUNDLE,
  CHUNK_TYPE_CHANGE,
  CHUNK_TYPE_COMPRESSED_CHANGE,
  listChunks,
  verifyAutomergeBytes,
} from "../storage/chunk-format.js"
import { ALL_PLANS, roleJob, type Role, type TokenRecord } from "./tokens.js"

export interface Principal {
  token: TokenRecord
}

export type Verdict = { ok: true } | { ok: false; reason: string }
const OK: Verdict = { ok: true }
const no = (reason: string): Verdict => ({ ok: false, reason })

export interface DocRef {
  planId: string
  /** set for a report log */
  job?: string
}

/** Which plans the server has, and which report-log ids belong to which plan and job. */
export class PlanIndex {
  readonly plans = new Map<string, { name: string; jobs: string[] }>()
  readonly #reports = new Map<string, DocRef>()

  setPlan(planId: string, name: string, jobs: string[]): void {
    const prev = this.plans.get(planId)
    if (prev) for (const j of prev.jobs) this.#reports.delete(reportDocId(planId, j))
    this.plans.set(planId, { name, jobs: [...jobs] })
    for (const j of jobs) this.#reports.set(reportDocId(planId, j), { planId, job: j })
  }

  has(planId: string): boolean {
    return this.plans.has(planId)
  }

  lookup(docId: string): DocRef | undefined {
    if (this.plans.has(docId)) return { planId: docId }
    return this.#reports.get(docId)
  }

  reportIds(planId: string): Map<string, string> {
    const p = this.plans.get(planId)
    return new Map((p?.jobs ?? []).map(j => [reportDocId(planId, j), j]))
  }
}

export function grantsPlan(token: TokenRecord, planId: string): boolean {
  return token.plans.includes(planId) || token.plans.includes(ALL_PLANS)
}

export class AccessPolicy {
  constructor(readonly index: PlanIndex) {}

  /** May this token read this document? */
  canRead(token: TokenRecord, docId: string): boolean {
    const ref = this.index.lookup(docId)
    if (ref) return grantsPlan(token, ref.planId)
    // A document the server does not know: a plan not pushed yet, granted by id or by "*".
    return token.plans.includes(docId) || token.plans.includes(ALL_PLANS)
  }

  /**
   * Judge an incoming message. `current` gives the server's current copy of the document (undefined if
   * it has none).
   */
  async judge(
    token: TokenRecord,
    message: { type: string; documentId?: string; data?: Uint8Array },
    current: (docId: string) => Promise<A.Doc<unknown> | undefined>
  ): Promise<Verdict> {
    const docId = message.documentId
    if (!docId) return no("message without a document")
    const readable = this.canRead(token, docId)
    if (message.type === "ephemeral") return readable ? OK : no("no access to this document")
    if (message.type === "doc-unavailable") return OK
    if (message.type !== "sync" && message.type !== "request") return no(`unsupported message type ${message.type}`)
    let changes: Uint8Array[]
    try {
      changes = A.decodeSyncMessage(message.data!).changes
    } catch (e) {
      return no(`malformed sync message (${(e as Error).message})`)
    }
    // Without changes a message only asks or tells heads: unreadable documents get "unavailable" from
    // the Repo's access hook.
    if (changes.length === 0) return OK
    if (!readable) return no(`token ${token.id} has no access to this document`)
    const role = token.role
    // Damaged or forged bytes never reach the Repo, whatever the role.
    const damaged = checkChangeBytes(changes)
    if (damaged) return no(`undecodable change (${damaged})`)
    if (role === "admin") return OK
    const doc = await current(docId)
    let decoded: A.DecodedChange[]
    try {
      decoded = decodeChanges(changes)
    } catch (e) {
      return no(`undecodable change (${(e as Error).message})`)
    }
    if (doc) decoded = decoded.filter(c => !A.hasHeads(doc, [c.hash!]))
    if (decoded.length === 0) return OK // nothing new
    const ref = this.index.lookup(docId)
    if (role === "writer") {
      if (doc || ref?.job) return OK
      return no(`${role} tokens cannot create a plan on the server (use an admin token)`)
    }
    if (role === "reader") return no(`token ${token.id} is read-only (${decoded.length} change(s) refused)`)
    const job = roleJob(role as Role)!
    if (!ref) return no(`role ${role} cannot create documents`)
    if (ref.job !== undefined) {
      if (ref.job !== job) return no(`role ${role} may not write the report log of job ${ref.job}`)
      return checkReportChanges(ref.planId, job, doc, decoded, role)
    }
    if (!doc) return no(`role ${role} cannot create plans`)
    return checkPlanChanges(doc, job, decoded, role)
  }
}

/**
 * The changes inside a sync message. Each entry of its `changes` may hold several concatenated chunks:
 * changes (plain or compressed), bundles of changes (Automerge 3 sends runs of changes that way), or a
 * whole document (sent to a peer that has none). Throws if anything does not decode, or if a document
 * chunk does not load completely (its changes could not all be judged).
 */
export function decodeChanges(entries: Uint8Array[]): A.DecodedChange[] {
  const out: A.DecodedChange[] = []
  for (const entry of entries) {
    const listed = listChunks(entry)
    if (!listed.ok) throw new Error(listed.reason)
    for (const ch of listed.chunks) {
      const bytes = entry.subarray(ch.offset, ch.offset + ch.size)
      if (ch.type === CHUNK_TYPE_CHANGE || ch.type === CHUNK_TYPE_COMPRESSED_CHANGE) out.push(A.decodeChange(bytes))
      else if (ch.type === CHUNK_TYPE_BUNDLE) out.push(...A.readBundle(bytes).changes)
      else {
        const doc = A.load(bytes)
        for (const c of A.getAllChanges(doc)) out.push(A.decodeChange(c))
      }
    }
  }
  return out
}

/** Container check of a sync message's change entries (framing and checksums), cheap. */
export function checkChangeBytes(entries: Uint8Array[]): string | undefined {
  for (const e of entries) {
    const v = verifyAutomergeBytes(e)
    if (!v.ok) return v.reason
  }
  return undefined
}

const opId = (c: A.DecodedChange, i: number) => `${c.startOp + i}@${c.actor}`
const short = (h: string | undefined) => (h ?? "?").slice(0, 8)

type Kind = "status" | "skipped" | "attempts" | "attempt"

function objId(v: unknown): string | undefined {
  if (v && typeof v === "object") {
    try {
      return A.getObjectId(v as A.Doc<unknown>) ?? undefined
    } catch {
      return undefined
    }
  }
  return undefined
}

/** job:NAME in the plan document: only the job's status / skipped / attempts entries. */
export function checkPlanChanges(doc: A.Doc<unknown>, job: string, changes: A.DecodedChange[], role: string): Verdict {
  const jobs = (doc as Record<string, unknown>).jobs as Record<string, Record<string, unknown>> | undefined
  const rec = jobs?.[job]
  if (!rec) return no(`the plan has no job ${job}`)
  const allowed = new Map<string, Kind>()
  const add = (v: unknown, kind: Kind) => {
    const id = objId(v)
    if (id) allowed.set(id, kind)
  }
  add(rec.status, "status")
  add(rec.skipped, "skipped")
  add(rec.attempts, "attempts")
  const attempts = rec.attempts as Record<string, unknown> | undefined
  if (attempts) {
    for (const k of Object.keys(attempts)) {
      // every concurrent value of the key (a retry race can leave two records): getConflicts keys
      // its values by op id, which for an object is the object's id
      const conflicts = A.getConflicts(attempts as A.Doc<Record<string, unknown>>, k)
      if (conflicts && Object.keys(conflicts).length > 0) {
        for (const [id, v] of Object.entries(conflicts)) if (v && typeof v === "object") allowed.set(id, "attempt")
      } else add(attempts[k], "attempt")
    }
  }
  for (const c of changes) {
    for (const [i, op] of c.ops.entries()) {
      const kind = allowed.get(op.obj)
      const where = `change ${short(c.hash)} (${op.action} ${"key" in op && op.key ? `"${op.key}" ` : ""}on object ${op.obj})`
      if (!kind) return no(`role ${role} may only change jobs.${job}.status/attempts/skipped: ${where} is outside`)
      if (kind === "attempts") {
        if (op.action !== "makeMap") return no(`role ${role} may only add attempt records to jobs.${job}.attempts: ${where}`)
        allowed.set(opId(c, i), "attempt")
        continue
      }
      if (op.action !== "set" && op.action !== "del") return no(`role ${role} may only set or delete fields here: ${where}`)
      if ("insert" in op && op.insert) return no(`role ${role}: unexpected list insert: ${where}`)
    }
  }
  return OK
}

const genesisCache = new Map<string, { hash: string; reportsObj: string }>()

function genesisOf(planId: string, job: string): { hash: string; reportsObj: string } {
  const key = `${planId}\0${job}`
  let g = genesisCache.get(key)
  if (!g) {
    const doc = reportsGenesis(planId, job)
    g = { hash: A.getHeads(doc)[0], reportsObj: A.getObjectId(doc.reports)! }
    if (genesisCache.size > 10_000) genesisCache.clear()
    genesisCache.set(key, g)
  }
  return g
}

/** job:NAME in its own report log: the shared genesis change, and appending report records. */
export function checkReportChanges(
  planId: string,
  job: string,
  _doc: A.Doc<unknown> | undefined,
  changes: A.DecodedChange[],
  role: string
): Verdict {
  const g = genesisOf(planId, job)
  const allowed = new Map<string, "reports" | "record">([[g.reportsObj, "reports"]])
  for (const c of changes) {
    if (c.hash === g.hash) continue
    for (const [i, op] of c.ops.entries()) {
      const kind = allowed.get(op.obj)
      const where = `change ${short(c.hash)} (${op.action} on object ${op.obj})`
      if (!kind) return no(`role ${role} may only append reports to its log: ${where}`)
      if (kind === "reports") {
        if (!("insert" in op && op.insert) || op.action !== "makeMap") {
          return no(`role ${role} may only append report records (no edits or deletions): ${where}`)
        }
        allowed.set(opId(c, i), "record")
        continue
      }
      if (op.action !== "set" || ("insert" in op && op.insert)) return no(`role ${role} may only set fields of a new report: ${where}`)
    }
  }
  return OK
}
