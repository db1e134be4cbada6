/**
 * Machines simulated as separate stores, each with its own `concord` processes, meeting through a
 * `concord serve` process on 127.0.0.1. The founding bug split across two machines, and three peers
 * syncing in random orders.
 */
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { ROOT, runNode } from "../../helpers/cli.js"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, jobStatuses, ok, planHeads, rm, startServerProcess, statusJson, tempRoot } from "./helpers.js"

const STEP = path.join(ROOT, "test/fixtures/plan-step.mjs")
const roots: string[] = []
afterAll(() => roots.forEach(rm))

const JOBS = ["A", "B", "C"]

function expectFoundingOutcome(s: any) {
  expect(jobStatuses(s)).toEqual({ A: "failed", B: "completed", C: "completed" })
  expect([s.status, s.checkpoint, s.checkpointContext?.jobName]).toEqual(["paused", "on_error", "A"])
}

describe("two machines", () => {
  it("the founding bug split across two machines: both stores end with A failed, B and C completed, paused at on_error", async () => {
    const root = tempRoot()
    roots.push(root)
    const [a, b, s] = ["a", "b", "server"].map(n => path.join(root, n))
    // The plan is made on machine A, before the machines ever met.
    const id = await createPlanCli(a, FOUNDING_PLAN)
    const token = await addTokenCli(s, id, "admin")
    let server = await startServerProcess(s)
    const sync = (dir: string) => ok(dir, ["sync", server.url, "--token", token])
    const first = await sync(a)
    expect(first.stdout).toMatch(/new on the server/)
    const second = await sync(b)
    expect(second.stdout).toMatch(/new here/)
    expect(jobStatuses(await statusJson(b, id))).toEqual({ A: "queued", B: "queued", C: "queued" })

    // Disconnected: the server is down. Machine A's orchestrator starts the jobs, then (from its view)
    // marks A failed and pauses at on_error; machine B's agents report B and C completed.
    expect((await server.stop("SIGTERM")).code).toBe(0)
    for (const args of [
      ["start", "A", "B", "C"],
      ["fail-and-pause", "A", "0"],
    ]) {
      const r = await runNode([STEP, a, id, ...args])
      expect(r.code, r.stderr).toBe(0)
    }
    for (const job of ["B", "C"]) {
      await ok(b, ["report", "completed", `${job} done`], { CONCORD_PLAN: id, CONCORD_JOB: job, CONCORD_ATTEMPT: "1" })
    }
    expect(jobStatuses(await statusJson(a, id))).toEqual({ A: "failed", B: "running", C: "running" })
    expect(jobStatuses(await statusJson(b, id))).toEqual({ A: "queued", B: "completed", C: "completed" })

    // Reconnect: the server comes back (same store, new port); each machine runs concord sync.
    server = await startServerProcess(s)
    await sync(a)
    await sync(b)
    await sync(a)
    expectFoundingOutcome(await statusJson(a, id))
    expectFoundingOutcome(await statusJson(b, id))
    expectFoundingOutcome(await statusJson(s, id))
    const heads = await Promise.all([a, b, s].map(d => planHeads(d, id, JOBS)))
    expect(heads[1]).toEqual(heads[0])
    expect(heads[2]).toEqual(heads[0])
    // B's reports made it to A, with their text
    const onA = await statusJson(a, id)
    expect(onA.jobs.find((j: any) => j.name === "B").lastReport.message).toBe("B done")
    // a sync with nothing new is a no-op that still exits 0
    expect((await sync(a)).stdout).toMatch(/nothing new received/)
    expect((await server.stop("SIGINT")).code).toBe(0)
  }, 90_000)

  it("three peers syncing in random orders converge to the same outcome", async () => {
    for (let round = 0; round < 2; round++) {
      const root = tempRoot()
      roots.push(root)
      const peers = ["p1", "p2", "p3"].map(n => path.join(root, n))
      const s = path.join(root, "server")
      const id = await createPlanCli(peers[0], FOUNDING_PLAN)
      const token = await addTokenCli(s, "*", "admin")
      const server = await startServerProcess(s)
      const sync = (dir: string) => ok(dir, ["sync", server.url, "--token", token, "--plan", id])
      for (const p of peers) await sync(p)
      // offline: p1 fails A and pauses; p2 completes B; p3 completes C and reports progress on A's log
      for (const args of [
        ["start", "A"],
        ["fail-and-pause", "A", "0"],
      ]) {
        const r = await runNode([STEP, peers[0], id, ...args])
        expect(r.code, r.stderr).toBe(0)
      }
      await ok(peers[1], ["report", "completed", "B done", "--job", "B", "--plan", id])
      await ok(peers[2], ["report", "progress", "halfway", "--progress", "50", "--job", "C", "--plan", id])
      await ok(peers[2], ["report", "completed", "C done", "--job", "C", "--plan", id])
      // two random passes: after the first every change is on the server, after the second everywhere
      const order = [...shuffle([0, 1, 2]), ...shuffle([0, 1, 2])]
      for (const i of order) await sync(peers[i])
      const why = `order ${order.map(i => `p${i + 1}`).join(" ")}`
      for (const p of [...peers, s]) {
        const st = await statusJson(p, id)
        expect(jobStatuses(st), why).toEqual({ A: "failed", B: "completed", C: "completed" })
        expect([st.status, st.checkpoint], why).toEqual(["paused", "on_error"])
      }
      const heads = await Promise.all([...peers, s].map(d => planHeads(d, id, JOBS)))
      for (const h of heads) expect(h, why).toEqual(heads[0])
      await server.stop()
    }
  }, 120_000)
})

function shuffle<T>(xs: T[]): T[] {
  const a = [...xs]
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}
