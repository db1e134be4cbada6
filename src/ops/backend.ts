/**
 * "A place plans live": the small interface every plan operation (src/ops/*) is written against, so each
 * rule exists once. Two implementations: LocalBackend (this machine's store, src/ops/local.ts) and
 * RemoteBackend (a session with a sync server, src/ops/remote.ts). The CLI, the MCP server and the
 * dashboard are thin adapters over the operations, never over a backend directly.
 *
 * Invariants every implementation keeps:
 *  - `updatePlan` is one read-modify-write: `fn` sees the current document and returns the next one; if it
 *    throws, nothing is written. When it resolves, the change is durable (store: fsynced chunk; remote:
 *    the server confirmed the heads durably).
 *  - `appendReport` is durable when it resolves, and never loses a concurrent append (report logs are
 *    Automerge lists merged by every writer).
 */
import type { WriteContext } from "../doc/actor.js"
import type { DocId } from "../doc/ids.js"
import type { PlanDocument } from "../doc/plan.js"
import type { NewReport, ReportDigest, ReportsDocument } from "../doc/reports.js"
import type { PlanSpec } from "../doc/spec.js"

export interface PlanInfo {
  id: DocId
  name: string
  createdAt: number
  createdBy: string
  archivedAt?: number
}

export type DocChange = { docId: DocId; job: null; doc: PlanDocument } | { docId: DocId; job: string; doc: ReportsDocument }

export type PlanUpdate<R> = (doc: PlanDocument) => PlanDocument | { doc: PlanDocument; result: R }

export interface LoadPlanOptions {
  /**
   * A copy this process read from the store within this many ms will do (a live local store; other
   * backends always answer with what they hold). For checks of facts that never become false again
   * (a job exists, an attempt was started); whoever finds the fact missing looks again before refusing.
   */
  recentMs?: number
}

export interface PlanBackend {
  /** Where the plans live, for messages: `store /path/.concord` or `server 127.0.0.1:7700`. */
  readonly where: string
  /** The store directory (local only): relative log paths in a status resolve against it. */
  readonly storeDir: string | null
  /** The host name job processes of this backend run on, when it can see this machine's processes. */
  readonly localHost: string | null
  /**
   * The plans this backend can see, oldest first. `thorough` also looks for plans a damaged index lost
   * (slower: reads the store's directory tree); a rebuilt entry is reported through `warnings()`.
   */
  listPlans(opts?: { thorough?: boolean }): Promise<PlanInfo[]>
  /** A document by id, if this backend has it and it is a plan (`undefined` when absent). */
  loadPlan(id: DocId, opts?: LoadPlanOptions): Promise<PlanDocument | undefined>
  updatePlan<R = void>(id: DocId, fn: PlanUpdate<R>): Promise<{ doc: PlanDocument; result: R | undefined }>
  createPlan(spec: PlanSpec, baseDir: string, ctx: WriteContext): Promise<{ id: DocId; doc: PlanDocument }>
  appendReport(planId: DocId, job: string, report: NewReport, ctx: WriteContext): Promise<void>
  /** Latest report and progress per attempt, per job that has reported. */
  reportDigests(planId: DocId, jobs: string[]): Promise<Map<string, ReportDigest>>
  /** Whole report logs (history needs every change). */
  reportLogs(planId: DocId, jobs: string[]): Promise<Map<string, ReportsDocument>>
  /**
   * Call `onChange` whenever the plan or one of its jobs' report logs changes (written by any process
   * or machine), with the new document. Runs until `close()`.
   */
  watch(planId: DocId, jobs: string[], onChange: (change: DocChange) => void): { close(): void }
  /**
   * The job whose agent this backend writes as (a `job:NAME` token on a sync server, which only lets it
   * move that job's current attempt along the agent transitions), else null. Absent: null.
   */
  agentOf?(): Promise<string | null>
  /** Housekeeping of a local store (archive, remove, prune logs); absent on a remote backend. */
  readonly housekeeping?: Housekeeping
  /** Warnings worth one line in a human view (quarantined data, a rebuilt index, ...). */
  warnings(): Promise<string[]>
  close(): Promise<void>
}

export interface Housekeeping {
  archivePlan(id: DocId, at: number): Promise<void>
  removePlan(id: DocId, jobs: string[]): Promise<void>
  /** Delete a plan's job log files; returns how many went. */
  removeLogs(id: DocId): Promise<number>
}
