/**
 * A plan's status read in the test's own process, for polling while real processes work on the store:
 * the same code `concord status --json` runs (src/ops/status.ts over a fresh local store, closed after
 * each read), without starting a Node process per poll. A test that polls every 50 ms for seconds would
 * otherwise start dozens of `concord status` processes, each costing a CPU-half-second on a 2-core CI
 * machine. What a test asserts about the CLI's output is still asked of the CLI (helpers/cli.ts statusJson).
 */
import { LocalBackend } from "../../src/ops/local.js"
import { status } from "../../src/ops/status.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"

/** `concord status [plan] --json`'s object, read in this process from a store no cache has seen. */
export async function peekStatus(store: string, plan?: string): Promise<any> {
  const backend = new LocalBackend(new PlanStore(store, { onWarning: () => {} }))
  try {
    const s = await status(backend, plan)
    return { ...s.summary, store: s.storeDir, warnings: s.warnings, failureTails: s.failureTails }
  } finally {
    await backend.close()
  }
}
