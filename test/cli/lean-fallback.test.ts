/**
 * The lean `concord report` bundles its own copy of Automerge's JavaScript, built from one Automerge
 * version; bin/concord.js uses it only when the installed Automerge is that version. Anything else (a
 * package manager that resolved another version beside concord) must fall back to the full CLI, which
 * imports the installed Automerge: the report is made all the same, never with a JavaScript half that
 * does not match the WebAssembly.
 */
import { cpSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanup, concord, ROOT, runNode, tempDir, writePlan } from "../helpers/cli.js"

const MODULE_LOG = path.join(import.meta.dirname, "module-log.mjs")
let dir = ""
let install = ""

beforeAll(() => {
  dir = tempDir("concord-lean-fallback-")
  // a copy of the installed package whose lean bundle says it was built from another Automerge version
  install = path.join(dir, "install")
  cpSync(path.join(ROOT, "bin"), path.join(install, "bin"), { recursive: true })
  cpSync(path.join(ROOT, "dist", "cli"), path.join(install, "dist", "cli"), { recursive: true })
  symlinkSync(path.join(ROOT, "node_modules"), path.join(install, "node_modules"), "dir")
  writeFileSync(path.join(install, "package.json"), readFileSync(path.join(ROOT, "package.json")))
  const lean = path.join(install, "dist", "cli", "lean.js")
  const src = readFileSync(lean, "utf8")
  const other = src.replace(/module\.exports\.automergeVersion = "[^"]*";/, 'module.exports.automergeVersion = "0.0.0-not-installed";')
  expect(other).not.toBe(src)
  writeFileSync(lean, other)
})
afterAll(() => cleanup(dir))

describe("lean report with a different Automerge installed", () => {
  it("falls back to the full CLI: the report is stored, the outcome is the usual one", async () => {
    const store = path.join(dir, "store")
    const created = await concord(store, ["plan", "create", writePlan(dir, "p.yaml", "name: p\njobs:\n  - { name: A, run: 'true' }\n")], { cwd: dir })
    expect(created.code, created.stderr).toBe(0)
    const plan = created.stdout.trim()
    const log = path.join(dir, "modules.log")
    writeFileSync(log, "")
    const r = await runNode(
      [
        `--import=${MODULE_LOG}`,
        path.join(install, "bin", "concord.js"),
        "report",
        "progress",
        "through the full CLI",
        "--progress",
        "40",
        "--job",
        "A",
        "--plan",
        plan,
      ],
      {
        cwd: dir,
        env: { CONCORD_STORE: store, CONCORD_TEST_MODULE_LOG: log },
      }
    )
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain("reported progress 40% for A #1")
    const urls = readFileSync(log, "utf8").split("\n")
    // (dist/cli/lean.js was looked at, then not used: bin/concord.js compiles it itself, no module load)
    expect(urls.some(u => u.endsWith("/install/dist/cli/main.js"))).toBe(true)
    const st = await concord(store, ["status", plan, "--json"], { cwd: dir })
    expect(st.code, st.stderr).toBe(0)
    const job = JSON.parse(st.stdout).jobs.find((j: { name: string }) => j.name === "A")
    expect(job.lastReport).toMatchObject({ status: "progress", message: "through the full CLI", progress: 40 })
  }, 60_000)
})
