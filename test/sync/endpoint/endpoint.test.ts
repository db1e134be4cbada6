// concord run's local endpoint (src/sync/endpoint, src/ops/endpoint.ts) with real processes, files and
// sockets: reports through it land in the store and read like the store path's; an endpoint killed at the
// worst moment loses nothing and doubles nothing; a stale one is skipped; hostile messages are refused.
import { spawn, type ChildProcess } from "node:child_process"
import { existsSync } from "node:fs"
import net from "node:net"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest"
import { readReports } from "../../../src/doc/reports.js"
import { infoFile } from "../../../src/sync/endpoint/protocol.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { reportRouted } from "../../../src/ops/endpoint.js"
import { LocalBackend } from "../../../src/ops/local.js"
import { cleanup, concord, createPlan, tempDir, writePlan } from "../../helpers/cli.js"

const FIXTURE = fileURLToPath(new URL("./serve-fixture.mjs", import.meta.url))
const SENDER = fileURLToPath(new URL("./send-fixture.mjs", import.meta.url))
const JOBS = "abcdefghijklmnop".split("")

let store: string
let planId: string
const children: ChildProcess[] = []

beforeAll(async () => {
  store = tempDir("concord-endpoint-")
  planId = await createPlan(store, `name: ep\njobs:\n${JOBS.map(j => `  - { name: ${j}, run: "true" }`).join("\n")}\n`)
}, 60_000)
afterAll(() => cleanup(store))
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
})

async function startFixture(mode: "normal" | "die-before" | "die-after"): Promise<{ child: ChildProcess; socket: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [FIXTURE, store, planId, mode], { stdio: ["ignore", "pipe", "inherit"] })
  children.push(child)
  const exited = new Promise(r => child.once("exit", r))
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! })
    rl.once("line", resolve)
    child.once("exit", c => reject(new Error(`endpoint fixture exited (${c})`)))
  })
  return { child, socket: line.replace(/^ready /, ""), exited }
}

const jobEnv = (job: string) => ({ CONCORD_PLAN: planId, CONCORD_JOB: job, CONCORD_ATTEMPT: "1" })

async function messagesOf(job: string): Promise<string[]> {
  return readReports(await new PlanStore(store).loadReports(planId, job)).map(r => r.message)
}

