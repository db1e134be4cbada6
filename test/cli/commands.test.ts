/** The CLI's contract: exit codes, messages, nothing written on bad input, JSON shapes, watch. */
import { existsSync, mkdirSync, readdirSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, concord, createPlan, ROOT, runNode, statusJson, tempDir, writePlan } from "../helpers/cli.js"
import { spawnConcord } from "../helpers/processes.mjs"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))
function store(): string {
  const d = tempDir()
  dirs.push(d)
  return d
}

/** Nothing but the plan files we wrote ourselves: no documents, no index. */
function storeIsEmpty(dir: string): boolean {
  return readdirSync(dir).every(f => f.endsWith(".yaml") || f.endsWith(".json"))
}

const job = (name: string, extra = "") => `  - { name: ${name}, run: "true"${extra} }`

const INVALID: [string, string, RegExp][] = [
  ["duplicate names", `name: p\njobs:\n${job("a")}\n${job("a")}\n`, /job "a": duplicate name \(also jobs\[0\]\)/],
  ["unknown dependency", `name: p\njobs:\n${job("a", ", dependsOn: [zz]")}\n`, /job "a": dependsOn names unknown job "zz"/],
  [
    "cycle",
    `name: p\njobs:\n${job("a", ", dependsOn: [c]")}\n${job("b", ", dependsOn: [a]")}\n${job("c", ", dependsOn: [b]")}\n`,
    /dependency cycle: a -> c -> b -> a/,
  ],
  ["self-dependency", `name: p\njobs:\n${job("a", ", dependsOn: [a]")}\n`, /job "a": depends on itself/],
  ["empty job list", `name: p\njobs: []\n`, /plan: "jobs" must list at least one job/],
  ["bad name", `name: p\njobs:\n  - { name: "bad name!", run: x }\n`, /job name "bad name!" \(jobs\[0\]\): must match \[A-Za-z0-9._-\]\{1,64\}/],
  ["unknown key", `name: p\njobs:\n${job("a", ", dependson: [b]")}\n`, /jobs\[0\] \(name "a"\): unknown key "dependson" \(did you mean "dependsOn"\?\)/],
  ["wrong type", `name: p\nmaxParallel: "three"\njobs:\n${job("a")}\n`, /plan: field "maxParallel" must be an integer from 1 to 256 \(got string\)/],
  ["bad mode", `name: p\nmode: turbo\njobs:\n${job("a")}\n`, /plan: field "mode" must be one of autopilot, copilot, supervisor/],
  ["YAML syntax", `name: p\njobs:\n  - name: a\n   run: x\n`, /\.yaml:\d+:\d+: YAML/],
]

describe("plan create", () => {
  for (const [rule, yaml, message] of INVALID) {
    it(`rejects ${rule} with exit 2, a message naming the problem, and no write`, async () => {
      const dir = store()
      const file = writePlan(dir, "plan.yaml", yaml)
      const r = await concord(dir, ["plan", "create", file])
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(message)
      expect(r.stdout).toBe("")
      expect(storeIsEmpty(dir)).toBe(true)
    })
  }

  it("a missing file is a clear usage error", async () => {
    const dir = store()
    const r = await concord(dir, ["plan", "create", path.join(dir, "nope.yaml")])
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/cannot read plan file .*nope\.yaml: ENOENT/)])
  })

  it("creates a plan from YAML or JSON, prints its id or {id, url}, and lists it", async () => {
    const dir = store()
    const yaml = writePlan(dir, "p.yaml", `name: first\njobs:\n${job("a")}\n`)
    const json = writePlan(dir, "p.json", JSON.stringify({ name: "second", mode: "supervisor", jobs: [{ name: "x", run: "true" }] }))
    const a = await concord(dir, ["plan", "create", yaml])
    expect(a.code, a.stderr).toBe(0)
    expect(a.stdout.trim()).toMatch(/^[1-9A-HJ-NP-Za-km-z]{20,}$/)
    const b = JSON.parse((await concord(dir, ["plan", "create", json, "--json"])).stdout)
    expect(b.url).toBe(`automerge:${b.id}`)
    const list = JSON.parse((await concord(dir, ["plan", "list", "--json"])).stdout)
    expect(list.map((p: any) => [p.name, p.status])).toEqual([
      ["first", "pending"],
      ["second", "pending"],
    ])
    // Without a plan argument, status shows the most recent plan; a name works too.
    expect((await statusJson(dir)).name).toBe("second")
    expect((await statusJson(dir, "first")).id).toBe(a.stdout.trim())
    expect((await concord(dir, ["plan", "list"])).stdout).toMatch(/first\s+pending\s+1/)
  })
})

