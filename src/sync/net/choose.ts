/**
 * Which plans a sync takes (one-shot or --watch, by exchange or through the sync protocol): from the
 * references given (or all), the local index and the server's list, with what the token may do.
 */
import { InputError, NotFoundError } from "../../doc/errors.js"
import { parseDocRef } from "../../doc/ids.js"
import { LocalBackend } from "../../ops/local.js"
import { pick, resolvePlan } from "../../ops/resolve.js"
import type { PlanStore } from "../store/PlanStore.js"
import { type PlansResponse, SyncError } from "./api.js"

export interface PlanChoice {
  id: string
  onServer: boolean
  serverDocs: Set<string>
  /** the plan's jobs as the server knows them (none if it is not on the server) */
  serverJobs: string[]
}

const ALL = "*"

/** Which plans to sync, from the references given (or all), the local index and the server's list. */
export async function choosePlans(
  store: PlanStore,
  remote: PlansResponse,
  refs: string[] | undefined
): Promise<{ chosen: PlanChoice[]; skipped: { id: string; why: string }[] }> {
  const local = await store.listPlans()
  const serverById = new Map(remote.plans.map(p => [p.id, p]))
  const grants = remote.token.plans
  const role = remote.token.role
  const granted = (id: string) => grants.includes(id) || grants.includes(ALL)
  const chosen = new Map<string, PlanChoice>()
  const skipped: { id: string; why: string }[] = []
  const add = (id: string) => {
    const s = serverById.get(id)
    chosen.set(id, { id, onServer: !!s, serverDocs: new Set(s?.docs ?? []), serverJobs: s?.jobs ?? [] })
  }
  if (refs && refs.length > 0) {
    // A reference is resolved by the one rule (src/ops/resolve.ts): first among the plans this token can
    // see on the server, then in this store. An ambiguous name or prefix is refused, naming the plans.
    const serverPlans = [...remote.plans].sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id))
    const onServer = { where: `the plans this token (${remote.token.id}) can see on the server` }
    const local = new LocalBackend(store)
    for (const ref of refs) {
      const asId = parseDocRef(ref)
      const fromServer = pick(serverPlans, ref, onServer)
      if (fromServer) {
        add(fromServer.id)
        continue
      }
      let id: string
      try {
        id = (await resolvePlan(local, ref)).id
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e
        if (asId && granted(asId)) throw new InputError(`plan ${asId} is neither in this store nor on the server`)
        throw new InputError(`no plan "${ref}" in this store or among the plans this token can see on the server`)
      }
      if (serverById.has(id)) add(id)
      else if (!granted(id)) throw new SyncError("refused", `token ${remote.token.id} has no access to plan ${id} on the server`)
      else if (role !== "admin")
        throw new SyncError("refused", `plan ${id} is not on the server yet, and only an admin token can push a new plan (this token is ${role})`)
      else add(id)
    }
  } else {
    for (const p of remote.plans) add(p.id)
    for (const p of local) {
      if (chosen.has(p.id)) continue
      if (!granted(p.id)) {
        if (!grants.includes(ALL)) skipped.push({ id: p.id, why: `not shared with this token` })
        continue
      }
      if (role !== "admin") {
        skipped.push({ id: p.id, why: `not on the server yet; pushing a new plan needs an admin token` })
        continue
      }
      add(p.id)
    }
  }
  return { chosen: [...chosen.values()], skipped }
}
