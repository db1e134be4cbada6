/** The CLI as a thin adapter over src/ops: strict flags, damaged documents, finished plans, --json results. */
import { readdirSync, rmSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, concord, tempDir } from "../helpers/cli.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

let cwd = ""
const run = (store: string, args: string[]) => concord(store, args, { cwd })

function setup(yaml = "name: p\njobs:\n  - { name: A, run: 'true' }\n  - { name: B, run: 'true' }\n") {
  const dir = tempDir()
  dirs.push(dir)
  const store = path.join(dir, "store")
  cwd = dir
  writeFileSync(path.join(dir, "p.yaml"), yaml)
  const r = run(store, ["plan", "create", path.join(dir, "p.yaml")])
  expect(r.code, r.stderr).toBe(0)
  return { dir, store, id: r.stdout.trim() }
}

describe("CLI over the plan operations", () => {
  it("numeric flags are parsed strictly: 0x10, 1e1, 5% and '' are refused with exit 2 and nothing written", () => {
    const { store } = setup()
    for (const [flag, v] of [["--progress", "0x10"], ["--progress", "1e1"], ["--progress", "5%"], ["--progress", ""], ["--attempt", "1.5"], ["--attempt", "0x1"]]) {
      const r = run(store, ["report", "progress", "m", "--job", "A", flag, v])
      expect(r.code, `${flag} ${v}`).toBe(2)
      expect(r.stderr).toContain(`invalid ${flag} "${v}"`)
    }
    const h = run(store, ["history", "--json"])
    expect(JSON.parse(h.stdout).some((e: { did: string }) => e.did.startsWith("report"))).toBe(false)
    const ok = run(store, ["report", "progress", "m", "--job", "A", "--progress", "12.5", "--json"])
    expect(ok.code, ok.stderr).toBe(0)
    expect(JSON.parse(ok.stdout)).toMatchObject({ job: "A", attempt: 1, progress: 12.5, status: "progress" })
  })

  it("a plan whose document is gone or damaged is an error (exit 1) that says so, not a usage error", () => {
    const { store, id } = setup()
    const docDir = path.join(store, id.slice(0, 2), id.slice(2))
    for (const t of readdirSync(docDir)) rmSync(path.join(docDir, t), { recursive: true, force: true })
    const r = run(store, ["status", id])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/cannot be read: its document .* is damaged or incomplete/)
  })

  it("approve and cancel give --json results; approve on a canceled plan is refused and status shows no checkpoint hints", () => {
    const { store } = setup("name: p\njobs:\n  - { name: A, run: 'exit 3' }\n  - { name: B, run: 'true' }\n")
    const r0 = run(store, ["run"])
    expect(r0.code, r0.stderr).toBe(3)
    const c = run(store, ["cancel", "--json"])
    expect(c.code, c.stderr).toBe(0)
    expect(JSON.parse(c.stdout)).toMatchObject({ plan: "p" })
    const a = run(store, ["approve", "--retry", "A"])
    expect(a.code).toBe(2)
    expect(a.stderr).toContain('plan "p" is canceled: a finished plan cannot be approved, retried or skipped')
    const s = run(store, ["status"])
    expect(s.stdout).not.toMatch(/on_error|retry:|concord approve/)
    expect(JSON.parse(run(store, ["status", "--json"]).stdout)).toMatchObject({ status: "canceled", checkpoint: null, store })
  })
})
