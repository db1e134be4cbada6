/**
 * The local half of "only one orchestrator per plan": an exclusive lock file in the store
 * (`locks/<planId>.lock`) naming its holder. It is written whole to a temporary file first and then
 * hard-linked into place (link fails if the lock exists), so a lock file is never seen half-written.
 *
 * An existing lock is judged by policy.judgeLock: held by a live process (or another machine) is
 * refused; a lock whose holder process is gone is taken over; an unreadable one (empty or torn, left by
 * a full disk or an older version) is taken over only when `liveHolder()` finds no live orchestrator
 * holding the plan's lease, else refused with what to do. A takeover renames the old lock aside first,
 * which only one contender can do.
 */
import { promises as fsp } from "node:fs"
import path from "node:path"
import { ConcordError } from "../doc/errors.js"
import { ensureDirIn } from "../sync/storage/atomic.js"
import { judgeLock, type LockInfo, parseLock } from "./policy.js"
import { isSameProcessAlive } from "./proc.js"

export type { LockInfo } from "./policy.js"

export class PlanLockedError extends ConcordError {
  readonly info: LockInfo
  constructor(info: LockInfo) {
    super(`plan is already being run by ${info.holder} (since ${new Date(info.startedAt).toISOString()}); refusing to start a second orchestrator`, 1)
    this.name = "PlanLockedError"
    this.info = info
  }
}

export interface LockOptions {
  /** Describes a live orchestrator holding the plan (from its lease), or null when there is none. */
  liveHolder?: () => Promise<string | null>
  onWarning?: (msg: string) => void
}

export async function acquirePlanLock(storeDir: string, planId: string, info: LockInfo, opts: LockOptions = {}): Promise<() => Promise<void>> {
  const dir = path.join(storeDir, "locks")
  const file = path.join(dir, `${planId}.lock`)
  const alive = (pid: number) => isSameProcessAlive(pid, null)
  await ensureDirIn(storeDir, dir) // never the store itself: a store deleted meanwhile stays gone
  for (let tries = 0; tries < 10; tries++) {
    if (await createExclusive(file, JSON.stringify(info))) {
      return async () => {
        // Remove only our own lock.
        const cur = parseLock(await fsp.readFile(file, "utf8").catch(() => ""))
        if (cur && cur.pid === info.pid && cur.startedAt === info.startedAt) await fsp.unlink(file).catch(() => {})
      }
    }
    let text: string
    try {
      text = await fsp.readFile(file, "utf8")
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") continue // released meanwhile: try again
      throw e
    }
    const cur = parseLock(text)
    const verdict = judgeLock(cur, info.host, alive)
    if (verdict === "held") throw new PlanLockedError(cur!)
    if (verdict === "damaged") {
      const holder = opts.liveHolder ? await opts.liveHolder() : null
      if (holder) {
        throw new ConcordError(
          `the lock file ${file} is damaged (empty or unreadable) and ${holder} holds the plan's lease: if no \`concord run\` of this plan is running anywhere, delete ${file} and try again`,
          1
        )
      }
      opts.onWarning?.(`the lock file ${file} was damaged (empty or unreadable) and no live orchestrator holds the plan: taking it over`)
    }
    // The holder is gone (or the lock is damaged and nobody holds the plan): move it aside (atomic;
    // only one contender succeeds) and try again.
    const aside = `${file}.stale.${info.pid}`
    await fsp.rename(file, aside).catch(() => {})
    await fsp.unlink(aside).catch(() => {})
  }
  throw new ConcordError(`could not take the lock ${file} (other orchestrators kept taking it): try again`, 1)
}

/** Create `file` with `content`, whole, only if it does not exist. False if it exists. */
async function createExclusive(file: string, content: string): Promise<boolean> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`
  try {
    const fh = await fsp.open(tmp, "wx")
    try {
      await fh.writeFile(content)
      await fh.sync()
    } finally {
      await fh.close()
    }
    try {
      await fsp.link(tmp, file)
      return true
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false
      throw e
    }
  } finally {
    await fsp.unlink(tmp).catch(() => {})
  }
}
