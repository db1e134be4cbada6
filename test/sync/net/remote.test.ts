/**
 * Working against a server: `sync --watch` (both ways, reconnecting with backoff, local writes going up,
 * writes made on the server's own store coming down), `status --remote [--watch]`, `run --remote`.
 */
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { addTokenCli, createPlanCli, FOUNDING_PLAN, ok, rm, runConcord, spawnConcord, startServerProcess, statusJson, tempRoot, until } from "./helpers.js"

const roots: string[] = []
afterAll(() => roots.forEach(rm))

const lastMessage = async (dir: string, id: string, job: string): Promise<string | undefined> => {
  const log = await new PlanStore(dir, { onWarning: () => {} }).loadReports(id, job).catch(() => undefined)
  const rs = (log?.reports ?? []) as any[]
  return rs.length ? String(rs[rs.length - 1].message) : undefined
}

describe("remote", () => {
  it("sync --watch: both ways, local writes go up, server-side writes come down, reconnects after the server restarts", async () => {
    const root = tempRoot()
    roots.push(root)
    const [a, b, s] = ["a", "b", "server"].map(n => path.join(root, n))
    const id = await createPlanCli(a, FOUNDING_PLAN)
    const token = await addTokenCli(s, "*", "admin")
    let server = await startServerProcess(s)
    const port = server.port
    await ok(a, ["sync", server.url, "--token", token])

    const watch = spawnConcord(b, ["sync", server.url, "--token", token, "--watch"], { timeoutMs: 120_000 })
    await until("the plan on B", async () => (await new PlanStore(b, { onWarning: () => {} }).listPlans()).some(p => p.id === id))

    // A writes and syncs: B's watch saves it
    await ok(a, ["report", "progress", "from A 1", "--job", "A", "--plan", id])
    await ok(a, ["sync", server.url, "--token", token])
    await until("A's report on B", async () => (await lastMessage(b, id, "A")) === "from A 1")

    // B writes locally: its watch pushes it, A pulls it
    await ok(b, ["report", "completed", "B done on B", "--job", "B", "--plan", id])
    await until("B's report on the server", async () => (await lastMessage(s, id, "B")) === "B done on B")
    await ok(a, ["sync", server.url, "--token", token])
    expect((await statusJson(a, id)).jobs.find((j: any) => j.name === "B").status).toBe("completed")

    // a process on the server's machine writes the server's store directly: B's watch gets it
    await ok(s, ["report", "progress", "written on the server machine", "--job", "C", "--plan", id])
    await until("server-side report on B", async () => (await lastMessage(b, id, "C")) === "written on the server machine")

    // a plan created on the server's machine while it runs reaches B's watch too
    const id2 = await createPlanCli(s, FOUNDING_PLAN.replace("founding-bug", "made-on-server"), "p2.yaml")
    await until("the server-made plan on B", async () => (await new PlanStore(b, { onWarning: () => {} }).listPlans()).some(p => p.id === id2))

    // the server goes away and comes back on the same port: B reconnects and keeps syncing
    await server.stop("SIGTERM")
    await until("B notices", () => /disconnected from .*reconnecting/.test(watch.output().stderr))
    await ok(b, ["report", "progress", "written while the server was down", "--job", "B", "--plan", id])
    server = await startServerProcess(s, [], { port })
    await until("B's offline write on the server", async () => (await lastMessage(s, id, "B")) === "written while the server was down", 30_000)
    await ok(a, ["report", "progress", "from A 2", "--job", "A", "--plan", id])
    await ok(a, ["sync", server.url, "--token", token])
    await until("A's second report on B", async () => (await lastMessage(b, id, "A")) === "from A 2", 30_000)

    watch.child.kill("SIGTERM")
    const w = await watch.done
    expect(w.code, w.stderr).toBe(0)
    await server.stop()
  }, 120_000)

  it("status --remote and status --watch --remote from a machine with no store", async () => {
    const root = tempRoot()
    roots.push(root)
    const [s, viewer, agent] = ["server", "viewer", "agent"].map(n => path.join(root, n))
    const id = await createPlanCli(s, FOUNDING_PLAN)
    const reader = await addTokenCli(s, id, "reader")
    const jobB = await addTokenCli(s, id, "job:B")
    const server = await startServerProcess(s)
    const once = JSON.parse((await ok(viewer, ["status", id, "--json", "--remote", server.url, "--token", reader])).stdout)
    expect(once.jobs.map((j: any) => j.status)).toEqual(["queued", "queued", "queued"])
    const human = await ok(viewer, ["status", "--remote", server.url, "--token", reader])
    expect(human.stdout).toMatch(/founding-bug/)

    const watch = spawnConcord(viewer, ["status", id, "--watch", "--json", "--remote", server.url, "--token", reader])
    await until("first frame", () => watch.output().stdout.split("\n").filter(Boolean).length >= 1)
    await ok(agent, ["report", "completed", "B done", "--job", "B", "--plan", id, "--remote", server.url, "--token", jobB])
    // the server's agent rules let a job token move its job only from running: B's report is stored and
    // shown, and B (never started by an orchestrator) stays queued
    const frame = await until("a frame with B's report", () =>
      watch
        .output()
        .stdout.split("\n")
        .filter(Boolean)
        .map(l => JSON.parse(l))
        .find(f => f.jobs.find((j: any) => j.name === "B").lastReport?.message === "B done")
    )
    expect(frame.jobs.find((j: any) => j.name === "B").status).toBe("queued")
    expect(frame.status).toBe("pending")
    watch.child.kill("SIGTERM")
    expect((await watch.done).code).toBe(0)
    // the viewer wrote nothing anywhere
    expect(await new PlanStore(viewer).listPlans()).toEqual([])
    await server.stop()
  }, 60_000)

  it("run --remote: an orchestrator on another machine runs the server's plan; the server ends with the outcome", async () => {
    const root = tempRoot()
    roots.push(root)
    const [s, runner] = ["server", "runner"].map(n => path.join(root, n))
    const id = await createPlanCli(
      s,
      `name: remote-run
jobs:
  - { name: first, run: 'concord report progress "first working" --progress 50; sleep 0.2; concord report completed "first done"' }
  - { name: second, run: "true", dependsOn: [first] }
`
    )
    const writer = await addTokenCli(s, id, "writer")
    const server = await startServerProcess(s)
    const r = await runConcord(runner, ["run", "remote-run", "--remote", server.url, "--token", writer, "--quiet"])
    expect(r.code, r.stderr + r.stdout).toBe(0)
    const st = await statusJson(s, id)
    expect(st.status).toBe("completed")
    expect(st.jobs.map((j: any) => [j.name, j.status])).toEqual([
      ["first", "completed"],
      ["second", "completed"],
    ])
    expect(st.jobs[0].lastReport.message).toBe("first done")
    // the lease was released on the server's copy too
    expect(st.lease ?? null).toBeNull()
    await server.stop()
  }, 60_000)
})
