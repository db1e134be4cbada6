/**
 * Access control of the sync server. automerge-repo has none (any peer that knows a document id may
 * read and write it), so the server judges every message before its Repo sees it.
 *
 * What a token can read: the plans listed in its record ("*": every plan), and the report logs of those
 * plans' jobs. Every other document is "unavailable" to it (the Repo's `shareConfig.access` hook), and
 * nothing of it is sent to the peer (the adapter's outbound hook).
 *
 * What a token can write is judged on what the changes DO, not only where they write: the changes of a
 * message are applied (one decode) to a copy of the server's document, and each new change is judged by
 * comparing the document as its writer saw it (the change's dependencies) with the document right after
 * it (Automerge `view` + `diff`), and, for job tokens, the merged result with the server's copy before.
 *  - admin: anything in its plans, including pushing a plan the server does not have yet;
 *  - writer: anything in its plans' documents the server already has, and new report logs of those
 *    plans, except moves the state machines forbid: every job attempt's status may only move along
 *    JOB_TRANSITIONS, a new attempt only after a retryable one (a retry or a skip), the plan status only
 *    along PLAN_TRANSITIONS; no job, attempt or status key is ever deleted; it cannot introduce a plan;
 *  - reader: nothing;
 *  - job:NAME: in the plan document, only its job's CURRENT attempt: its status along
 *    JOB_AGENT_TRANSITIONS (states.ts: running -> completed | failed) and the attempt facts in
 *    AGENT_ATTEMPT_FIELDS (scalars); it creates no attempt, and the merged result must be such a move
 *    too (a job token cannot override what the orchestrator decided concurrently). In its own report log
 *    (created with the shared genesis change if new), only appending well-formed report records for its
 *    job's current attempt. Nothing else: not the plan's fields, checkpoint, approvals or lease, not
 *    another job or attempt, not another job's report log, not editing or deleting past reports.
 * A message carrying any refused change is dropped whole (none of its changes is stored), logged, and
 * the client is told why. Accepted changes are returned (hash, actor, claimed author) for the audit.
 */
import * as A from "@automerge/automerge"
import { reportDocId } from "../../doc/ids.js"
import { parseChangeNote } from "../../doc/actor.js"
import { reportsGenesis } from "../../doc/reports.js"
import { plain, str } from "../../doc/resolve.js"
import {
  AGENT_ATTEMPT_FIELDS,
  canAgentTransition,
  canJobReach,
  canJobTransition,
  canPlanTransition,
  isJobStatus,
  isPlanStatus,
  isReportStatus,
  JOB_AGENT_TRANSITIONS,
  JOB_RANK,
  JOB_RETRYABLE,
  type JobStatus,
  PLAN_CONFLICT_PRIORITY,
  type PlanStatus,
} from "../../doc/states.js"
import { type ChangeHeader, verifyAutomergeBytes } from "../storage/chunk-format.js"
import { ALL_PLANS, roleJob, type Role, type TokenRecord } from "./tokens.js"

export interface Principal {
  token: TokenRecord
}

/** A change the server accepted: what the audit records of it. */
export interface AcceptedChange {
  hash: string
  actor: string
  /** the author the change claims (`by` of its message), if it has one */
  by: string | null
}

export type Refusal = { ok: false; reason: string }
/** Automerge's document without its JavaScript view (A.getBackend): applying changes to it builds none. */
export type Backend = ReturnType<typeof A.getBackend>
/**
 * `changes`: the changes new to the server; `created`: the message creates the document on the server;
 * `doc` (or, for an admin, `raw`: no JavaScript view is built for what an admin sends): the server's
 * document with the message applied.
 */
