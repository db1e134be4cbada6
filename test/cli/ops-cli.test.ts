/** The CLI as a thin adapter over src/ops: strict flags, damaged documents, finished plans, --json results. */
import { readdirSync, rmSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, concord, tempDir } from "../helpers/cli.js"
import { spawnConcord } from "../helpers/processes.mjs"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

let cwd = ""
const run = (store: string, args: string[]) => concord(store, args, { cwd })

async function setup(yaml = "name: p\njobs:\n  - { name: A, run: 'true' }\n  - { name: B, run: 'true' }\n") {
  const dir = tempDir()
  dirs.push(dir)
  const store = path.join(dir, "store")
  cwd = dir
  writeFileSync(path.join(dir, "p.yaml"), yaml)
  const r = await run(store, ["plan", "create", path.join(dir, "p.yaml")])
  expect(r.code, r.stderr).toBe(0)
  return { dir, store, id: r.stdout.trim() }
}

describe("CLI over the plan operations", () => {
  it("numeric flags are parsed strictly: 0x10, 1e1, 5% and '' are refused with exit 2 and nothing written", async () => {
    const { store } = await setup()
    for (const [flag, v] of [
      ["--progress", "0x10"],
      ["--progress", "1e1"],
      ["--progress", "5%"],
      ["--progress", ""],
      ["--attempt", "1.5"],
      ["--attempt", "0x1"],
    ]) {
      const r = await run(store, ["report", "progress", "m", "--job", "A", flag, v])
      expect(r.code, `${flag} ${v}`).toBe(2)
      expect(r.stderr).toContain(`invalid ${flag} "${v}"`)
    }
    const h = await run(store, ["history", "--json"])
    expect(JSON.parse(h.stdout).some((e: { did: string }) => e.did.startsWith("report"))).toBe(false)
    const ok = await run(store, ["report", "progress", "m", "--job", "A", "--progress", "12.5", "--json"])
    expect(ok.code, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ job: "A", attempt: 1, progress: 12.5, status: "progress" })
  })

  it("a plan whose document is gone or damaged is an error (exit 1) that says so, not a usage error", async () => {
    const { store, id } = await setup()
    const docDir = path.join(store, id.slice(0, 2), id.slice(2))
    for (const t of readdirSync(docDir)) rmSync(path.join(docDir, t), { recursive: true, force: true })
    const r = await run(store, ["status", id])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot be read: its document .* is damaged or incomplete/)
  })

  it("approve and cancel give --json results; approve on a canceled plan is refused and status shows no checkpoint hints", async () => {
    const { store } = await setup("name: p\njobs:\n  - { name: A, run: 'exit 3' }\n  - { name: B, run: 'true' }\n")
    const r0 = await run(store, ["run"])
    expect(r0.code, r0.stderr).toBe(3)
    const c = await run(store, ["cancel", "--json"])
    expect(c.code, c.stderr).toBe(0)
    expect(JSON.parse(c.stdout)).toMatchObject({ plan: "p" })
    const a = await run(store, ["approve", "--retry", "A"])
    expect(a.code).toBe(2)
    expect(a.stderr).toContain('plan "p" is canceled: a finished plan cannot be approved, retried or skipped')
    const s = await run(store, ["status"])
    expect(s.stdout).not.toMatch(/on_error|retry:|concord approve/)
    expect(JSON.parse((await run(store, ["status", "--json"])).stdout)).toMatchObject({ status: "canceled", checkpoint: null, store })
  })
})

