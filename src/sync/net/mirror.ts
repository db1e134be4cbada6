/**
 * `concord run --remote`: the orchestrator keeps using a local store, kept in sync with the server for the
 * whole run (a sync before, a watch-sync during, and a final sync after), so the runner itself is unchanged
 * and job processes report into the local store as usual.
 */
import { PlanStore } from "../store/PlanStore.js"
import type { RemoteTarget } from "./client.js"
import { syncOnce, syncWatch } from "./sync.js"

export interface Mirror {
  /** the plan, now in the local store */
  planId: string
  /** stop the background sync, then sync once more so the server has everything */
  close(): Promise<void>
}

/** Make the local store a live replica of the server's plan `planId` for the duration of the run. */
export async function openMirror(store: PlanStore, target: RemoteTarget, planId: string, log: (l: string) => void): Promise<Mirror> {
  const base = { url: target.url, token: target.token, ca: target.ca, plans: [planId], log }
  // Its own PlanStore on the same directory, as a separate process would have: the runner's DocStore
  // state (what it loaded and saved) stays its own.
  const mirror = new PlanStore(store.dir)
  await syncOnce(mirror, base)
  const ac = new AbortController()
  const watching = syncWatch(mirror, { ...base, signal: ac.signal, pollMs: 1000 }).catch(e => log(`background sync stopped: ${(e as Error).message}`))
  return {
    planId,
    async close() {
      ac.abort()
      await watching
      await syncOnce(mirror, base)
    },
  }
}
