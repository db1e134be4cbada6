/**
 * Human control: approve the current checkpoint, retry a failed job, skip a job. One composition rule
 * for every front end:
 *  - a finished plan (completed, failed, canceled) is refused: nothing can resume it;
 *  - `retry` starts a new attempt; `skip` cancels the job and lets its dependents go on;
 *  - the checkpoint is approved too, unless a retry/skip names another job than the one the checkpoint
 *    was raised for (then it is left waiting, and the result says how to approve it);
 *  - with neither retry nor skip, a plan not at a checkpoint is refused.
 * Everything happens in one change of the plan document, or not at all.
 */
import { randomBytes } from "node:crypto"
import type { WriteContext } from "../doc/actor.js"
import { InputError } from "../doc/errors.js"
import { approveCheckpoint, getJob, readJob, type PlanDocument, readPlan, retryJob, skipJob } from "../doc/plan.js"
import { PLAN_FINISHED } from "../doc/states.js"
import type { PlanBackend } from "./backend.js"
import { resolvePlan } from "./resolve.js"

export interface ApproveInput {
  planRef?: string
  /** The checkpoint being approved; refused if the plan waits at another one. */
  checkpoint?: string
  retry?: string
  skip?: string
}

export interface ApproveResult {
  planId: string
  plan: string
  approved: { checkpoint: string; seq: number; by: string } | null
  retried: { job: string; attempt: number } | null
  skipped: string | null
  /** A checkpoint left waiting because the retry/skip was for another job. */
  leftWaiting: { checkpoint: string; job: string } | null
  /** The orchestrator that will act on it, or null when none runs (then `concord run` continues). */
  orchestrator: string | null
  lines: string[]
}

export async function approve(backend: PlanBackend, input: ApproveInput, clock: () => WriteContext): Promise<ApproveResult> {
  if (input.retry && input.skip && input.retry === input.skip) throw new InputError(`cannot both retry and skip job "${input.retry}"`)
  const plan = await resolvePlan(backend, input.planRef)
  const res: Omit<ApproveResult, "orchestrator" | "lines"> = {
    planId: plan.id,
    plan: plan.name,
    approved: null,
    retried: null,
    skipped: null,
    leftWaiting: null,
  }
  const { doc } = await backend.updatePlan(plan.id, before => {
    let d: PlanDocument = before
    const view = readPlan(d)
    if (PLAN_FINISHED.has(view.status)) {
      throw new InputError(
        `plan "${view.name}" is ${view.status}: a finished plan cannot be approved, retried or skipped (create it again with: concord plan create FILE)`,
        "plan_finished"
      )
    }
    if (input.retry) {
      getJob(view, input.retry)
      d = retryJob(d, input.retry, clock())
      res.retried = { job: input.retry, attempt: readJob(d, input.retry).attempt }
    }
    if (input.skip) {
      getJob(view, input.skip)
      d = skipJob(d, input.skip, clock())
      res.skipped = input.skip
    }
    const cpJob = view.checkpointContext?.jobName
    const forOtherJob = !input.checkpoint && (input.retry || input.skip) && typeof cpJob === "string" && cpJob !== input.retry && cpJob !== input.skip
    if (view.checkpoint && forOtherJob) {
      res.leftWaiting = { checkpoint: view.checkpoint, job: cpJob as string }
    } else if (view.checkpoint) {
      const r = approveCheckpoint(d, { checkpoint: input.checkpoint, id: `${Date.now()}-${randomBytes(4).toString("hex")}` }, clock())
      d = r.doc
      res.approved = { checkpoint: r.approval.checkpoint, seq: r.approval.seq, by: r.approval.by }
    } else if (input.checkpoint || (!input.retry && !input.skip)) {
      throw new InputError(`plan "${view.name}" is ${view.status} and not waiting at a checkpoint: nothing to approve`, "no_checkpoint")
    }
    return d
  })
  const lease = readPlan(doc).lease
  const orchestrator = lease && lease.expiresAt > clock().now ? lease.holder : null
  const lines: string[] = []
  if (res.retried) lines.push(`${res.retried.job} will run again as attempt ${res.retried.attempt}`)
  if (res.skipped) lines.push(`${res.skipped} skipped; its dependents go on without it`)
  if (res.leftWaiting) {
    const w = res.leftWaiting
    lines.push(`checkpoint ${w.checkpoint} (job ${w.job}) left waiting: approve it with --checkpoint ${w.checkpoint}`)
  }
  if (res.approved) lines.push(`approved checkpoint ${res.approved.checkpoint} #${res.approved.seq} as ${res.approved.by}`)
  lines.push(
    orchestrator
      ? `the running orchestrator (${orchestrator}) acts on it`
      : `no orchestrator is running: continue with  concord run ${input.planRef ?? plan.id}`
  )
  return { ...res, orchestrator, lines }
}