describe("CLI conventions over the operations", () => {
  it("history shows report messages and takes --job, --since, --limit; bad values are refused", async () => {
    const { store } = await setup()
    expect((await run(store, ["report", "working", "first message", "--job", "A"])).code).toBe(0)
    expect((await run(store, ["report", "completed", "all done", "--job", "B"])).code).toBe(0)
    const all = JSON.parse((await run(store, ["history", "--json"])).stdout)
    expect(all.find((e: any) => e.doc === "reports:A")).toMatchObject({ did: "job A #1: report working: first message", message: "first message" })
    const onlyB = JSON.parse((await run(store, ["history", "--job", "B", "--json"])).stdout)
    expect(onlyB.length).toBeGreaterThanOrEqual(2)
    expect(onlyB.every((e: any) => e.doc === "reports:B" || /job B\b/.test(e.did))).toBe(true)
    expect(onlyB.some((e: any) => /queued -> completed/.test(e.did))).toBe(true)
    const last = JSON.parse((await run(store, ["history", "--limit", "1", "--json"])).stdout)
    expect(last).toEqual([all[all.length - 1]])
    expect(JSON.parse((await run(store, ["history", "--since", "1h", "--json"])).stdout).length).toBe(all.length)
    expect(JSON.parse((await run(store, ["history", "--since", new Date(Date.now() + 60_000).toISOString(), "--json"])).stdout)).toEqual([])
    expect((await run(store, ["history", "--since", "yesterday"])).code).toBe(2)
    expect((await run(store, ["history", "--job", "Z"])).stderr).toContain('has no job "Z"')
    expect((await run(store, ["history", "--limit", "0"])).code).toBe(2)
  })

  it("history --follow prints changes made by other processes as they happen", async () => {
    const { store } = await setup()
    const { child } = spawnConcord(store, ["history", "--follow", "--json"], { cwd, timeoutMs: 300_000 })
    let outText = ""
    child.stdout.on("data", d => (outText += d))
    const until = async (f: () => boolean, ms: number) => {
      const end = Date.now() + ms
      while (!f() && Date.now() < end) await new Promise(r => setTimeout(r, 50))
      return f()
    }
    try {
      expect(await until(() => outText.includes("create plan"), 30_000)).toBe(true)
      expect((await run(store, ["report", "progress", "followed", "--job", "A", "--progress", "5"])).code).toBe(0)
      expect(await until(() => outText.includes("followed"), 30_000)).toBe(true)
    } finally {
      child.kill("SIGINT")
    }
    expect(await new Promise(r => child.on("close", r))).toBe(0)
  })

  it("status --watch --exit-status exits with run's codes when the plan ends; --exit-status alone is refused", async () => {
    const { store } = await setup("name: p\njobs:\n  - { name: A, run: 'exit 127' }\n")
    expect((await run(store, ["status", "--exit-status"])).code).toBe(2)
    const { concord } = await import("../helpers/cli.js")
    const watching = concord(store, ["status", "--watch", "--exit-status", "--json"], { cwd })
    const r0 = await run(store, ["run"])
    expect(r0.code).toBe(3)
    const w = await watching
    expect(w.code).toBe(3)
    expect(w.stderr).toContain("waiting at checkpoint on_error")
    // exit 127 is explained
    const s = JSON.parse((await run(store, ["status", "--json"])).stdout)
    expect(s.jobs[0].exitMeaning).toMatch(/command not found/)
    expect((await run(store, ["status"])).stdout).toMatch(/command not found/)
    expect((await run(store, ["cancel", "-y"])).code).toBe(0)
    const w2 = await concord(store, ["status", "--watch", "--exit-status"], { cwd })
    expect(w2.code).toBe(1)
  })

  it("plan archive hides a plan, plan rm deletes it (asks, or needs --yes without a terminal); cancel asks when several plans exist", async () => {
    const { store, id, dir } = await setup()
    writeFileSync(path.join(dir, "q.yaml"), "name: q\njobs:\n  - { name: A, run: 'true' }\n")
    const q = (await run(store, ["plan", "create", path.join(dir, "q.yaml")])).stdout.trim()
    // no plan named, two plans, no terminal: refused, nothing canceled
    const c = await run(store, ["cancel"])
    expect(c.code).toBe(2)
    expect(c.stderr).toMatch(/cancel plan "q" .* the newest of 2 plans: not confirmed .* name the plan, or pass --yes/)
    expect(JSON.parse((await run(store, ["status", q, "--json"])).stdout).status).toBe("pending")
    expect((await run(store, ["plan", "archive", q, "--json"])).code).toBe(0)
    expect(JSON.parse((await run(store, ["plan", "list", "--json"])).stdout).map((p: any) => p.id)).toEqual([id])
    expect(JSON.parse((await run(store, ["plan", "list", "--all", "--json"])).stdout).map((p: any) => [p.id, p.archived])).toEqual([
      [id, false],
      [q, true],
    ])
    // the default plan is now the unarchived one, and cancel needs no confirmation with one open plan
    expect(JSON.parse((await run(store, ["status", "--json"])).stdout).id).toBe(id)
    expect((await run(store, ["report", "working", "x", "--job", "A", "--plan", q])).code).toBe(0)
    const rm = await run(store, ["plan", "rm", q])
    expect(rm.code).toBe(2)
    expect(rm.stderr).toContain("pass --yes")
    expect((await run(store, ["plan", "rm", q, "--yes"])).code).toBe(0)
    expect(JSON.parse((await run(store, ["plan", "list", "--all", "--json"])).stdout).map((p: any) => p.id)).toEqual([id])
    expect((await run(store, ["status", q])).code).toBe(2)
    expect(
      readdirSync(store)
        .filter(d => d.length === 2)
        .flatMap(d => readdirSync(path.join(store, d)).map(r => d + r))
    ).not.toContain(q)
  })
})

