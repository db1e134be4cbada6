/** Creating and listing plans. */
import type { WriteContext } from "../doc/actor.js"
import { type DocId, docUrl } from "../doc/ids.js"
import { readPlan } from "../doc/plan.js"
import type { PlanSpec } from "../doc/spec.js"
import type { PlanBackend } from "./backend.js"

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
  id: DocId
  url: string
  name: string
  status: string
  checkpoint: string | null
  jobs: number
  createdAt: number
}

/** Every plan with its status; a plan whose document cannot be read is listed as `unavailable`. */
export async function listPlans(backend: PlanBackend): Promise<{ plans: PlanRow[]; warnings: string[] }> {
  const entries = await backend.listPlans({ thorough: true })
  const plans = await Promise.all(
    entries.map(async e => {
      try {
        const doc = await backend.loadPlan(e.id)
        if (!doc) throw new Error("missing")
        const v = readPlan(doc)
        return { id: e.id, url: docUrl(e.id), name: v.name, status: v.status, checkpoint: v.checkpoint, jobs: v.jobs.length, createdAt: e.createdAt }
      } catch {
        return { id: e.id, url: docUrl(e.id), name: e.name, status: "unavailable", checkpoint: null, jobs: 0, createdAt: e.createdAt }
      }
    })
  )
  return { plans, warnings: await backend.warnings() }
}