export type Judgement = { ok: true; changes: AcceptedChange[]; created: boolean; doc?: A.Doc<unknown>; raw?: Backend } | Refusal
const no = (reason: string): Refusal => ({ ok: false, reason })
const NOTHING: Judgement & { ok: true } = { ok: true, changes: [], created: false }

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
  /**
   * The document each recently accepted message produced, until the Repo's copy has caught up: the
   * Repo applies a message asynchronously (it may still be loading the document), and the next message
   * of the same client builds on the previous one.
   */
  readonly #accepted = new Map<string, A.Doc<unknown>>()
  /** the same for messages of admin tokens, kept without a JavaScript view (a document id is in one map only) */
  readonly #acceptedRaw = new Map<string, Backend>()

  constructor(readonly index: PlanIndex) {}

  /** An admin's accepted document as a document with a view (rare: a non-admin writes right after an admin). */
  #viewOfRaw(docId: string, repo: A.Doc<unknown> | undefined): void {
    const raw = this.#acceptedRaw.get(docId)
    if (!raw) return
    this.#acceptedRaw.delete(docId)
    if (repo && hasAll(A.getBackend(repo), raw.getHeads())) return // the Repo has caught up
    const doc = repo ? A.applyChanges(A.clone(repo), A.getBackend(repo).getChangesAdded(raw))[0] : A.load<unknown>(raw.save())
    this.#accepted.set(docId, doc)
  }

  /** The newest of the server's copy and what recently accepted messages made of it (read only). */
  #freshest(docId: string, repo: A.Doc<unknown> | undefined): A.Doc<unknown> | undefined {
    this.#viewOfRaw(docId, repo)
    const mine = this.#accepted.get(docId)
    if (!mine) return repo
    if (!repo || A.hasHeads(mine, A.getHeads(repo))) return mine
    if (A.hasHeads(repo, A.getHeads(mine))) return repo
    return A.merge(A.clone(mine), repo)
  }

  /**
   * The document to judge a message against, taken out of the cache: our own copy (changed in place,
   * no clone) when we have one at least as new as the Repo's, else the Repo's (cloned by the judge).
   */
  #base(docId: string, repo: A.Doc<unknown> | undefined): { doc: A.Doc<unknown> | undefined; owned: boolean } {
    this.#viewOfRaw(docId, repo)
    const mine = this.#accepted.get(docId)
    this.#accepted.delete(docId)
    if (!mine) return { doc: repo, owned: false }
    if (!repo || A.hasHeads(mine, A.getHeads(repo))) return { doc: mine, owned: true }
    if (A.hasHeads(repo, A.getHeads(mine))) return { doc: repo, owned: false }
    return { doc: A.merge(mine, repo), owned: true }
  }

  /** The base for an admin's message, without a JavaScript view: ours (taken out of the cache), else a fork of the Repo's. */
  #rawBase(docId: string, repo: Backend | undefined): Backend | undefined {
    const mineRaw = this.#acceptedRaw.get(docId)
    const mineDoc = this.#accepted.get(docId)
    this.#acceptedRaw.delete(docId)
    this.#accepted.delete(docId)
    const raw = mineRaw ?? (mineDoc ? A.getBackend(mineDoc).fork() : undefined)
    if (!raw) return repo ? repo.fork() : undefined
    if (repo && !hasAll(raw, repo.getHeads())) raw.merge(repo)
    return raw
  }

  /** Remember what an accepted message made of a document (see #accepted). */
  noteAccepted(docId: string, j: { doc?: A.Doc<unknown>; raw?: Backend }): void {
    if (j.raw) {
      this.#accepted.delete(docId)
      this.#acceptedRaw.delete(docId)
      this.#acceptedRaw.set(docId, j.raw)
      if (this.#acceptedRaw.size > 256) this.#acceptedRaw.delete(this.#acceptedRaw.keys().next().value!)
      return
    }
    if (!j.doc) return
    this.#acceptedRaw.delete(docId)
    this.#accepted.delete(docId)
    this.#accepted.set(docId, j.doc)
    if (this.#accepted.size > 256) this.#accepted.delete(this.#accepted.keys().next().value!)
  }

  /** Drop what was remembered of a document's accepted changes (they were not stored after all). */
  forget(docId: string): void {
    this.#accepted.delete(docId)
    this.#acceptedRaw.delete(docId)
  }

  /** May this token read this document? */
  canRead(token: TokenRecord, docId: string): boolean {
    const ref = this.index.lookup(docId)
    if (ref) return grantsPlan(token, ref.planId)
    // A document the server does not know: a plan not pushed yet, granted by id or by "*".
    return token.plans.includes(docId) || token.plans.includes(ALL_PLANS)
  }

  /**
   * Judge an incoming message. `current` gives the server's current copy of a document (undefined if it
   * has none).
   */
  async judge(
    token: TokenRecord,
    message: { type: string; documentId?: string; data?: Uint8Array },
    current: (docId: string) => Promise<A.Doc<unknown> | undefined>
  ): Promise<Judgement> {
    const docId = message.documentId
    if (!docId) return no("message without a document")
    const readable = this.canRead(token, docId)
    if (message.type === "ephemeral") return readable ? NOTHING : no("no access to this document")
    if (message.type === "doc-unavailable") return NOTHING
    if (message.type !== "sync" && message.type !== "request") return no(`unsupported message type ${message.type}`)
    let entries: Uint8Array[]
    try {
      entries = A.decodeSyncMessage(message.data!).changes
    } catch (e) {
      return no(`malformed sync message (${(e as Error).message})`)
    }
    // Without changes a message only asks or tells heads: unreadable documents get "unavailable" from
    // the Repo's access hook.
    if (entries.length === 0) return NOTHING
    return this.judgeEntries(token, docId, entries, current)
  }

  /**
   * Judge change entries (changes, bundles or whole documents: a sync message's, or a chunk of the
   * direct exchange, exchange.ts) a token sends for a document: the same rules whichever way they came.
   */
  async judgeEntries(
    token: TokenRecord,
    docId: string,
    entries: Uint8Array[],
    current: (docId: string) => Promise<A.Doc<unknown> | undefined>,
    /** the server's copy without its JavaScript view, if the caller has a cheaper way to it (admins need no more) */
    currentRaw?: (docId: string) => Promise<Backend | undefined>
  ): Promise<Judgement> {
    if (entries.length === 0) return NOTHING
    if (!this.canRead(token, docId)) return no(`token ${token.id} has no access to this document`)
    const ref = this.index.lookup(docId)
    const job = roleJob(token.role)
    // (no await between taking a cached copy and judging: the cache is used and changed synchronously)
    if (token.role === "admin") {
      const raw = currentRaw ? await currentRaw(docId) : backendOf(await current(docId))
      return judgeAdmin(entries, this.#rawBase(docId, raw))
    }
    const repoDoc = await current(docId)
    const repoPlan = job !== undefined && ref?.job !== undefined ? await current(ref.planId) : undefined
    // no await from here on: the cached copies below are used (and changed) synchronously
    const known = this.#accepted.has(docId) || this.#acceptedRaw.has(docId) || !!repoDoc
    // what can be refused before applying anything
    if (token.role === "writer" && !known && !ref?.job) return no(`writer tokens cannot create a plan on the server (use an admin token)`)
    if (job !== undefined) {
      if (!ref) return no(`role ${token.role} cannot create documents`)
      if (ref.job !== undefined && ref.job !== job) return no(`role ${token.role} may not write the report log of job ${ref.job}`)
      if (ref.job === undefined && !known) return no(`role ${token.role} cannot create plans`)
    }
    const plan = ref?.job !== undefined && job !== undefined ? this.#freshest(ref.planId, repoPlan) : undefined
    const { doc, owned } = this.#base(docId, repoDoc)
    return judgeChanges({ role: token.role, tokenId: token.id, ref, doc, owned, plan, entries })
  }
}

export interface JudgeInput {
  role: Role
  /** names the token in refusals */
  tokenId?: string
  /** what the document is (a plan, or a report log of a plan's job); undefined: unknown to the server */
  ref: DocRef | undefined
  /** the server's copy of the document, undefined if it has none */
  doc: A.Doc<unknown> | undefined
  /** `doc` is the caller's own copy and may be changed in place (else it is cloned first) */
  owned?: boolean
  /** for a job token writing a report log: the server's copy of the plan */
  plan?: A.Doc<unknown>
  /** the change entries of a sync message (changes, bundles or whole documents, possibly concatenated) */
  entries: Uint8Array[]
}

/**
 * Apply a message's changes to a copy of the server's document (decoding them once) and judge what
 * they do for this role. Pure: no I/O; the server's document is not touched.
 */
export function judgeChanges(input: JudgeInput): Judgement {
  const { role, doc, entries } = input
  if (role === "admin") return judgeAdmin(entries, doc && A.getBackend(doc).fork())
  // Damaged or forged bytes never reach the Repo, whatever the role.
  const damaged = checkChangeBytes(entries)
  if (damaged) return no(`undecodable change (${damaged})`)
  const beforeHeads = doc ? A.getHeads(doc) : []
  // read before the copy is changed (an owned copy is changed in place)
  const jobBefore = input.ref?.job === undefined && roleJob(role) !== undefined ? attemptsOf(doc, roleJob(role)!) : undefined
  const missingBefore = new Set(doc ? A.getMissingDeps(doc, []) : [])
  let copy: A.Doc<unknown>
  try {
    copy = A.loadIncremental(doc ? (input.owned ? doc : A.clone(doc)) : A.init(), concat(entries))
  } catch (e) {
    return no(`undecodable change (${(e as Error).message})`)
  }
  // A change whose dependencies the server lacks cannot be applied, so it cannot be judged (an admin's
  // waits in the Repo's queue until they arrive: judgeAdmin).
  const missing = A.getMissingDeps(copy, []).filter(h => !missingBefore.has(h))
  if (missing.length) return no(`changes depend on ${missing.length} change(s) the server does not have (${short(missing[0])}...); sync again`)
  const metas = A.getChangesMetaSince(copy, beforeHeads)
  if (metas.length === 0) return { ...NOTHING, doc: copy } // nothing new
  const accepted: Judgement = {
    ok: true,
    changes: metas.map(m => ({ hash: m.hash, actor: m.actor, by: parseChangeNote(m.message)?.by ?? null })),
    created: !doc,
    doc: copy,
  }
  const who = input.tokenId ? `token ${input.tokenId} (${role})` : `role ${role}`
  if (role === "reader") return no(`${who} is read-only (${metas.length} change(s) refused)`)
  const ref = input.ref
  let v: Refusal | undefined
  if (role === "writer") {
    if (ref?.job === undefined) v = judgeWriterPlan(copy, segments(metas), role)
  } else {
    const job = roleJob(role)!
    if (ref?.job !== undefined) {
      const genesis = genesisHash(ref.planId, job)
      v = judgeJobReports(copy, segments(metas, genesis), ref.planId, job, role, !doc, input.plan)
    } else v = judgeJobPlan(copy, segments(metas), job, role, jobBefore)
  }
  return v ?? accepted
}

/**
 * An admin may write anything: its message is only decoded and applied (to `base`, changed in place; an
 * empty document if none), for the audit's list of what is new. No JavaScript view is built.
 */
function judgeAdmin(entries: Uint8Array[], base: Backend | undefined): Judgement {
  const headers: ChangeHeader[][] = []
  const damaged = checkChangeBytes(entries, headers)
  if (damaged) return no(`undecodable change (${damaged})`)
  const raw = base ?? A.getBackend(A.init())
  const beforeHeads = raw.getHeads()
  // nothing held back (changes waiting for their dependencies), and how many changes it has
  const settled = raw.getMissingDeps([]).length === 0
  const before = raw.stats().numChanges
  try {
    raw.loadIncremental(concat(entries))
  } catch (e) {
    return no(`undecodable change (${(e as Error).message})`)
  }
  // What is new: when every entry is plain changes, all of them applied and all new (the count grew by
  // exactly as many, and nothing held back before could have come in with them), their headers say it
  // without asking Automerge to list them (~0.1 s per 2,500 changes); else Automerge's list.
  const sent = headers.length === entries.length ? headers.flat() : undefined
  const metas =
    sent && settled && new Set(sent.map(h => h.hash)).size === sent.length && raw.stats().numChanges - before === sent.length
      ? sent
      : raw.getChangesMeta(beforeHeads)
  if (metas.length === 0) return { ...NOTHING, raw }
  return { ok: true, changes: metas.map(m => ({ hash: m.hash, actor: m.actor, by: parseChangeNote(m.message)?.by ?? null })), created: !base, raw }
}

const backendOf = (doc: A.Doc<unknown> | undefined) => (doc ? A.getBackend(doc) : undefined)

const hasAll = (raw: Backend, heads: string[]) => heads.every(h => raw.getChangeByHash(h) !== null)

function concat(entries: Uint8Array[]): Uint8Array {
  if (entries.length === 1) return entries[0]
  const out = new Uint8Array(entries.reduce((n, e) => n + e.byteLength, 0))
  let at = 0
  for (const e of entries) {
    out.set(e, at)
    at += e.byteLength
  }
  return out
}

/**
 * Container check of a sync message's change entries (framing and checksums), cheap. With `headers`, the
 * change headers of each entry that is plain changes are added to it (from the same hashes).
 */
function checkChangeBytes(entries: Uint8Array[], headers?: ChangeHeader[][]): string | undefined {
  for (const e of entries) {
    const v = verifyAutomergeBytes(e, { headers })
    if (!v.ok) return v.reason
  }
  return undefined
}

const short = (h: string | undefined) => (h ?? "?").slice(0, 8)
type Meta = A.ChangeMetadata
type Patch = A.Patch

/**
 * A run of changes each of which builds on the one before (what one client writes in a row): judged
 * at once, from the document its writer saw before the first (`from`, the first change's
 * dependencies) to the document after the last (`to`). Values overwritten inside the run are visible
 * to nobody, so the run's net effect is what it does.
 */
export interface Segment {
  from: string[]
  to: string
  hash: string
  count: number
  metas: Meta[]
}

const single = (m: Meta): Segment => ({ from: m.deps, to: m.hash, hash: m.hash, count: 1, metas: [m] })

/** Split changes (in causal order) into runs; `alone` (a shared genesis change) is always its own. */
function segments(metas: Meta[], alone?: string): Segment[] {
  const out: Segment[] = []
  let cur: Segment | undefined
  for (const m of metas) {
    if (cur && m.hash !== alone && cur.to !== alone && m.deps.length === 1 && m.deps[0] === cur.to) {
      cur.to = m.hash
      cur.count++
      cur.metas.push(m)
    } else {
      cur = single(m)
      out.push(cur)
    }
  }
  return out
}

const label = (m: Segment) => (m.count > 1 ? `changes ${short(m.hash)}..${short(m.to)}` : `change ${short(m.hash)}`)
const where = (m: Segment, p: Patch) => `${label(m)} (${p.action} ${p.path.join(".") || "(root)"})`

/**
 * The values concurrently present on `obj[key]` at `heads` (now, without heads), strings only. Read
 * through the backend: Automerge 3.5's getConflicts ignores a view's heads.
 */
function stringsAt(doc: A.Doc<unknown>, obj: string, key: string, heads?: string[]): string[] {
  const be = A.getBackend(doc)
  const out: string[] = []
  for (const v of be.getAll(obj, key, heads)) {
    if (v[0] === "str" && typeof v[1] === "string") out.push(v[1])
    else if (v[0] === "text") out.push(be.text(v[1] as string, heads))
  }
  return out
}

/** A job status resolved as readers resolve it (resolve.ts): the highest rank among concurrent values. */
function resolveStatus(values: string[]): JobStatus {
  const ok = values.filter(isJobStatus)
  return ok.length ? ok.reduce((a, b) => (JOB_RANK[b] > JOB_RANK[a] ? b : a)) : "queued"
}

/** Resolved statuses of a job's attempts ("1" -> status) at `heads` (now, without), or undefined if no such job. */
function attemptsOf(doc: A.Doc<unknown> | undefined, job: string, heads?: string[]): Map<string, JobStatus> | undefined {
  if (!doc) return undefined
  const v = (heads ? A.view(doc, heads) : doc) as { jobs?: Record<string, Record<string, unknown>> }
  const rec = v.jobs?.[job]
  if (!rec || typeof rec !== "object") return undefined
  const status = rec.status && typeof rec.status === "object" ? (rec.status as object) : {}
  const attempts = rec.attempts && typeof rec.attempts === "object" ? rec.attempts : {}
  const obj = rec.status && typeof rec.status === "object" ? A.getObjectId(rec.status as A.Doc<unknown>) : null
  const keys = new Set([...Object.keys(status), ...Object.keys(attempts)])
  const out = new Map<string, JobStatus>()
  for (const k of [...keys].sort((a, b) => Number(a) - Number(b))) out.set(k, resolveStatus(obj ? stringsAt(doc, obj, k, heads) : []))
  return out
}

/** The plan status at `heads`, resolved as readers do (PLAN_CONFLICT_PRIORITY). */
function planStatusAt(doc: A.Doc<unknown>, heads: string[]): PlanStatus {
  const ok = stringsAt(doc, "_root", "status", heads).filter(isPlanStatus)
  return ok.length ? ok.reduce((a, b) => (PLAN_CONFLICT_PRIORITY[b] > PLAN_CONFLICT_PRIORITY[a] ? b : a)) : "pending"
}

const currentOf = (attempts: Map<string, JobStatus> | undefined) => (attempts?.size ? Math.max(...[...attempts.keys()].map(Number)) : 0)

function isScalar(v: unknown): boolean {
  return v === null || typeof v === "number" || typeof v === "boolean" || typeof v === "string" || v instanceof A.ImmutableString
}
const isEmptyMap = (v: unknown) => !!v && typeof v === "object" && !Array.isArray(v) && !(v instanceof A.ImmutableString) && Object.keys(v).length === 0

const agentMoves = () =>
  Object.entries(JOB_AGENT_TRANSITIONS)
    .map(([from, to]) => `${from} -> ${to!.join(" | ")}`)
    .join(", ")

/** The document as a run's writer saw it, and right after the run (views: cheap, read only). */
function ownViews(copy: A.Doc<unknown>, m: Segment) {
  let before: A.Doc<unknown> | undefined
  let after: A.Doc<unknown> | undefined
  return {
    get before() {
      return (before ??= A.view(copy, m.from))
    },
    get after() {
      return (after ??= A.view(copy, [m.to]))
    },
  }
}

/**
 * job:NAME in the plan document. Each change, in its writer's own view: only puts under jobs[NAME], on
 * the current attempt's status (an agent move) and facts (AGENT_ATTEMPT_FIELDS, scalars). The merged
 * result: no new attempt, and every attempt whose resolved status changed is the current one, moved
 * along an agent transition.
 */
function judgeJobPlan(
  copy: A.Doc<unknown>,
  metas: Segment[],
  job: string,
  role: string,
  mergedBefore: Map<string, JobStatus> | undefined
): Refusal | undefined {
  const mergedAfter = attemptsOf(copy, job)
  if (!mergedBefore || !mergedAfter) return no(`the plan has no job ${job}`)
  const current = currentOf(mergedAfter)
  if (current !== currentOf(mergedBefore)) return no(`role ${role} may not create attempts (job ${job} would get attempt ${current})`)
  for (const m of metas) {
    const views = ownViews(copy, m)
    let own: Map<string, JobStatus> | undefined
    for (const p of A.diff(copy, m.from, [m.to])) {
      const path = p.path.map(String)
      const at = where(m, p)
      if (path[0] !== "jobs" || path[1] !== job || path.length < 4)
        return no(`role ${role} may only change jobs.${job} (its current attempt): ${at} is outside`)
      const [, , kind, k, field] = path
      own ??= attemptsOf(copy, job, m.from) ?? new Map()
      if (!own.has(k)) return no(`role ${role} may not create attempts: ${at}`)
      if (Number(k) !== current || Number(k) !== currentOf(own)) return no(`role ${role} may only change the current attempt (${current}) of job ${job}: ${at}`)
      // a value written as collaborative text arrives as a put of "" and splices into it
      const textEdit = (n: number) => path.length > n && (p.action === "splice" || p.action === "del") && typeof p.path[n] === "number"
      if (kind === "status") {
        if (!(path.length === 4 && p.action === "put") && !textEdit(4)) return no(`role ${role} may only set the status: ${at}`)
      } else if (kind === "attempts" && path.length === 4) {
        // the record of an attempt that has a status but no record yet (a retry race)
        const had = (views.before as { jobs: Record<string, { attempts?: Record<string, unknown> }> }).jobs[job].attempts?.[k]
        if (p.action !== "put" || had !== undefined || !isEmptyMap(p.value)) return no(`role ${role} may not replace or delete attempt records: ${at}`)
      } else if (kind === "attempts") {
        if (!AGENT_ATTEMPT_FIELDS.includes(field)) return no(`role ${role} may not set ${field} of an attempt (only ${AGENT_ATTEMPT_FIELDS.join(", ")}): ${at}`)
        if (!(path.length === 5 && p.action === "put") && !textEdit(5)) return no(`role ${role} may only set attempt facts: ${at}`)
        const v = (views.after as { jobs: Record<string, { attempts: Record<string, Record<string, unknown>> }> }).jobs[job].attempts[k]?.[field]
        if (!isScalar(v)) return no(`role ${role} may only set plain values: ${at}`)
      } else return no(`role ${role} may only change jobs.${job} (its current attempt): ${at} is outside`)
    }
    if (own) {
      // what the change did to the statuses, as its writer saw them
      const after = attemptsOf(copy, job, [m.to]) ?? new Map()
      for (const [k, to] of after) {
        const from = own.get(k)
        if (from === undefined) return no(`role ${role} may not create attempts (${label(m)} adds attempt ${k} to job ${job})`)
        const raw = str((views.after as { jobs: Record<string, { status: Record<string, unknown> }> }).jobs[job].status?.[k])
        if (raw !== undefined && !isJobStatus(raw)) return no(`invalid job status ${JSON.stringify(raw)} (${label(m)})`)
        if (from !== to && !canAgentTransition(from, to)) {
          return no(`role ${role} may not move job ${job} attempt ${k} from ${from} to ${to} (an agent may only move ${agentMoves()}) (${label(m)})`)
        }
      }
    }
  }
  for (const [k, to] of mergedAfter) {
    const from = mergedBefore.get(k)!
    if (from === to) continue
    if (Number(k) !== current) return no(`role ${role} may not change attempt ${k} of job ${job} (the current attempt is ${current})`)
    if (!canAgentTransition(from, to)) {
      return no(`role ${role} may not move job ${job} attempt ${k} from ${from} to ${to} on the server (an agent may only move ${agentMoves()})`)
    }
  }
  return undefined
}

/**
 * writer in the plan document: each change, in its writer's own view, must respect the state machines
 * for every job it touches and for the plan status.
 */
function judgeWriterPlan(copy: A.Doc<unknown>, metas: Segment[], role: string): Refusal | undefined {
  for (const m of metas) {
    const touched = new Set<string>()
    let planStatus = false
    const patches = A.diff(copy, m.from, [m.to])
    for (const p of patches) {
      const path = p.path.map(String)
      if (path.length === 0) return no(`role ${role} may not replace the document: ${where(m, p)}`)
      if (path[0] === "jobs") {
        if (path.length === 1) return no(`role ${role} may not replace the jobs map: ${where(m, p)}`)
        // what can change a job's statuses or attempts (not facts like heartbeats)
        if (path.length <= 3 || path[2] === "status" || (path[2] === "attempts" && path.length === 4)) touched.add(path[1])
      }
      if (path[0] === "status") planStatus = true
    }
    if (!touched.size && !planStatus) continue
    // a run that touches statuses is judged change by change: each step must be allowed
    if (m.count > 1) {
      const v = judgeWriterPlan(copy, m.metas.map(single), role)
      if (v) return v
      continue
    }
    const views = ownViews(copy, m)
    for (const job of touched) {
      const before = attemptsOf(copy, job, m.from)
      const after = attemptsOf(copy, job, [m.to])
      const at = label(m)
      if (!before) {
        if (after && [...after.values()].some(s => s !== "queued")) return no(`role ${role}: a new job ${job} must start queued (${at})`)
        continue
      }
      if (!after) return no(`role ${role} may not delete job ${job} (${at})`)
      const last = currentOf(before)
      const raw = (views.after as { jobs: Record<string, { status?: Record<string, unknown> }> }).jobs[job].status ?? {}
      for (const k of Object.keys(raw)) {
        if (!isJobStatus(str(raw[k]))) return no(`invalid job status ${JSON.stringify(str(raw[k]))} for job ${job} attempt ${k} (${at})`)
      }
      for (const [k, from] of before) {
        const to = after.get(k)
        if (to === undefined) return no(`role ${role} may not delete attempt ${k} of job ${job} (${at})`)
        if (to !== from && !canJobTransition(from, to)) {
          return no(`role ${role} may not move job ${job} attempt ${k} from ${from} to ${to}: the state machine forbids it (${at})`)
        }
      }
      // new attempts: each only after the one before it ended retryable (a retry, or a skip)
      let prevNo = last
      for (const [k, to] of after) {
        if (before.has(k)) continue
        const prev = after.get(String(prevNo))
        if (Number(k) !== prevNo + 1 || !prev || !JOB_RETRYABLE.has(prev) || !(to === "canceled" || to === "queued" || canJobReach("queued", to))) {
          return no(
            `role ${role} may not start attempt ${k} of job ${job} as ${to} after ${prev ?? "nothing"}: only a retry or skip of a ${[...JOB_RETRYABLE].join("/")} attempt starts one (${at})`
          )
        }
        prevNo = Number(k)
      }
    }
    if (planStatus) {
      const raw = str((views.after as Record<string, unknown>).status)
      if (!isPlanStatus(raw)) return no(`invalid plan status ${JSON.stringify(raw)} (${label(m)})`)
      const from = planStatusAt(copy, m.from)
      const to = planStatusAt(copy, [m.to])
      if (from !== to && !canPlanTransition(from, to))
        return no(`role ${role} may not move the plan from ${from} to ${to}: the state machine forbids it (${label(m)})`)
    }
  }
  return undefined
}

const REPORT_FIELDS = new Set(["status", "message", "progress", "at", "by", "attempt"])
const genesisCache = new Map<string, string>()

function genesisHash(planId: string, job: string): string {
  const key = `${planId}\0${job}`
  let g = genesisCache.get(key)
  if (!g) {
    g = A.getHeads(reportsGenesis(planId, job))[0]
    if (genesisCache.size > 10_000) genesisCache.clear()
    genesisCache.set(key, g)
  }
  return g
}

/** Check one report record as stored; returns what is wrong with it. */
function badReport(r: Record<string, unknown>, attempt: number): string | undefined {
  if (!isReportStatus(r.status)) return `invalid report status ${JSON.stringify(r.status)}`
  if (typeof r.message !== "string" || r.message.length > 4000) return "a report message must be text of at most 4000 characters"
  if (r.progress !== null && (typeof r.progress !== "number" || !(r.progress >= 0 && r.progress <= 100))) return "progress must be null or 0..100"
  if (typeof r.at !== "number" || typeof r.by !== "string") return "a report needs at (ms) and by"
  if (r.attempt !== attempt) return `a report for attempt ${JSON.stringify(r.attempt)}, but the job's current attempt is ${attempt}`
  return undefined
}

/**
 * job:NAME in its own report log: the shared genesis change (a log the server does not have must start
 * with it), then only appended, well-formed report records for the job's current attempt.
 */
function judgeJobReports(
  copy: A.Doc<unknown>,
  metas: Segment[],
  planId: string,
  job: string,
  role: string,
  created: boolean,
  plan: A.Doc<unknown> | undefined
): Refusal | undefined {
  const genesis = genesisHash(planId, job)
  if (created && !metas.some(m => m.hash === genesis)) return no(`role ${role}: a new report log must start with its shared genesis change`)
  const current = currentOf(attemptsOf(plan, job))
  if (!current) return no(`the server has no job ${job} in plan ${planId}`)
  for (const m of metas) {
    if (m.hash === genesis) continue
    if (m.from.length === 0) return no(`role ${role} may not start a second history in the report log (${label(m)})`)
    const views = ownViews(copy, m)
    const inserted = new Set<number>()
    for (const p of A.diff(copy, m.from, [m.to])) {
      const path = p.path
      const at = where(m, p)
      if (path[0] !== "reports" || typeof path[1] !== "number") return no(`role ${role} may only append reports to its log: ${at}`)
      if (p.action === "insert" && path.length === 2) {
        const had = ((views.before as { reports?: unknown[] }).reports ?? []).length
        if (path[1] < had) return no(`role ${role} may only append reports, not insert before existing ones: ${at}`)
        if (!p.values.every(isEmptyMap)) return no(`role ${role} may only append report records: ${at}`)
        for (let i = 0; i < p.values.length; i++) inserted.add(path[1] + i)
      } else if (
        inserted.has(path[1]) &&
        REPORT_FIELDS.has(String(path[2])) &&
        (path.length === 3 ? p.action === "put" : p.action === "splice" && path.length === 4)
      ) {
        // a field of a new report (text written as collaborative text arrives as splices): checked below
      } else return no(`role ${role} may only append report records (no edits or deletions): ${at}`)
    }
    const after = (views.after as { reports?: unknown[] }).reports ?? []
    for (const i of inserted) {
      const bad = badReport(plain<Record<string, unknown>>(after[i]) ?? {}, current)
      if (bad) return no(`role ${role}: ${bad} (${label(m)})`)
    }
  }
  return undefined
}
