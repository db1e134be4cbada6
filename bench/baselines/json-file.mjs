// Shared by the json-naive and json-lock baselines: a whole plan in one JSON file, changed by
// read-modify-write of the whole file, written durably (temp file, fsync, rename, fsync of the
// directory) so that "durable" means the same thing as for concord and sqlite.
//
// File: DIR/plans/<planId>.json
//   { id, name, status, checkpoint, checkpointContext, jobs: { <name>: { status, attempt, reports: [] } } }
import { randomBytes } from "node:crypto"
import { watch as fsWatch, promises as fsp } from "node:fs"
import path from "node:path"

export const JOB_TRANSITIONS = {
  queued: ["running", "completed", "failed", "canceled"],
  running: ["completed", "failed", "stopped", "canceled"],
}

export function planFile(dir, planId) {
  return path.join(dir, "plans", `${planId}.json`)
}

export async function readJson(file) {
  return JSON.parse(await fsp.readFile(file, "utf8"))
}

/** Durable replace: write a unique temp file, fsync it, rename over the target, fsync the directory. */
export async function writeJsonDurable(file, value) {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`
  const fh = await fsp.open(tmp, "w")
  try {
    await fh.writeFile(JSON.stringify(value))
    await fh.sync()
  } finally {
    await fh.close()
  }
  await fsp.rename(tmp, file)
  const dh = await fsp.open(path.dirname(file), "r")
  try {
    await dh.sync()
  } finally {
    await dh.close()
  }
}

export function newPlan(planId, name, jobs, status) {
  return {
    id: planId,
    name,
    status: "running",
    checkpoint: null,
    checkpointContext: null,
    jobs: Object.fromEntries(jobs.map(j => [j, { status, attempt: 1, reports: [] }])),
  }
}

/** The plan operations, given how this baseline serialises a read-modify-write (`update`) and a write. */
export function jsonOps(dir, { update, write }) {
  const file = id => planFile(dir, id)
  return {
    async createPlan({ name, jobs, status = "running" }) {
      const id = `p${Date.now().toString(36)}${randomBytes(4).toString("hex")}`
      await fsp.mkdir(path.join(dir, "plans"), { recursive: true })
      await writeJsonDurable(file(id), newPlan(id, name, jobs, status))
      return id
    },
    /** Append a report to the job; completed/failed also move the job's status where allowed. */
    async report(id, job, r) {
      await update(file(id), plan => {
        const j = plan.jobs[job]
        if (!j) throw new Error(`no job ${job}`)
        j.reports.push({ status: r.status, message: r.message ?? "", progress: r.progress ?? null, at: Date.now(), by: r.by ?? `pid:${process.pid}` })
        if ((r.status === "completed" || r.status === "failed") && (JOB_TRANSITIONS[j.status] ?? []).includes(r.status)) j.status = r.status
        return plan
      })
    },
    async loadView(id) {
      return readJson(file(id))
    },
    /** The orchestrator's natural move: mark the job failed and pause, in its copy, and save that copy. */
    async failAndPauseFrom(id, stale, job) {
      stale.jobs[job].status = "failed"
      stale.status = "paused"
      stale.checkpoint = "on_error"
      stale.checkpointContext = { jobName: job, failureKind: "job_failed" }
      await write(file(id), stale)
    },
    async read(id) {
      return normalise(await readJson(file(id)))
    },
    /** What a status command shows: each job's status, report count and last report. */
    async summary(id) {
      const plan = await readJson(file(id))
      return {
        name: plan.name,
        status: plan.status,
        checkpoint: plan.checkpoint,
        jobs: Object.entries(plan.jobs).map(([name, j]) => ({ name, status: j.status, reports: j.reports.length, lastReport: j.reports.at(-1) ?? null })),
      }
    },
    watchReports(id, job, onMessages, pollMs = 500) {
      return watchFile(file(id), plan => onMessages(plan.jobs[job]?.reports.map(r => r.message) ?? []), pollMs)
    },
  }
}

export function normalise(plan) {
  return {
    status: plan.status,
    checkpoint: plan.checkpoint,
    checkpointJob: plan.checkpointContext?.jobName ?? null,
    jobs: Object.fromEntries(Object.entries(plan.jobs).map(([n, j]) => [n, { status: j.status, messages: j.reports.map(r => r.message) }])),
  }
}

/** A watcher's natural way to follow a JSON file: fs.watch on its directory, plus a poll. */
export function watchFile(file, onPlan, pollMs) {
  let closed = false
  let busy = false
  let again = false
  const check = async () => {
    if (closed) return
    if (busy) return void (again = true)
    busy = true
    try {
      do {
        again = false
        try {
          onPlan(await readJson(file))
        } catch {
          // mid-rename or not there yet: the next event or poll retries
        }
      } while (again && !closed)
    } finally {
      busy = false
    }
  }
  const w = fsWatch(path.dirname(file), (_ev, name) => {
    if (!name || name === path.basename(file)) void check()
  })
  const t = setInterval(check, pollMs)
  void check()
  return {
    close() {
      closed = true
      clearInterval(t)
      w.close()
    },
  }
}
