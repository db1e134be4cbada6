/**
 * 1,000 offline changes on each of two peers (separate stores) converge after reconnect, through a
 * `concord serve` process and `concord sync` processes. The same function times it for bench/.
 */
import { describe, expect, it } from "vitest"
// the benchmark's own function (bench/lib, over dist/: npm test builds first)
import { benchOfflineConvergence } from "../../../bench/lib/net-harness.mjs"

describe("offline changes", () => {
  it("1,000 offline changes per peer converge after reconnect", async () => {
    const r = await benchOfflineConvergence({ changesPerPeer: 1000 })
    // every document has the same heads on A, B and the server, and every change of both peers is there
    expect(r.converged).toBe(true)
    // 2 x 1000 offline changes + plan creation + 3 report-log genesis changes
    expect(r.serverChanges).toBe(2004)
    console.log(
      `1000 offline changes per peer: converged in ${r.convergeMs} ms over 3 syncs (A push ${r.syncMs.aPush} ms, B both ways ${r.syncMs.bBoth} ms, A pull ${r.syncMs.aPull} ms)`
    )
  }, 120_000)
})
