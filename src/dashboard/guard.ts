/**
 * The plans a sync-server token may see and change, as a PlanBackend: the store of `concord serve`
 * seen through the server's own access control. Reads are limited to the plans the token is granted
 * (others do not exist for it); every write an operation makes is judged by the server's AccessPolicy
 * exactly as the same change arriving over a WebSocket would be (a reader may write nothing, a job token
 * only its own job), and refused whole, with nothing written, otherwise. No role rule lives here.
 */
import * as A from "@automerge/automerge"
import type { WriteContext } from "../doc/actor.js"
import { ConcordError } from "../doc/errors.js"
import type { DocId } from "../doc/ids.js"
import type { PlanDocument } from "../doc/plan.js"
import type { NewReport, ReportDigest, ReportsDocument } from "../doc/reports.js"
import type { PlanSpec } from "../doc/spec.js"
import type { DocChange, PlanBackend, PlanInfo, PlanUpdate } from "../ops/backend.js"
import { type AccessPolicy, grantsPlan } from "../sync/net/access.js"
import type { TokenRecord } from "../sync/net/tokens.js"

/** A read or write the token is not allowed; nothing was written. */
class AccessRefused extends ConcordError {
  constructor(message: string) {
    super(message, 1, "forbidden")
    this.name = "AccessRefused"
  }
}

class Stale extends Error {}

export class TokenBackend implements PlanBackend {
  constructor(
    readonly inner: PlanBackend,
    readonly token: TokenRecord,
    readonly policy: AccessPolicy,
    readonly current: (docId: string) => Promise<A.Doc<unknown> | undefined>
  ) {}

  get where(): string {
    return this.inner.where
  }
  get storeDir(): string | null {
    return this.inner.storeDir
  }
  get localHost(): string | null {
    return this.inner.localHost
  }

  async listPlans(opts?: { thorough?: boolean }): Promise<PlanInfo[]> {
    return (await this.inner.listPlans(opts)).filter(p => grantsPlan(this.token, p.id))
  }

  async loadPlan(id: DocId): Promise<PlanDocument | undefined> {
    return grantsPlan(this.token, id) ? this.inner.loadPlan(id) : undefined
  }

  /**
   * Judge the change `fn` makes on the current document with the server's policy, then write it. If the
   * plan changed in between, judge again on the newer document (the write happens only on the document
   * that was judged).
   */
  async updatePlan<R = void>(id: DocId, fn: PlanUpdate<R>): Promise<{ doc: PlanDocument; result: R | undefined }> {
    this.#readable(id)
    for (let tries = 0; ; tries++) {
      const before = await this.inner.loadPlan(id)
      if (!before) throw new AccessRefused(`no plan ${id}`)
      // a trial run on a copy: Automerge's change() advances the document it is given in place
      const r = fn(A.clone(before))
      const after = "result" in r && "doc" in r ? r.doc : (r as PlanDocument)
      const changes = A.getChanges(before, after)
      if (changes.length) {
        const data = A.encodeSyncMessage({ heads: A.getHeads(after), need: [], have: [], changes })
        const verdict = await this.policy.judge(this.token, { type: "sync", documentId: id, data }, async d => (d === id ? before : this.current(d)))
        if (!verdict.ok) throw new AccessRefused(verdict.reason)
      }
      const judged = A.getHeads(before).join(",")
      try {
        return await this.inner.updatePlan(id, d => {
          if (A.getHeads(d).join(",") !== judged) throw new Stale()
          return fn(d)
        })
      } catch (e) {
        if (!(e instanceof Stale) || tries >= 20) throw e
      }
    }
  }

  async createPlan(_spec: PlanSpec, _baseDir: string, _ctx: WriteContext): Promise<{ id: DocId; doc: PlanDocument }> {
    throw new AccessRefused("the dashboard does not create plans")
  }

  async appendReport(_planId: DocId, _job: string, _report: NewReport, _ctx: WriteContext): Promise<void> {
    throw new AccessRefused("the dashboard does not send reports")
  }

  reportDigests(planId: DocId, jobs: string[]): Promise<Map<string, ReportDigest>> {
    this.#readable(planId)
    return this.inner.reportDigests(planId, jobs)
  }

  reportLogs(planId: DocId, jobs: string[]): Promise<Map<string, ReportsDocument>> {
    this.#readable(planId)
    return this.inner.reportLogs(planId, jobs)
  }

  watch(planId: DocId, jobs: string[], onChange: (change: DocChange) => void): { close(): void } {
    this.#readable(planId)
    return this.inner.watch(planId, jobs, onChange)
  }

  warnings(): Promise<string[]> {
    return this.inner.warnings()
  }

  close(): Promise<void> {
    return this.inner.close()
  }

  #readable(planId: string): void {
    if (!grantsPlan(this.token, planId)) throw new AccessRefused(`token ${this.token.id} has no access to plan ${planId}`)
  }
}