describe("concord run's local endpoint", () => {
  it("takes a one-shot concord report, durable in the store, answered as the store path answers", async () => {
    const ep = await startFixture("normal")
    const r = await concord(store, ["report", "progress", "through the endpoint", "--progress", "30", "--json"], { env: jobEnv("a") })
    expect(r.code, r.stderr).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out).toMatchObject({ via: "endpoint", job: "a", attempt: 1, status: "progress", progress: 30, message: "through the endpoint" })
    expect(await messagesOf("a")).toContain("through the endpoint")

    // a refusal reads the same either way, with the same exit code, and writes nothing
    const bad = ["report", "completed", "x", "--job", "nope"]
    const viaEndpoint = await concord(store, bad, { env: jobEnv("a") })
    ep.child.kill("SIGTERM")
    await ep.exited
    expect(existsSync(infoFile(store, planId))).toBe(false) // a clean stop removes its info file
    const viaStore = await concord(store, bad, { env: jobEnv("a") })
    expect(viaEndpoint.code).toBe(2)
    expect(viaStore.code).toBe(2)
    expect(viaEndpoint.stderr).toBe(viaStore.stderr)
    const bigEndpoint = "x".repeat(5000)
    expect((await concord(store, ["report", "working", bigEndpoint], { env: jobEnv("a") })).code).toBe(2)
  }, 120_000)

  it("16 report processes at once: every report stored exactly once", async () => {
    const ep = await startFixture("normal")
    const rs = await Promise.all(JOBS.map(j => concord(store, ["report", "working", `hello from ${j}`, "--json"], { env: jobEnv(j) })))
    for (const r of rs) {
      expect(r.code, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout).via).toBe("endpoint")
    }
    for (const j of JOBS) expect((await messagesOf(j)).filter(m => m === `hello from ${j}`)).toHaveLength(1)
    ep.child.kill("SIGTERM")
    await ep.exited
  }, 180_000)

  it("a long-lived sender keeps one connection for many reports at once, and finds a new endpoint after the old one died", async () => {
    const backend = new LocalBackend(new PlanStore(store))
    const send = (message: string) =>
      reportRouted(backend, { planRef: planId, job: "c", status: "progress", message }, () => ({ by: "job:c#1@test", now: Date.now() }))
    const connects = vi.spyOn(net, "connect")
    try {
      const ep1 = await startFixture("normal")
      const first = await Promise.all(Array.from({ length: 20 }, (_, i) => send(`pooled ${i}`)))
      expect(first.map(r => r.via)).toEqual(Array(20).fill("endpoint"))
      expect(connects.mock.calls.filter(c => c[0] === ep1.socket)).toHaveLength(1)
      ep1.child.kill("SIGKILL")
      await ep1.exited
      const ep2 = await startFixture("normal")
      for (let i = 0; i < 5; i++) expect((await send(`after restart ${i}`)).via).toBe("endpoint")
      expect(connects.mock.calls.filter(c => c[0] === ep2.socket)).toHaveLength(2)
      ep2.child.kill("SIGKILL")
      await ep2.exited
      expect((await send("no endpoint left")).via).toBe("store")
    } finally {
      connects.mockRestore()
      await backend.close()
    }
    const got = await messagesOf("c")
    const want = [...Array.from({ length: 20 }, (_, i) => `pooled ${i}`), ...Array.from({ length: 5 }, (_, i) => `after restart ${i}`), "no endpoint left"]
    for (const m of want)
      expect(
        got.filter(x => x === m),
        m
      ).toHaveLength(1)
  }, 120_000)

  it("an endpoint killed after the report was durable, before answering: the report is stored once", async () => {
    const ep = await startFixture("die-after")
    const r = await concord(store, ["report", "progress", "die-after report", "--json"], { env: jobEnv("b") })
    await ep.exited
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).via).toBe("store") // the sender finished it through the store...
    expect((await messagesOf("b")).filter(m => m === "die-after report")).toHaveLength(1) // ...and it is there once
  }, 120_000)

  it("an endpoint killed before applying the report: the report is stored once, through the store", async () => {
    const ep = await startFixture("die-before")
    const r = await concord(store, ["report", "progress", "die-before report", "--json"], { env: jobEnv("c") })
    await ep.exited
    expect(r.code, r.stderr).toBe(0)
    expect((await messagesOf("c")).filter(m => m === "die-before report")).toHaveLength(1)
  }, 120_000)

  it("an endpoint SIGKILLed in the middle of its group commits under 8 senders: nothing acknowledged lost or doubled, no chunk file torn", async () => {
    const crash = tempDir("concord-endpoint-crash-")
    try {
      const jobs = JOBS.slice(0, 8)
      const plan = await createPlan(crash, `name: crash\njobs:\n${jobs.map(j => `  - { name: ${j}, run: "true" }`).join("\n")}\n`)
      const child = spawn(process.execPath, [FIXTURE, crash, plan, "normal"], { stdio: ["ignore", "pipe", "inherit"] })
      children.push(child)
      const exited = new Promise(r => child.once("exit", r))
      await new Promise<string>(resolve => createInterface({ input: child.stdout! }).once("line", resolve))
      const N = 12
      let acked = 0
      let killed = false
      const acks = new Map<string, Set<number>>()
      const senders = jobs.map(j => {
        const p = spawn(process.execPath, [SENDER, crash, plan, j, String(N)], { stdio: ["ignore", "pipe", "inherit"] })
        children.push(p)
        acks.set(j, new Set())
        createInterface({ input: p.stdout! }).on("line", line => {
          const [, i] = line.split(" ")
          acks.get(j)!.add(Number(i))
          // killed while reports of every sender are on their way: some are in a group being written
          if (++acked === 3 * jobs.length && !killed) {
            killed = true
            child.kill("SIGKILL")
          }
        })
        return new Promise<number | null>(r => p.once("exit", r))
      })
      expect(await Promise.all(senders)).toEqual(jobs.map(() => 0))
      await exited
      expect(killed).toBe(true)
      const warnings: string[] = []
      const reader = new PlanStore(crash, { onWarning: m => warnings.push(m) })
      for (const j of jobs) {
        expect([...acks.get(j)!].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i))
        const got = readReports(await reader.loadReports(plan, j)).map(r => r.message)
        for (let i = 0; i < N; i++)
          expect(
            got.filter(m => m === `${j}-${i}`),
            `${j}-${i}`
          ).toHaveLength(1)
      }
      expect(warnings).toEqual([]) // every chunk file whole (a killed write leaves at most a stray temp file)
    } finally {
      cleanup(crash)
    }
  }, 180_000)

  it("a stale endpoint (its process gone, its files left) is skipped", async () => {
    const ep = await startFixture("normal")
    ep.child.kill("SIGKILL")
    await ep.exited
    expect(existsSync(infoFile(store, planId))).toBe(true)
    const r = await concord(store, ["report", "working", "after the endpoint died", "--json"], { env: jobEnv("d") })
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout).via).toBe("store")
    expect(await messagesOf("d")).toContain("after the endpoint died")
    // and the next endpoint takes over the left-over socket
    const again = await startFixture("normal")
    const r2 = await concord(store, ["report", "working", "new endpoint", "--json"], { env: jobEnv("d") })
    expect(JSON.parse(r2.stdout).via).toBe("endpoint")
    again.child.kill("SIGTERM")
    await again.exited
  }, 120_000)

  it("refuses malformed, oversized and foreign messages without going down", async () => {
    const ep = await startFixture("normal")
    const exchange = (payload: string | Buffer) =>
      new Promise<string>((resolve, reject) => {
        const c = net.connect(ep.socket)
        let got = ""
        c.setEncoding("utf8")
        c.on("data", d => (got += d))
        c.on("close", () => resolve(got))
        // the server closes a connection that sent too much while it is still sending
        c.on("error", e => (got ? resolve(got) : reject(e)))
        c.write(payload)
        setTimeout(() => c.end(), 1500)
      })
    expect(JSON.parse((await exchange("not json\n")).split("\n")[0]).error.code).toBe("bad_request")
    expect(JSON.parse((await exchange(`${JSON.stringify({ v: 99, id: 1, op: "report", by: "x" })}\n`)).split("\n")[0]).error.code).toBe("bad_request")
    expect(JSON.parse((await exchange(`${JSON.stringify({ v: 1, id: 2, op: "rm -rf", by: "x" })}\n`)).split("\n")[0]).error.message).toMatch(
      /unknown operation/
    )
    const huge = await exchange(Buffer.alloc(2 * 1024 * 1024, 0x41))
    expect(JSON.parse(huge.split("\n")[0]).error.code).toBe("too_large")
    const escapes = `${JSON.stringify({ v: 1, id: 3, op: "report", by: "x", input: { job: "e", status: "working", message: "\u001b]0;pwned\u0007\u001b[2J" } })}\n`
    expect(JSON.parse((await exchange(escapes)).split("\n")[0]).ok).toBe(true) // stored as sent; every human output neutralises it
    const typed = `${JSON.stringify({ v: 1, id: 4, op: "report", by: "x", input: { job: ["e"], status: "working" } })}\n`
    expect(JSON.parse((await exchange(typed)).split("\n")[0]).error.message).toMatch(/job must be text/)
    // still serving
    const r = await concord(store, ["report", "working", "still here", "--json"], { env: jobEnv("e") })
    expect(JSON.parse(r.stdout).via).toBe("endpoint")
    ep.child.kill("SIGTERM")
    await ep.exited
  }, 120_000)
})

describe("concord run serves its plan's endpoint", () => {
  it("jobs' reports go through it while the plan runs; it is gone when the run ends", async () => {
    const dir = tempDir("concord-endpoint-run-")
    try {
      const file = writePlan(
        dir,
        "plan.yaml",
        `name: served\njobs:\n  - name: a\n    run: concord report progress "halfway" --progress 50 --json && concord report completed done\n`
      )
      expect((await concord(dir, ["plan", "create", file])).code).toBe(0)
      const run = await concord(dir, ["run"])
      expect(run.code, run.stdout + run.stderr).toBe(0)
      const status = JSON.parse((await concord(dir, ["status", "--json"])).stdout)
      expect(status.jobs[0].status).toBe("completed")
      const log = (await concord(dir, ["logs", "a"])).stdout
      expect(log).toMatch(/"via": "endpoint"/)
      expect(existsSync(infoFile(dir, status.id))).toBe(false)
    } finally {
      cleanup(dir)
    }
  }, 120_000)
})
