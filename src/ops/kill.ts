/**
 * Stop one job (`mc_kill`, and any front end that stops a single job): record it the way the job state
 * machine allows, then stop its processes on this machine.
 *  - a running attempt becomes `stopped` (its dependents do not start on their own; retry it with
 *    approve --retry);
 *  - an attempt that has not started (queued, waiting_deps) becomes `canceled`;
 *  - an attempt that is already over keeps its status (nothing is written); a process it left behind
 *    (e.g. idling after `completed`) is still stopped.
 * The status change is one change of the plan document, decided on the document as it is when written.
 * A running orchestrator also stops the process when it sees `stopped`; processes on other machines
 * are stopped by their own orchestrators.
 */
import type { WriteContext } from "../doc/actor.js"
import { readJob, setJobStatus } from "../doc/plan.js"
import { canJobTransition, type JobStatus } from "../doc/states.js"
import type { PlanBackend } from "./backend.js"
import { stopJobProcesses } from "../orchestrator/supervisor.js"
import type { JobProcess, ProcessStopper } from "./cancel.js"
import { resolvePlan } from "./resolve.js"

export interface KillInput {
  planRef?: string
  job: string
  /** SIGKILL at once instead of SIGTERM (then SIGKILL after the stopper's grace period). */
  force?: boolean
}

export interface KillResult {
  planId: string
  plan: string
  job: string
  attempt: number
  /** The attempt's status before and after. */
  from: JobStatus
  status: JobStatus
  /** Whether the status was changed by this call. */
  changed: boolean
  /** Job processes on this machine that were signaled. */
  signaled: number
  host: string | null
  text: string
}

export async function kill(backend: PlanBackend, input: KillInput, clock: () => WriteContext, stop: ProcessStopper = stopJobProcesses): Promise<KillResult> {
  const plan = await resolvePlan(backend, input.planRef)
  readJob(plan.doc, input.job) // unknown job: refused before anything is written
  const { doc, result } = await backend.updatePlan<{ attempt: number; from: JobStatus; to: JobStatus }>(plan.id, d => {
    const job = readJob(d, input.job)
    const from = job.status
    const to: JobStatus | null = canJobTransition(from, "stopped") ? "stopped" : canJobTransition(from, "canceled") ? "canceled" : null
    if (!to) return { doc: d, result: { attempt: job.attempt, from, to: from } }
    const ctx = clock()
    const reason = to === "stopped" ? `stopped by ${ctx.by}` : `canceled by ${ctx.by} before it started`
    const next = setJobStatus(d, input.job, to, { attempt: job.attempt, reason, ...(to === "stopped" ? { endedAt: ctx.now } : {}) }, ctx)
    return { doc: next, result: { attempt: job.attempt, from, to } }
  })
  const r = result!
  const host = backend.localHost
  let signaled = 0
  if (stop && host) {
    const procs: JobProcess[] = []
    for (const a of readJob(doc, input.job).attempts) {
      if (a.pid !== null && (a.host ?? host) === host) procs.push({ job: input.job, attempt: a.n, pid: a.pid, pidStartedAt: a.pidStartedAt })
    }
    if (procs.length) signaled = await stop(procs, { force: input.force })
  }
  const changed = r.from !== r.to
  const what = changed ? `job ${input.job} #${r.attempt}: ${r.from} -> ${r.to}` : `job ${input.job} #${r.attempt} is already ${r.from}`
  const procs = signaled
    ? `; ${signaled} process${signaled === 1 ? "" : "es"} on ${host} signaled (${input.force ? "SIGKILL" : "SIGTERM"})`
    : "; no live process of it on this machine"
  return { planId: plan.id, plan: plan.name, job: input.job, attempt: r.attempt, from: r.from, status: r.to, changed, signaled, host, text: what + procs }
}
