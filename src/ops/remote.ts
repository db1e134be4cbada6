/**
 * The remote backend: plans kept on a sync server, worked on through one session (automerge-repo over
 * the server's WebSocket) with no local store. A write resolves once the server confirms it holds the new
 * heads durably, so "acknowledged" means the same as with the local store.
 */
import * as A from "@automerge/automerge"
import type { DocHandle } from "@automerge/automerge-repo"
import type { WriteContext } from "../doc/actor.js"
import { InputError } from "../doc/errors.js"
import { type DocId, newDocId, reportDocId } from "../doc/ids.js"
import { createPlan, isPlanDoc, type PlanDocument } from "../doc/plan.js"
import { appendReport, digestReports, type NewReport, type ReportDigest, reportsGenesis, type ReportsDocument } from "../doc/reports.js"
import type { PlanSpec } from "../doc/spec.js"
import { retrying } from "../lib/async.js"
import { type PlansResponse, RemoteSession, type RemoteTarget, SyncError } from "../sync/net/client.js"
import type { DocChange, PlanBackend, PlanInfo, PlanUpdate } from "./backend.js"

export class RemoteBackend implements PlanBackend {
  readonly session: RemoteSession
  readonly target: RemoteTarget
  readonly storeDir = null
  readonly localHost = null
  readonly timeoutMs: number
  /** Ride out a server restart: reconnect the session, and retry a listing the server could not answer. */
  readonly retry: boolean
  #plans: PlansResponse | undefined

  private constructor(session: RemoteSession, target: RemoteTarget, timeoutMs: number, retry: boolean) {
    this.session = session
    this.target = target
    this.timeoutMs = timeoutMs
    this.retry = retry
  }

  static async open(target: RemoteTarget, opts: { log?: (line: string) => void; retry?: boolean; timeoutMs?: number } = {}): Promise<RemoteBackend> {
    const session = await RemoteSession.open({ url: target.url, token: target.token, ca: target.ca, log: opts.log, retry: opts.retry })
    return new RemoteBackend(session, target, opts.timeoutMs ?? 60_000, opts.retry !== false)
  }

  get where(): string {
    return `server ${new URL(this.target.url).host}`
  }

  async #serverPlans(fresh = false): Promise<PlansResponse> {
    if (!this.#plans || fresh) this.#plans = await this.#listing()
    return this.#plans
  }

