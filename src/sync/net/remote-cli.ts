/**
 * `--remote URL --token T` for `report`, `status` and `run`: work against a sync server directly.
 *
 *  - report: the job's agent may have no local copy at all. Fetch the plan and the job's report log
 *    from the server (or start the log from its shared genesis), apply the report (and the status
 *    change for completed / failed), push, and return once the server has both durably.
 *  - status: fetch the plan and its report logs into memory and render; with --watch, re-render as
 *    changes arrive (reconnecting with backoff).
 *  - run: the orchestrator keeps using a local store, kept in sync with the server for the whole run
 *    (a sync before, a watch-sync during, and a final sync after), so the runner itself is unchanged
 *    and job processes report into the local store as usual.
 */
import type { DocHandle } from "@automerge/automerge-repo"
import { promises as fsp } from "node:fs"
import type { WriteContext } from "../../doc/actor.js"
import { InputError, InvalidTransitionError } from "../../doc/errors.js"
import { parseDocRef, reportDocId } from "../../doc/ids.js"
import { getJob, isPlanDoc, type PlanDocument, readPlan, setJobStatus } from "../../doc/plan.js"
import { appendReport, reportsGenesis, type ReportsDocument } from "../../doc/reports.js"
import { canJobTransition, type ReportStatus } from "../../doc/states.js"
import { PlanStore } from "../store/PlanStore.js"
import { type PlansResponse, RemoteSession, ServerApi, SyncError } from "./client.js"
import type { ServerPlanInfo } from "./server.js"
import { syncOnce, syncWatch } from "./sync.js"

export interface RemoteFlags {
  remote?: string
  token?: string
  ca?: string
}

export interface RemoteTarget {
  url: string
  token?: string
  ca?: Buffer
}

/** Validate --remote / --token / --ca (token default: $CONCORD_TOKEN). */
export async function remoteTarget(flags: RemoteFlags): Promise<RemoteTarget | undefined> {
  if (!flags.remote) {
    if (flags.token) throw new InputError("--token needs --remote URL")
    return undefined
  }
  const token = flags.token ?? process.env.CONCORD_TOKEN
  if (!token) throw new InputError("--remote needs a token: --token T or $CONCORD_TOKEN")
  let ca: Buffer | undefined
  if (flags.ca) {
    try {
      ca = await fsp.readFile(flags.ca)
    } catch (e) {
      throw new InputError(`cannot read CA file ${flags.ca}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  return { url: flags.remote, token, ca }
}

/** Find a plan among those the server shows this token. */
export function pickServerPlan(remote: PlansResponse, ref: string | undefined): ServerPlanInfo {
  const plans = remote.plans
  if (!ref) {
    if (plans.length === 1) return plans[0]
    if (plans.length === 0) throw new InputError(`the server has no plan this token (${remote.token.id}) can see`)
    throw new InputError(`the server has ${plans.length} plans for this token: name one (--plan ID or $CONCORD_PLAN)`)
  }
  const id = parseDocRef(ref)
  const hit =
    (id && plans.find(p => p.id === id)) ??
    (plans.filter(p => p.name === ref).length === 1 ? plans.find(p => p.name === ref) : undefined) ??
    (plans.filter(p => p.id.startsWith(ref)).length === 1 ? plans.find(p => p.id.startsWith(ref)) : undefined)
  if (!hit) throw new InputError(`no plan "${ref}" among the plans this token (${remote.token.id}) can see on the server`)
  return hit
}

export interface RemoteReportArgs {
  target: RemoteTarget
  planRef?: string
  job: string
  attempt?: number
  report: { status: ReportStatus; message: string; progress: number | null }
  now: () => WriteContext
  log?: (line: string) => void
  timeoutMs?: number
}

/** `concord report --remote`: returns the same one-line summary as the local command. */
export async function reportRemote(a: RemoteReportArgs): Promise<string> {
  const api = new ServerApi(a.target.url, a.target.token, a.target.ca)
  const remote = await api.plans()
  const plan = pickServerPlan(remote, a.planRef)
  const session = await RemoteSession.open({ url: a.target.url, token: a.target.token, ca: a.target.ca, log: a.log })
  try {
    const timeoutMs = a.timeoutMs ?? 60_000
    const ph = await session.fetch<unknown>(plan.id, timeoutMs)
    if (!ph || !isPlanDoc(ph.doc())) throw new SyncError("protocol", `the server did not send plan ${plan.id}`)
    const planHandle = ph as unknown as DocHandle<PlanDocument>
    const job = getJob(readPlan(planHandle.doc() as PlanDocument), a.job)
    const attempt = a.attempt ?? job.attempt
    if (!job.attempts.some(x => x.n === attempt)) throw new InputError(`job "${a.job}" has no attempt ${attempt} (current is ${job.attempt})`)
    const rid = reportDocId(plan.id, a.job)
    let rh: DocHandle<ReportsDocument> | undefined
    if (plan.docs.includes(rid)) rh = (await session.fetch<unknown>(rid, timeoutMs)) as DocHandle<ReportsDocument> | undefined
    rh ??= session.importDoc(rid, reportsGenesis(plan.id, a.job)) as unknown as DocHandle<ReportsDocument>
    rh.update(d => appendReport(d as ReportsDocument, { ...a.report, attempt }, a.now()) as never)

    let effect = ""
    let note: string | undefined
    const to = a.report.status
    if (to === "completed" || to === "failed") {
      const cur = getJob(readPlan(planHandle.doc() as PlanDocument), a.job).attempts.find(x => x.n === attempt)!
      if (cur.status !== to && canJobTransition(cur.status, to)) {
        planHandle.update(
          d =>
            setJobStatus(
              d as PlanDocument,
              a.job,
              to,
              to === "failed" ? { attempt, reason: a.report.message || "reported failed", failureKind: "reported_failed" } : { attempt },
              a.now()
            ) as never
        )
        effect = `; job ${a.job} #${attempt} is now ${to}`
      } else {
        effect = `; job status unchanged (${cur.status})`
        if (cur.status !== to) note = `report stored, but ${new InvalidTransitionError(`job "${a.job}" attempt ${attempt}`, cur.status, to).message}`
      }
    }
    await session.waitSynced([plan.id, rid], timeoutMs)
    if (note) process.stderr.write(`concord: note: ${note}\n`)
    const r = a.report
    return `reported ${r.status}${r.progress !== null ? ` ${r.progress}%` : ""} for ${a.job} #${attempt}${effect} (on ${new URL(a.target.url).host})`
  } finally {
    await session.close()
  }
}