describe("status --at", () => {
  it("shows the plan as it was at a change or a time; refuses --watch and bad values", async () => {
    const { store } = await setup()
    expect((await run(store, ["report", "completed", "A done", "--job", "A"])).code).toBe(0)
    const h = JSON.parse((await run(store, ["history", "--json"])).stdout)
    const created = h[0]
    const before = JSON.parse((await run(store, ["status", "--at", created.hash, "--json"])).stdout)
    expect(before.jobs.find((j: any) => j.name === "A")).toMatchObject({ status: "queued", lastReport: null })
    expect(before.included).toBe(1)
    const now = JSON.parse((await run(store, ["status", "--at", "0s", "--json"])).stdout)
    expect(now.jobs.find((j: any) => j.name === "A").status).toBe("completed")
    const human = await run(store, ["status", "--at", created.hash])
    expect(human.stdout).toMatch(/\(the plan as of .*: 1 of \d+ changes; last: .*create plan/)
    expect((await run(store, ["status", "--at", created.hash, "--watch"])).code).toBe(2)
    expect((await run(store, ["status", "--at", "last tuesday"])).code).toBe(2)
  })
})

describe("concord logs", () => {
  it("prints a job's output (last N lines, escapes neutralised); status shows a failed job's last lines", async () => {
    const { store } = await setup("name: p\njobs:\n  - { name: A, run: 'printf \"one\\\\ntwo\\\\n\\\\033[2Jthree\\\\n\"; exit 3' }\n")
    expect((await run(store, ["run"])).code).toBe(3)
    const all = await run(store, ["logs", "A"])
    expect(all.code, all.stderr).toBe(0)
    expect(all.stdout).toBe("one\ntwo\n\\x1b[2Jthree\n")
    expect((await run(store, ["logs", "p", "A", "-n", "1"])).stdout).toBe("\\x1b[2Jthree\n")
    expect(JSON.parse((await run(store, ["logs", "A", "--json"])).stdout)).toMatchObject({ job: "A", attempt: 1, lines: ["one", "two", "\x1b[2Jthree"] })
    expect((await run(store, ["logs", "Z"])).code).toBe(2)
    const s = await run(store, ["status"])
    expect(s.stdout).toContain("last lines of A's output:")
    expect(s.stdout).not.toContain("\x1b[2J")
  })
})
