/**
 * Cancel a plan: record `canceled` for it and every unfinished job (one change), then stop the job
 * processes on this machine, in case no orchestrator is running (a running one stops them too when it
 * sees the cancel). Processes on other machines are stopped by their own orchestrators.
 */
import type { WriteContext } from "../doc/actor.js"
import { cancelPlan, readPlan } from "../doc/plan.js"
import { stopJobProcesses } from "../orchestrator/supervisor.js"
import type { PlanBackend } from "./backend.js"
import { resolvePlan } from "./resolve.js"

export interface CancelInput {
  planRef?: string
}

/** A job process that may still be alive, as recorded in its attempt. */
export interface JobProcess {
  job: string
  attempt: number
  pid: number
  pidStartedAt: number | null
}

/**
 * Stops job processes on this machine (the orchestrator's stop routine); returns how many it signaled.
 * `force`: SIGKILL at once instead of SIGTERM first.
 */
export type ProcessStopper = (procs: JobProcess[], opts?: { force?: boolean }) => Promise<number>

export interface CancelResult {
  planId: string
  plan: string
  /** Jobs whose unfinished attempt was canceled. */
  canceled: string[]
  /** Job processes on this machine that were signaled to stop. */
  stopped: number
  host: string | null
  text: string
}

export async function cancel(
  backend: PlanBackend,
  input: CancelInput,
  clock: () => WriteContext,
  stop: ProcessStopper = stopJobProcesses
): Promise<CancelResult> {
  const plan = await resolvePlan(backend, input.planRef)
  const before = readPlan(plan.doc)
  const { doc } = await backend.updatePlan(plan.id, d => cancelPlan(d, clock()))
  const after = readPlan(doc)
  const canceled = after.jobs.filter(j => j.status === "canceled" && before.jobs.find(b => b.name === j.name)?.status !== "canceled").map(j => j.name)
  let stopped = 0
  const host = backend.localHost
  if (stop && host) {
    // Every attempt with a recorded process on this machine, not only `running` ones: a job that
    // reported completed may idle in its grace period.
    const procs: JobProcess[] = []
    for (const j of before.jobs) {
      for (const a of j.attempts) {
        if (a.pid !== null && (a.host ?? host) === host) procs.push({ job: j.name, attempt: a.n, pid: a.pid, pidStartedAt: a.pidStartedAt })
      }
    }
    if (procs.length) stopped = await stop(procs)
  }
  const where = host ? ` on ${host}` : ""
  return {
    planId: plan.id,
    plan: plan.name,
    canceled,
    stopped,
    host,
    text: `canceled plan ${plan.name}; ${stopped} job process${stopped === 1 ? "" : "es"}${where} signaled to stop`,
  }
}

/**
 * Canceling "whatever plan is newest" is a dangerous default: with no plan named while the backend holds
 * several plans that are not archived, the caller must confirm (CLI) or refuse (MCP). Returns the plan an
 * unnamed cancel would hit and how many are open, or null when nothing needs confirming.
 */
export async function unnamedCancelTarget(backend: PlanBackend, planRef: string | undefined): Promise<{ id: string; name: string; open: number } | null> {
  if (planRef) return null
  const open = (await backend.listPlans()).filter(p => !p.archivedAt)
  if (open.length <= 1) return null
  const p = await resolvePlan(backend)
  return { id: p.id, name: p.name, open: open.length }
}