describe("store location", () => {
  it("uses the nearest .concord/ walking up from the current directory, else creates ./.concord", async () => {
    const dir = store()
    const file = writePlan(dir, "p.yaml", `name: here\njobs:\n${job("a")}\n`)
    const env = { CONCORD_STORE: "" }
    const r = await concord(dir, ["plan", "create", file], { env, cwd: dir })
    expect(r.code, r.stderr).toBe(0)
    expect(existsSync(path.join(dir, ".concord", "plans"))).toBe(true)
    const sub = path.join(dir, "deep")
    mkdirSync(path.join(sub, "er"), { recursive: true })
    const s = await concord(dir, ["status", "--json"], { env, cwd: path.join(sub, "er") })
    expect(JSON.parse(s.stdout).name).toBe("here")
    const flag = await concord(dir, ["--store", path.join(dir, "other"), "plan", "list", "--json"], { env, cwd: sub })
    expect(JSON.parse(flag.stdout)).toEqual([])
  })
})

describe("report", () => {
  const PLAN = `name: r\njobs:\n${job("a")}\n${job("b")}\n`

  it("rejects unknown plan, unknown job, bad status and bad progress with exit 2 and writes nothing", async () => {
    const dir = store()
    const id = await createPlan(dir, PLAN)
    const before = (await concord(dir, ["history", id, "--json"])).stdout
    const cases: [string[], RegExp][] = [
      [["report", "working", "--job", "a", "--plan", "nope"], /no plan "nope"/],
      [["report", "working", "--job", "zz", "--plan", id], /has no job "zz"/],
      [["report", "finished", "--job", "a", "--plan", id], /invalid report status "finished"/],
      [["report", "progress", "--progress", "150", "--job", "a", "--plan", id], /invalid progress 150: expected a number from 0 to 100/],
      [["report", "progress", "--progress", "-1", "--job", "a", "--plan", id], /invalid progress -1/],
      [["report", "progress", "--progress", "abc", "--job", "a", "--plan", id], /invalid --progress "abc"/],
      [["report", "working", "--plan", id], /no job given: use --job NAME or set CONCORD_JOB/],
    ]
    for (const [args, msg] of cases) {
      const r = await concord(dir, args, { env: { CONCORD_JOB: "" } })
      expect(r.code, args.join(" ")).toBe(2)
      expect(r.stderr).toMatch(msg)
    }
    expect((await concord(dir, ["history", id, "--json"])).stdout).toBe(before)
  })

  it("takes plan, job and attempt from the environment, records who sent it, and completes the job", async () => {
    const dir = store()
    const id = await createPlan(dir, PLAN)
    const env = { CONCORD_PLAN: id, CONCORD_JOB: "a", CONCORD_ATTEMPT: "1" }
    expect((await concord(dir, ["report", "progress", "half way", "--progress", "50"], { env })).code).toBe(0)
    const r = await concord(dir, ["report", "completed", "all done"], { env })
    expect(r.code, r.stderr).toBe(0)
    const s = await statusJson(dir, id)
    const a = s.jobs.find((j: any) => j.name === "a")
    expect(a.status).toBe("completed")
    expect(a.lastReport).toMatchObject({ status: "completed", message: "all done", by: expect.stringMatching(/^job:a#1@.+:\d+$/) })
    expect(a.progress).toBe(50)
    expect(s.counts).toEqual({ completed: 1, queued: 1 })
    const failed = await concord(dir, ["report", "failed", "tests broke", "--job", "b", "--plan", id])
    expect(failed.code).toBe(0)
    const b = (await statusJson(dir, id)).jobs.find((j: any) => j.name === "b")
    expect([b.status, b.error]).toEqual(["failed", "tests broke"])
  })

  it("history answers who marked a job failed, from which machine, when", async () => {
    const dir = store()
    const id = await createPlan(dir, PLAN)
    await concord(dir, ["report", "failed", "boom", "--job", "b", "--plan", id], { env: { CONCORD_ACTOR: "job:b#1@m2:77" } })
    const h = JSON.parse((await concord(dir, ["history", id, "--json"])).stdout)
    const fail = h.find((e: any) => e.doc === "plan" && /b #1: queued -> failed/.test(e.did))
    expect(fail).toMatchObject({ by: "job:b#1@m2:77" })
    expect(Math.abs(fail.at - Date.now())).toBeLessThan(60_000)
    expect((await concord(dir, ["history", id])).stdout).toMatch(/job:b#1@m2:77\s+job b #1: queued -> failed \(boom\)/)
  })
})

describe("status", () => {
  it("--json has the documented shape; human output names plan, jobs and counts; --graph is Mermaid", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: shape\njobs:\n${job("a")}\n${job("b", ", dependsOn: [a]")}\n`)
    const s = await statusJson(dir, id)
    expect(Object.keys(s)).toEqual(expect.arrayContaining(["id", "name", "mode", "status", "checkpoint", "checkpointContext", "jobs", "counts"]))
    expect(Object.keys(s.jobs[0])).toEqual(expect.arrayContaining(["name", "status", "attempt", "dependsOn", "exitCode", "error", "lastReport"]))
    expect(s.jobs[1].dependsOn).toEqual(["a"])
    const human = (await concord(dir, ["status", id])).stdout
    expect(human).toMatch(/Plan shape/)
    expect(human).toMatch(/^\s+a\s+queued\s+1/m)
    expect(human).toMatch(/2 queued/)
    expect((await concord(dir, ["status", id, "--graph"])).stdout).toMatch(/flowchart LR[\s\S]*j_a --> j_b/)
  })

  it("--watch sees another process's report promptly", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: w\njobs:\n${job("a")}\n`)
    const { child } = spawnConcord(dir, ["status", id, "--watch", "--json"], { timeoutMs: 300_000 })
    const lines: { at: number; s: any }[] = []
    let buf = ""
    child.stdout.on("data", d => {
      buf += d
      let i: number
      while ((i = buf.indexOf("\n")) >= 0) {
        lines.push({ at: Date.now(), s: JSON.parse(buf.slice(0, i)) })
        buf = buf.slice(i + 1)
      }
    })
    try {
      await waitFor(() => lines.length >= 1, 10_000)
      const r = await concord(dir, ["report", "progress", "seen?", "--progress", "10", "--job", "a", "--plan", id])
      const exited = Date.now()
      expect(r.code).toBe(0)
      await waitFor(() => lines.some(l => l.s.jobs[0].lastReport?.message === "seen?"), 5_000)
      const seen = lines.find(l => l.s.jobs[0].lastReport?.message === "seen?")!
      const latency = seen.at - exited
      console.log(`status --watch saw a report ${latency} ms after the writer exited`)
      expect(latency).toBeLessThan(2_000)
    } finally {
      child.kill("SIGINT")
    }
    const code = await new Promise(r => child.on("close", r))
    expect(code).toBe(0)
  })
})

async function waitFor(pred: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (!(await pred())) {
    if (Date.now() > end) throw new Error("timed out waiting")
    await new Promise(r => setTimeout(r, 10))
  }
}

describe("approve", () => {
  it("refuses a mismatched checkpoint; a retry or skip of another job leaves the checkpoint waiting", async () => {
    const dir = store()
    const id = await createPlan(dir, `name: ap\njobs:\n${job("A")}\n${job("B")}\n`)
    const step = path.join(ROOT, "test/fixtures/plan-step.mjs")
    expect((await runNode([step, dir, id, "start", "A"])).code).toBe(0)
    expect((await runNode([step, dir, id, "fail-and-pause", "A", "0"])).code).toBe(0)
    const wrong = await concord(dir, ["approve", id, "--checkpoint", "pre_merge"])
    expect([wrong.code, wrong.stderr]).toEqual([2, expect.stringMatching(/waiting at checkpoint on_error, not pre_merge: refusing to approve/)])
    const skip = await concord(dir, ["approve", id, "--skip", "B"])
    expect(skip.code, skip.stderr).toBe(0)
    expect(skip.stdout).toMatch(/checkpoint on_error \(job A\) left waiting/)
    expect(await statusJson(dir, id)).toMatchObject({ checkpoint: "on_error", approvedBy: null })
    const retry = await concord(dir, ["approve", id, "--retry", "A"])
    expect(retry.stdout).toMatch(/A will run again as attempt 2\napproved checkpoint on_error #1/)
    const s = await statusJson(dir, id)
    expect([s.approvedBy, s.jobs[0].attempt, s.jobs[0].status, s.jobs[1].skipped]).toEqual([expect.stringMatching(/@/), 2, "queued", true])
    const again = await concord(dir, ["approve", id, "--retry", "A"])
    expect([again.code, again.stderr]).toEqual([2, expect.stringMatching(/job "A" attempt 2: cannot go from queued to retry \(only failed, stopped/)])
  })
})

describe("large output", () => {
  it("status --json of a 2,000-job plan arrives whole through a pipe", async () => {
    const dir = store()
    const jobs = Array.from({ length: 2000 }, (_, i) => `  - { name: j${i}, run: "true", prompt: "${"p".repeat(60)}" }`).join("\n")
    const id = await createPlan(dir, `name: big\njobs:\n${jobs}\n`)
    const r = await concord(dir, ["status", id, "--json"])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout.length).toBeGreaterThan(500_000)
    expect(JSON.parse(r.stdout).jobs).toHaveLength(2000)
  })
})
