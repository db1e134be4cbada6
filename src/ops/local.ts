/** The local backend: this machine's store (src/sync/store), shared by every process with no daemon. */
import type { WriteContext } from "../doc/actor.js"
import { type DocId, reportDocId } from "../doc/ids.js"
import type { PlanDocument } from "../doc/plan.js"
import type { NewReport, ReportDigest, ReportsDocument } from "../doc/reports.js"
import type { PlanSpec } from "../doc/spec.js"
import { hostName } from "../lib/host.js"
import { quarantineSummary } from "../sync/storage/quarantine.js"
import { StoreGoneError } from "../sync/storage/StoreError.js"
import type { PlanStore } from "../sync/store/PlanStore.js"
import type { DocChange, Housekeeping, LoadPlanOptions, PlanBackend, PlanInfo, PlanUpdate } from "./backend.js"

export class LocalBackend implements PlanBackend {
  readonly store: PlanStore
  readonly localHost = hostName()
  readonly #warnings: string[] = []

  constructor(store: PlanStore) {
    this.store = store
  }

  get housekeeping(): Housekeeping {
    return this.store
  }

  get where(): string {
    return `store ${this.store.dir}`
  }

  get storeDir(): string {
    return this.store.dir
  }

  async listPlans(opts: { thorough?: boolean } = {}): Promise<PlanInfo[]> {
    if (!opts.thorough) return this.store.listPlans()
    const { plans, rebuilt } = await this.store.listPlansChecked()
    for (const r of rebuilt) this.#warnings.push(`plan index entry for ${r} was missing or damaged: rebuilt from the plan document`)
    return plans
  }

  async loadPlan(id: DocId, opts: LoadPlanOptions = {}): Promise<PlanDocument | undefined> {
    return this.store.findPlan(id, opts)
  }

  updatePlan<R = void>(id: DocId, fn: PlanUpdate<R>): Promise<{ doc: PlanDocument; result: R | undefined }> {
    return this.store.updatePlan(id, fn)
  }

  createPlan(spec: PlanSpec, baseDir: string, ctx: WriteContext): Promise<{ id: DocId; doc: PlanDocument }> {
    return this.store.createPlan(spec, baseDir, ctx)
  }

  async appendReport(planId: DocId, job: string, report: NewReport, ctx: WriteContext): Promise<void> {
    try {
      await this.store.appendReport(planId, job, report, ctx)
    } catch (e) {
      if (e instanceof StoreGoneError) throw new StoreGoneError(e.store, "the report was not stored")
      throw e
    }
  }

  reportDigests(planId: DocId, jobs: string[]): Promise<Map<string, ReportDigest>> {
    return this.store.loadReportDigests(planId, jobs)
  }

  reportLogs(planId: DocId, jobs: string[]): Promise<Map<string, ReportsDocument>> {
    return this.store.loadAllReports(planId, jobs)
  }

  watch(planId: DocId, jobs: string[], onChange: (change: DocChange) => void): { close(): void } {
    const byDoc = new Map(jobs.map(j => [reportDocId(planId, j), j]))
    return this.store.docs.watch<unknown>([planId, ...byDoc.keys()], (docId, doc) => {
      if (docId === planId) onChange({ docId, job: null, doc: doc as PlanDocument })
      else onChange({ docId, job: byDoc.get(docId)!, doc: doc as ReportsDocument })
    })
  }

  /** One-time warnings (a rebuilt index entry), and whether the store holds quarantined data. */
  async warnings(): Promise<string[]> {
    const out = this.#warnings.splice(0)
    const q = await quarantineSummary(this.store.dir)
    if (q.count > 0) {
      const files = q.count === 1 ? "1 quarantined chunk file" : `${q.count} quarantined chunk files`
      out.push(`${files} in ${q.dir}; run "concord doctor" to restore the valid ones and list the rest`)
    }
    return out
  }

  async close(): Promise<void> {
    await this.store.close()
  }
}
