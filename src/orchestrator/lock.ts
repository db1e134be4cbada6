/**
 * The local half of "only one orchestrator per plan": an exclusive lock file in the store
 * (`locks/<planId>.lock`, created with O_EXCL), naming its holder. A lock whose holder process is gone
 * is taken over by renaming it aside first, which only one contender can do.
 */
import { promises as fsp } from "node:fs"
import path from "node:path"
import { ConcordError } from "../doc/errors.js"
import { isSameProcessAlive } from "./proc.js"

export interface LockInfo {
  holder: string
  host: string
  pid: number
  startedAt: number
}

export class PlanLockedError extends ConcordError {
  readonly info: LockInfo
  constructor(info: LockInfo) {
    super(`plan is already being run by ${info.holder} (since ${new Date(info.startedAt).toISOString()}); refusing to start a second orchestrator`, 1)
    this.name = "PlanLockedError"
    this.info = info
  }
}

export async function acquirePlanLock(storeDir: string, planId: string, info: LockInfo): Promise<() => Promise<void>> {
  const dir = path.join(storeDir, "locks")
  const file = path.join(dir, `${planId}.lock`)
  await fsp.mkdir(dir, { recursive: true })
  for (let tries = 0; tries < 10; tries++) {
    try {
      const fh = await fsp.open(file, "wx")
      await fh.writeFile(JSON.stringify(info))
      await fh.sync()
      await fh.close()
      return async () => {
        // Remove only our own lock.
        try {
          const cur = JSON.parse(await fsp.readFile(file, "utf8")) as LockInfo
          if (cur.pid === info.pid && cur.startedAt === info.startedAt) await fsp.unlink(file)
        } catch {
          // already gone
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e
    }
    let cur: LockInfo | undefined
    try {
      cur = JSON.parse(await fsp.readFile(file, "utf8"))
    } catch {
      // Half-written by a contender that is writing it right now, or gone: look again shortly.
      await new Promise(r => setTimeout(r, 20))
      continue
    }
    if (cur && cur.host === info.host && isSameProcessAlive(cur.pid, null)) throw new PlanLockedError(cur)
    if (cur && cur.host !== info.host) throw new PlanLockedError(cur)
    // The holder is gone: move its lock aside (atomic; only one contender succeeds) and try again.
    await fsp.rename(file, `${file}.stale.${info.pid}`).catch(() => {})
    await fsp.unlink(`${file}.stale.${info.pid}`).catch(() => {})
  }
  throw new Error(`could not take the lock ${file}`)
}
