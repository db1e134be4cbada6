import { randomBytes } from "node:crypto"
/**
 * Per-token limits of the sync server: the bookkeeping (pure, injected clock), and a real `concord serve`
 * with small limits refusing a client that breaks them, telling it why (the CLI prints it, exit 1) and
 * logging it, while a well-behaved token goes on.
 */
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { reportDocId } from "../../../src/doc/ids.js"
import { DEFAULT_LIMITS, LimitBook } from "../../../src/sync/net/limits.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, ok, rm, runConcord, startServerProcess, tempRoot } from "./helpers.js"

describe("LimitBook", () => {
  it("a token bucket per token: a burst, then the rate; other tokens are not affected", () => {
    const l = new LimitBook({ messagesPerSecond: 10, burst: 3 })
    const t0 = 1_000_000
    expect([1, 2, 3].map(() => l.admit("a", 10, t0))).toEqual([undefined, undefined, undefined])
    expect(l.admit("a", 10, t0)).toMatch(/rate limit: token a sent more than 10 messages per second \(burst 3\)/)
    expect(l.admit("b", 10, t0)).toBeUndefined()
    expect(l.admit("a", 10, t0 + 50)).toMatch(/rate limit/) // half a message refilled
    expect(l.admit("a", 10, t0 + 100)).toBeUndefined() // one refilled
    expect(l.admit("a", 10, t0 + 10_000)).toBeUndefined() // refills to the burst, not beyond
    expect([1, 2].map(() => l.admit("a", 10, t0 + 10_000))).toEqual([undefined, undefined])
    expect(l.admit("a", 10, t0 + 10_000)).toMatch(/rate limit/)
  })

  it("bytes per message and documents per token", () => {
    const l = new LimitBook({ bytesPerMessage: 1000, docsPerToken: 2 })
    expect(l.admit("a", 1000, 0)).toBeUndefined()
    expect(l.admit("a", 1001, 0)).toMatch(/message of 1001 bytes is over the limit of 1000 bytes per message for token a/)
    expect(l.canCreate("a", "d1")).toBeUndefined()
    l.noteCreated("a", "d1")
    l.noteCreated("a", "d2")
    expect(l.canCreate("a", "d1")).toBeUndefined() // already its own
    expect(l.canCreate("a", "d3")).toMatch(/token a has created 2 documents on this server, the limit \(2 per token\)/)
    expect(l.canCreate("b", "d3")).toBeUndefined()
    expect(new LimitBook({ burst: undefined }).limits).toEqual(DEFAULT_LIMITS)
  })
})

describe("a server with small limits", () => {
  const root = tempRoot("concord-limits-")
  afterAll(() => rm(root))

  it("refuses a token over its limits with a clear reason; another token goes on; counts survive a restart", async () => {
    const s = path.join(root, "server")
    const laptop = path.join(root, "laptop")
    const X = await createPlanCli(laptop, FOUNDING_PLAN)
    const admin = await addTokenCli(s, "*", "admin")
    const other = await addTokenCli(s, "*", "admin")
    let server = await startServerProcess(s, ["--token-docs", "2", "--token-message-bytes", "8192"])
    try {
      // documents per token: the plan and one report log fit, the second report log does not
      await ok(laptop, ["sync", server.url, "--token", admin])
      await ok(laptop, ["report", "progress", "A works", "--job", "A", "--plan", X])
      await ok(laptop, ["sync", server.url, "--token", admin])
      await ok(laptop, ["report", "progress", "B works", "--job", "B", "--plan", X])
      const over = await runConcord(laptop, ["sync", server.url, "--token", admin, "--timeout", "20"])
      expect(over.code).toBe(1)
      expect(over.stderr).toMatch(/has created 2 documents on this server, the limit \(2 per token\)/)
      expect(server.logs()).toMatch(/refused sync from .*has created 2 documents/)
      expect(await new PlanStore(s, { onWarning: () => {} }).docs.exists(reportDocId(X, "B"))).toBe(false)
      // another token is not affected
      await ok(laptop, ["sync", server.url, "--token", other])

      // bytes per message: 3 reports of 4,000 random characters in one sync go over 8 KiB
      await ok(laptop, ["report", "progress", "C works", "--job", "C", "--plan", X])
      await ok(laptop, ["sync", server.url, "--token", other])
      // incompressible text: Automerge compresses a repeated character to almost nothing
      for (let i = 0; i < 3; i++) await ok(laptop, ["report", "progress", randomBytes(3000).toString("base64"), "--job", "C", "--plan", X])
      const big = await runConcord(laptop, ["sync", server.url, "--token", other, "--timeout", "20"])
      expect(big.code).toBe(1)
      expect(big.stderr).toMatch(/bytes is over the limit of 8192 bytes per message/)
    } finally {
      await server.stop("SIGTERM")
    }
    // the documents a token created are counted from the audit trail after a restart
    server = await startServerProcess(s, ["--token-docs", "2"])
    try {
      const Y = await createPlanCli(laptop, FOUNDING_PLAN.replace("founding-bug", "plan-y"), "y.yaml")
      const again = await runConcord(laptop, ["sync", server.url, "--token", admin, "--plan", Y, "--timeout", "20"])
      expect(again.code).toBe(1)
      expect(again.stderr).toMatch(/has created 2 documents on this server/)
      await ok(laptop, ["sync", server.url, "--token", other, "--plan", X]) // the big reports, under the default size limit
    } finally {
      await server.stop("SIGTERM")
    }
    // rate: a burst of 3 messages is not enough for a sync of a plan with its logs
    server = await startServerProcess(s, ["--rate", "1", "--burst", "3"])
    try {
      const fresh = path.join(root, "fresh")
      const r = await runConcord(fresh, ["sync", server.url, "--token", admin, "--timeout", "20"])
      expect(r.code).toBe(1)
      expect(r.stderr + server.logs()).toMatch(/rate limit: token tk_\w+ sent more than 1 messages per second \(burst 3\)/)
    } finally {
      await server.stop("SIGTERM")
    }
  }, 300_000)
})