export interface RemoteStatusArgs {
  target: RemoteTarget
  planRef?: string
  watch?: boolean
  show: (id: string, plan: PlanDocument, reports: Map<string, ReportsDocument>, redraw: boolean) => void
  log?: (line: string) => void
}

/** `concord status --remote [--watch]`. With watch, runs until SIGINT/SIGTERM. */
export async function statusRemote(a: RemoteStatusArgs): Promise<void> {
  const api = new ServerApi(a.target.url, a.target.token, a.target.ca)
  const remote = await api.plans()
  const plan = pickServerPlan(remote, a.planRef)
  const session = await RemoteSession.open({ url: a.target.url, token: a.target.token, ca: a.target.ca, log: a.watch ? a.log : undefined, retry: !!a.watch })
  try {
    const ph = await session.fetch<unknown>(plan.id)
    if (!ph || !isPlanDoc(ph.doc())) throw new SyncError("protocol", `the server did not send plan ${plan.id}`)
    const reports = new Map<string, ReportsDocument>()
    const byDoc = new Map(plan.jobs.map(j => [reportDocId(plan.id, j), j]))
    const handles = new Map<string, DocHandle<unknown>>([[plan.id, ph]])
    const load = async (docs: string[]) => {
      for (const rid of docs) {
        const job = byDoc.get(rid)
        if (!job || handles.has(rid)) continue
        const h = await session.fetch<unknown>(rid)
        if (!h) continue
        handles.set(rid, h)
        reports.set(job, h.doc() as ReportsDocument)
        if (a.watch) {
          h.on("change", () => (reports.set(job, h.doc() as ReportsDocument), schedule()))
          if (shown) schedule()
        }
      }
    }
    let pending: NodeJS.Timeout | undefined
    const redraw = () => {
      pending = undefined
      a.show(plan.id, ph.doc() as PlanDocument, reports, true)
    }
    const schedule = () => {
      if (!pending) pending = setTimeout(redraw, 15)
    }
    let shown = false
    await load(plan.docs)
    a.show(plan.id, ph.doc() as PlanDocument, reports, !!a.watch)
    shown = true
    if (!a.watch) return
    ph.on("change", schedule)
    const ac = new AbortController()
    const stop = () => ac.abort()
    process.once("SIGINT", stop)
    process.once("SIGTERM", stop)
    // new report logs appear on the server as jobs first report: look for them now and then
    while (!ac.signal.aborted) {
      await new Promise<void>(r => {
        const t = setTimeout(r, 2000)
        ac.signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true })
      })
      if (ac.signal.aborted) break
      try {
        const p = (await api.plans()).plans.find(x => x.id === plan.id)
        if (p) await load(p.docs)
      } catch {
        // server away: the session reconnects; try again later
      }
    }
    if (pending) clearTimeout(pending)
  } finally {
    await session.close()
  }
}

export interface Mirror {
  /** the plan, now in the local store */
  planId: string
  /** stop the background sync, then sync once more so the server has everything */
  close(): Promise<void>
}

/**
 * `concord run --remote`: make the local store a live replica of the server's plan for the duration of
 * the run.
 */
export async function openMirror(store: PlanStore, target: RemoteTarget, planRef: string | undefined, log: (l: string) => void): Promise<Mirror> {
  const api = new ServerApi(target.url, target.token, target.ca)
  const plan = pickServerPlan(await api.plans(), planRef)
  const base = { url: target.url, token: target.token, ca: target.ca, plans: [plan.id], log }
  // Its own PlanStore on the same directory, as a separate process would have: the runner's DocStore
  // state (what it loaded and saved) stays its own.
  const mirror = new PlanStore(store.dir)
  await syncOnce(mirror, base)
  const ac = new AbortController()
  const watching = syncWatch(mirror, { ...base, signal: ac.signal, pollMs: 1000 }).catch(e => log(`background sync stopped: ${(e as Error).message}`))
  return {
    planId: plan.id,
    async close() {
      ac.abort()
      await watching
      await syncOnce(mirror, base)
    },
  }
}

/** `concord run --remote`: validate the flags, then mirror the plan into `store` for the run. */
export async function openRemoteRun(store: PlanStore, flags: RemoteFlags, planRef: string | undefined): Promise<Mirror> {
  const target = (await remoteTarget(flags))!
  return openMirror(store, target, planRef, l => (l.startsWith("debug:") ? undefined : process.stderr.write(`concord: ${l}\n`)))
}
