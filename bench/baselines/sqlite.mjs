// Baseline `sqlite`: what a careful engineer would pick for one machine. One SQLite database, WAL mode,
// synchronous=FULL (a commit is durable when it returns, like the other backends), a busy timeout,
// one row per job, one row per report, each operation one IMMEDIATE transaction that changes only
// the rows it means to change.
import { createRequire } from "node:module"
import { randomBytes } from "node:crypto"
import { watch as fsWatch, mkdirSync } from "node:fs"
import path from "node:path"

export const name = "sqlite"
export const description = "better-sqlite3, WAL, synchronous=FULL, busy_timeout 10 s, one row per job and per report"

const require = createRequire(import.meta.url)
let Database
let loadError

function load() {
  if (Database || loadError) return
  try {
    Database = require("better-sqlite3")
    new Database(":memory:").close()
  } catch (e) {
    Database = undefined
    loadError = e
  }
}

export async function available() {
  load()
  if (Database) return { ok: true }
  return {
    ok: false,
    reason: `better-sqlite3 (an optional dependency) could not be loaded: ${String(loadError?.message ?? loadError).split("\n")[0]}`,
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS plans (id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT NOT NULL,
  checkpoint TEXT, checkpoint_job TEXT, checkpoint_context TEXT);
CREATE TABLE IF NOT EXISTS jobs (plan TEXT NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
  attempt INTEGER NOT NULL, PRIMARY KEY (plan, name));
CREATE TABLE IF NOT EXISTS reports (id INTEGER PRIMARY KEY, plan TEXT NOT NULL, job TEXT NOT NULL,
  status TEXT NOT NULL, message TEXT NOT NULL, progress REAL, at INTEGER NOT NULL, by TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS reports_by_job ON reports (plan, job, id);
`

export function dbFile(dir) {
  return path.join(dir, "plans.sqlite")
}

export function open(dir) {
  load()
  if (!Database) throw loadError
  mkdirSync(dir, { recursive: true })
  const db = new Database(dbFile(dir), { timeout: 10_000 })
  db.pragma("busy_timeout = 10000")
  db.pragma("journal_mode = WAL")
  db.pragma("synchronous = FULL")
  db.transaction(() => db.exec(SCHEMA)).immediate()

  const q = {
    job: db.prepare("SELECT status FROM jobs WHERE plan = ? AND name = ?"),
    insertReport: db.prepare("INSERT INTO reports (plan, job, status, message, progress, at, by) VALUES (?, ?, ?, ?, ?, ?, ?)"),
    finishJob: db.prepare("UPDATE jobs SET status = ? WHERE plan = ? AND name = ? AND status IN ('queued', 'running')"),
    plan: db.prepare("SELECT * FROM plans WHERE id = ?"),
    jobs: db.prepare("SELECT name, status FROM jobs WHERE plan = ? ORDER BY name"),
    messages: db.prepare("SELECT job, message FROM reports WHERE plan = ? ORDER BY id"),
    messagesSince: db.prepare("SELECT id, message FROM reports WHERE plan = ? AND job = ? AND id > ? ORDER BY id"),
    failJob: db.prepare("UPDATE jobs SET status = 'failed' WHERE plan = ? AND name = ?"),
    pause: db.prepare("UPDATE plans SET status = 'paused', checkpoint = 'on_error', checkpoint_job = ?, checkpoint_context = ? WHERE id = ?"),
  }

  return {
    db,
    async createPlan({ name, jobs, status = "running" }) {
      const id = `p${Date.now().toString(36)}${randomBytes(4).toString("hex")}`
      db.transaction(() => {
        db.prepare("INSERT INTO plans (id, name, status) VALUES (?, ?, 'running')").run(id, name)
        const ins = db.prepare("INSERT INTO jobs (plan, name, status, attempt) VALUES (?, ?, ?, 1)")
        for (const j of jobs) ins.run(id, j, status)
      }).immediate()
      return id
    },
    async report(id, job, r) {
      db.transaction(() => {
        if (!q.job.get(id, job)) throw new Error(`no job ${job}`)
        q.insertReport.run(id, job, r.status, r.message ?? "", r.progress ?? null, Date.now(), r.by ?? `pid:${process.pid}`)
        if (r.status === "completed" || r.status === "failed") q.finishJob.run(r.status, id, job)
      }).immediate()
    },
    async loadView(id) {
      return { plan: q.plan.get(id), jobs: q.jobs.all(id) }
    },
    /** Row-level: the stale view only decided what to do; the write touches the rows it changes. */
    async failAndPauseFrom(id, _stale, job) {
      db.transaction(() => {
        q.failJob.run(id, job)
        q.pause.run(job, JSON.stringify({ jobName: job, failureKind: "job_failed" }), id)
      }).immediate()
    },
    async summary(id) {
      const plan = q.plan.get(id)
      const last = db.prepare("SELECT status, message, progress, at, by FROM reports WHERE plan = ? AND job = ? ORDER BY id DESC LIMIT 1")
      const count = db.prepare("SELECT count(*) AS n FROM reports WHERE plan = ? AND job = ?")
      return {
        name: plan.name,
        status: plan.status,
        checkpoint: plan.checkpoint,
        jobs: q.jobs.all(id).map(j => ({ name: j.name, status: j.status, reports: count.get(id, j.name).n, lastReport: last.get(id, j.name) ?? null })),
      }
    },
    async read(id) {
      const plan = q.plan.get(id)
      const jobs = {}
      for (const j of q.jobs.all(id)) jobs[j.name] = { status: j.status, messages: [] }
      for (const r of q.messages.all(id)) jobs[r.job]?.messages.push(r.message)
      return { status: plan.status, checkpoint: plan.checkpoint, checkpointJob: plan.checkpoint_job, jobs }
    },
    /** Follow new reports: fs.watch on the database directory (the WAL file changes) plus a poll. */
    watchReports(id, job, onMessages, pollMs = 500) {
      let last = 0
      const seen = []
      let closed = false
      const check = () => {
        if (closed) return
        const rows = q.messagesSince.all(id, job, last)
        if (rows.length === 0) return
        for (const r of rows) seen.push(r.message)
        last = rows[rows.length - 1].id
        onMessages(seen)
      }
      // a WAL write can be seen before its commit is visible: look again shortly after each event
      const w = fsWatch(dir, () => {
        check()
        setTimeout(check, 5)
        setTimeout(check, 25)
      })
      const t = setInterval(check, pollMs)
      check()
      return {
        close() {
          closed = true
          clearInterval(t)
          w.close()
        },
      }
    },
    async close() {
      db.close()
    },
  }
}
