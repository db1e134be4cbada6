/**
 * Resolving a plan reference, the one rule for every front end: an id, an `automerge:` url, a plan name,
 * or a unique id prefix; without a reference, the only plan, else the most recently created one (archived
 * plans are skipped).
 * An ambiguous name or prefix is refused, naming the candidates.
 */
import { InputError, NotFoundError } from "../doc/errors.js"
import { type DocId, parseDocRef } from "../doc/ids.js"
import { type PlanDocument, planName } from "../doc/plan.js"
import type { LoadPlanOptions, PlanBackend, PlanInfo } from "./backend.js"

export interface ResolvedPlan {
  id: DocId
  name: string
  doc: PlanDocument
}

export async function resolvePlan(backend: PlanBackend, ref?: string, opts: LoadPlanOptions = {}): Promise<ResolvedPlan> {
  const id = ref ? parseDocRef(ref.trim()) : undefined
  if (id) {
    const doc = await backend.loadPlan(id, opts)
    if (doc) return { id, name: planName(doc), doc }
  }
  let hit = pick(await backend.listPlans(), ref, backend)
  if (!hit) hit = pick(await backend.listPlans({ thorough: true }), ref, backend)
  if (!hit) {
    throw new NotFoundError(ref ? `no plan "${ref}" in ${backend.where}` : `no plans in ${backend.where} (create one with: concord plan create FILE)`)
  }
  const doc = await backend.loadPlan(hit.id)
  if (!doc) throw new NotFoundError(`plan ${hit.id} ("${hit.name}") is listed but its document is not in ${backend.where}`)
  return { id: hit.id, name: planName(doc), doc }
}

/**
 * The rule on a list of plans (also for callers that only have a server's plan list). `undefined` when
 * nothing matches; throws when a name or prefix matches more than one plan.
 */
export function pick(plans: PlanInfo[], ref: string | undefined, backend: Pick<PlanBackend, "where">): PlanInfo | undefined {
  if (ref) {
    const id = parseDocRef(ref.trim())
    const byId = id && plans.find(p => p.id === id)
    if (byId) return byId
  }
  // The default is the newest plan that is not archived (an archived plan is still found by id or name).
  if (!ref) return plans.filter(p => !p.archivedAt).at(-1)
  const byName = plans.filter(p => p.name === ref)
  if (byName.length === 1) return byName[0]
  if (byName.length > 1) throw ambiguous(`${byName.length} plans are named "${ref}"`, byName, backend)
  const byPrefix = plans.filter(p => p.id.startsWith(ref))
  if (byPrefix.length === 1) return byPrefix[0]
  if (byPrefix.length > 1) throw ambiguous(`${byPrefix.length} plans have ids starting with "${ref}"`, byPrefix, backend)
  return undefined
}

function ambiguous(what: string, plans: PlanInfo[], backend: Pick<PlanBackend, "where">): InputError {
  const list = plans.map(p => `${p.id} (${p.name})`).join(", ")
  return new InputError(`${what} in ${backend.where}: ${list}; use a longer id`, "ambiguous_plan")
}
