// Baseline `json-lock`: json-naive plus a cross-process lock file (proper-lockfile, a mkdir lock next
// to the plan file) held around every read-modify-write and every write.
//
// `open(dir, { reread: true })` is the careful variant for the founding race: the orchestrator
// re-reads the plan under the lock and applies its change to that, instead of saving the copy it
// decided from.
import lockfile from "proper-lockfile"
import { jsonOps, readJson, writeJsonDurable } from "./json-file.mjs"

export const name = "json-lock"
export const description = "json-naive + cross-process lock (proper-lockfile) around each read-modify-write"

/**
 * Retry fast (2..25 ms, randomised) so that waiting for the lock costs as little as it can; up to
 * 1000 retries (about 25 s). Not more: the retry library builds its whole schedule on every lock()
 * call, and 100k retries cost ~9 ms of CPU per lock.
 */
export const LOCK_OPTIONS = {
  realpath: false,
  stale: 10_000,
  retries: { retries: 1000, factor: 1.3, minTimeout: 2, maxTimeout: 25, randomize: true },
}

export async function available() {
  return { ok: true }
}

async function withLock(file, fn) {
  const release = await lockfile.lock(file, LOCK_OPTIONS)
  try {
    return await fn()
  } finally {
    await release()
  }
}

export function open(dir, opts = {}) {
  const ops = jsonOps(dir, {
    update: (file, fn) => withLock(file, async () => writeJsonDurable(file, fn(await readJson(file)))),
    write: (file, value) => withLock(file, () => writeJsonDurable(file, value)),
  })
  if (opts.reread) {
    ops.failAndPauseFrom = async (id, _stale, job) => {
      const file = (await import("./json-file.mjs")).planFile(dir, id)
      await withLock(file, async () => {
        const plan = await readJson(file)
        plan.jobs[job].status = "failed"
        plan.status = "paused"
        plan.checkpoint = "on_error"
        plan.checkpointContext = { jobName: job, failureKind: "job_failed" }
        await writeJsonDurable(file, plan)
      })
    }
  }
  return { ...ops, async close() {} }
}