  /**
   * The server's listing. The WebSocket session reconnects by itself; this HTTP request is one call, so
   * when the server is away for a moment (restarting: connection refused or cut), it is asked again with
   * backoff until `timeoutMs`, unless the backend was opened without retry. A refused token is final.
   */
  async #listing(): Promise<PlansResponse> {
    return retrying(() => this.session.api.plans(), {
      retryIf: e => this.retry && e instanceof SyncError && e.kind === "unreachable",
      baseMs: 100,
      maxMs: 1000,
      deadline: Date.now() + this.timeoutMs,
    })
  }

  async agentOf(): Promise<string | null> {
    const role = (await this.#serverPlans()).token.role
    return role.startsWith("job:") ? role.slice(4) : null
  }

  async listPlans(): Promise<PlanInfo[]> {
    const r = await this.#serverPlans(true)
    return r.plans
      .map(p => ({ id: p.id, name: p.name, createdAt: p.createdAt, createdBy: p.createdBy }))
      .sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
  }

  async loadPlan(id: DocId): Promise<PlanDocument | undefined> {
    const h = await this.session.fetch<unknown>(id, this.timeoutMs)
    if (!h) return undefined
    const doc = h.doc()
    if (!isPlanDoc(doc)) throw new InputError(`document ${id} on ${this.where} is not a concord plan`)
    return doc
  }

  async updatePlan<R = void>(id: DocId, fn: PlanUpdate<R>): Promise<{ doc: PlanDocument; result: R | undefined }> {
    const h = (await this.session.fetch<unknown>(id, this.timeoutMs)) as DocHandle<PlanDocument> | undefined
    if (!h) throw new InputError(`plan ${id} is not on ${this.where} (or this token cannot see it)`)
    // Work on a copy: if `fn` throws, the session's document is untouched and nothing is sent.
    const base = A.clone(h.doc() as PlanDocument)
    const out = fn(base)
    const doc = "doc" in out && "result" in out ? out.doc : (out as PlanDocument)
    const result = "doc" in out && "result" in out ? out.result : undefined
    if (doc !== base) {
      h.update(d => A.merge(d, doc) as never)
      await this.session.waitSynced([id], this.timeoutMs)
    }
    return { doc: h.doc() as PlanDocument, result }
  }

  async createPlan(spec: PlanSpec, baseDir: string, ctx: WriteContext): Promise<{ id: DocId; doc: PlanDocument }> {
    const id = newDocId()
    const doc = createPlan(spec, { baseDir }, ctx)
    this.session.importDoc(id, doc)
    await this.session.waitSynced([id], this.timeoutMs)
    // The server lists a plan that arrived over the network once it has indexed it: wait for that, so
    // the plan can be found by name right after this resolves.
    const deadline = Date.now() + this.timeoutMs
    while (!(await this.#serverPlans(true)).plans.some(p => p.id === id)) {
      if (Date.now() > deadline) throw new SyncError("timeout", `the server did not list the new plan ${id} within ${this.timeoutMs / 1000}s`)
      await new Promise(r => setTimeout(r, 50))
    }
    return { id, doc }
  }

  async #reportHandle(planId: DocId, job: string, create: boolean): Promise<DocHandle<ReportsDocument> | undefined> {
    const rid = reportDocId(planId, job)
    const ready = this.session.handle<ReportsDocument>(rid)
    if (ready) return ready
    const info = (await this.#serverPlans()).plans.find(p => p.id === planId)
    let h: DocHandle<ReportsDocument> | undefined
    if (info?.docs.includes(rid) || !info) h = (await this.session.fetch<unknown>(rid, this.timeoutMs)) as DocHandle<ReportsDocument> | undefined
    if (!h && create) h = this.session.importDoc(rid, reportsGenesis(planId, job)) as unknown as DocHandle<ReportsDocument>
    return h
  }

  async appendReport(planId: DocId, job: string, report: NewReport, ctx: WriteContext): Promise<void> {
    const h = (await this.#reportHandle(planId, job, true))!
    h.update(d => appendReport(d as ReportsDocument, report, ctx) as never)
    await this.session.waitSynced([reportDocId(planId, job)], this.timeoutMs)
  }

  async reportLogs(planId: DocId, jobs: string[]): Promise<Map<string, ReportsDocument>> {
    const out = new Map<string, ReportsDocument>()
    const info = (await this.#serverPlans(true)).plans.find(p => p.id === planId)
    for (const j of jobs) {
      if (info && !info.docs.includes(reportDocId(planId, j))) continue
      const h = await this.#reportHandle(planId, j, false)
      if (h) out.set(j, h.doc() as ReportsDocument)
    }
    return out
  }

  async reportDigests(planId: DocId, jobs: string[]): Promise<Map<string, ReportDigest>> {
    const logs = await this.reportLogs(planId, jobs)
    return new Map([...logs].map(([j, d]) => [j, digestReports(d)]))
  }

  watch(planId: DocId, jobs: string[], onChange: (change: DocChange) => void): { close(): void } {
    const watched = new Map<string, { h: DocHandle<unknown>; off: () => void }>()
    const byDoc = new Map<string, string | null>([[planId, null], ...jobs.map(j => [reportDocId(planId, j), j] as [string, string])])
    let closed = false
    const attach = (docId: string, h: DocHandle<unknown>) => {
      if (watched.has(docId) || closed) return
      const job = byDoc.get(docId)!
      const emit = () => onChange(job === null ? { docId, job: null, doc: h.doc() as PlanDocument } : { docId, job, doc: h.doc() as ReportsDocument })
      h.on("change", emit)
      watched.set(docId, { h, off: () => h.off("change", emit) })
      emit()
    }
    // Report logs appear on the server as jobs first report: look for new ones now and then.
    const look = async () => {
      try {
        const info = (await this.#serverPlans(true)).plans.find(p => p.id === planId)
        for (const docId of info?.docs ?? [planId]) {
          if (!byDoc.has(docId) || watched.has(docId)) continue
          const h = await this.session.fetch<unknown>(docId, this.timeoutMs)
          if (h) attach(docId, h)
        }
      } catch {
        // server away: the session reconnects; look again later
      }
    }
    void look()
    const timer = setInterval(() => void look(), 2000)
    return {
      close: () => {
        closed = true
        clearInterval(timer)
        for (const w of watched.values()) w.off()
      },
    }
  }

  async warnings(): Promise<string[]> {
    return []
  }

  async close(): Promise<void> {
    await this.session.close()
  }
}
