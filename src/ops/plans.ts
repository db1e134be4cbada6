/** Creating and listing plans. */
import type { WriteContext } from "../doc/actor.js"
import { type DocId, docUrl } from "../doc/ids.js"
import { InputError } from "../doc/errors.js"
import { type PlanDocument, readPlan } from "../doc/plan.js"
import type { PlanSpec } from "../doc/spec.js"
import type { Housekeeping, PlanBackend } from "./backend.js"
import { resolvePlan } from "./resolve.js"

export interface CreatedPlan {
  id: DocId
  url: string
  name: string
  /** Other plans with the same name (a name then no longer picks one plan: use the id). */
  sameName: DocId[]
}

export async function createPlan(backend: PlanBackend, spec: PlanSpec, baseDir: string, clock: () => WriteContext): Promise<CreatedPlan> {
  const existing = await backend.listPlans()
  const { id } = await backend.createPlan(spec, baseDir, clock())
  return { id, url: docUrl(id), name: spec.name, sameName: existing.filter(p => p.name === spec.name).map(p => p.id) }
}

export interface PlanRow {
  archived: boolean
  id: DocId
  url: string
  name: string
  status: string
  checkpoint: string | null
  jobs: number
  createdAt: number
}

/** Every plan with its status; a plan whose document cannot be read is listed as `unavailable`. */
export async function listPlans(backend: PlanBackend, opts: { all?: boolean } = {}): Promise<{ plans: PlanRow[]; warnings: string[] }> {
  const entries = (await backend.listPlans({ thorough: true })).filter(e => opts.all || !e.archivedAt)
  const plans = await Promise.all(
    entries.map(async e => {
      try {
        const doc = await backend.loadPlan(e.id)
        if (!doc) throw new Error("missing")
        const v = readPlan(doc)
        return {
          id: e.id,
          url: docUrl(e.id),
          name: v.name,
          status: v.status,
          checkpoint: v.checkpoint,
          jobs: v.jobs.length,
          createdAt: e.createdAt,
          archived: !!e.archivedAt,
        }
      } catch {
        return { id: e.id, url: docUrl(e.id), name: e.name, status: "unavailable", checkpoint: null, jobs: 0, createdAt: e.createdAt, archived: !!e.archivedAt }
      }
    })
  )
  return { plans, warnings: await backend.warnings() }
}

function housekeeping(backend: PlanBackend): Housekeeping {
  if (!backend.housekeeping) throw new InputError(`archiving and removing plans works on a local store, not on ${backend.where}`)
  return backend.housekeeping
}

/** A plan that is running cannot be archived or removed: cancel it first. */
function refuseIfActive(name: string, doc: PlanDocument, now: number): void {
  const v = readPlan(doc)
  const live = v.lease && v.lease.expiresAt > now
  if (live || v.jobs.some(j => j.status === "running")) {
    throw new InputError(
      `plan "${name}" is ${v.status}${live ? ` and run by ${v.lease!.holder}` : " with running jobs"}: cancel it first (concord cancel ${name})`,
      "plan_active"
    )
  }
}

export interface ArchiveResult {
  planId: DocId
  plan: string
  logsRemoved: number
  text: string
}

/** Hide a finished plan from `plan list` and the default plan choice; optionally delete its job logs. */
export async function archivePlan(backend: PlanBackend, planRef: string | undefined, opts: { pruneLogs?: boolean }, now = Date.now()): Promise<ArchiveResult> {
  const hk = housekeeping(backend)
  const plan = await resolvePlan(backend, planRef)
  refuseIfActive(plan.name, plan.doc, now)
  await hk.archivePlan(plan.id, now)
  const logsRemoved = opts.pruneLogs ? await hk.removeLogs(plan.id) : 0
  return {
    planId: plan.id,
    plan: plan.name,
    logsRemoved,
    text: `archived plan ${plan.name} (${plan.id})${opts.pruneLogs ? `; ${logsRemoved} log file(s) removed` : ""}`,
  }
}

/** Delete a plan, its report logs and its job logs from this store. */
export async function removePlan(backend: PlanBackend, planRef: string | undefined, now = Date.now()): Promise<ArchiveResult> {
  const hk = housekeeping(backend)
  const plan = await resolvePlan(backend, planRef)
  refuseIfActive(plan.name, plan.doc, now)
  const jobs = readPlan(plan.doc).jobs.map(j => j.name)
  await hk.removePlan(plan.id, jobs)
  return { planId: plan.id, plan: plan.name, logsRemoved: 0, text: `removed plan ${plan.name} (${plan.id}) and ${jobs.length} report log(s) from this store` }
}
