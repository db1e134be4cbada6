/**
 * `concord report` starts lean (bin/concord.js loads src/cli/lean.ts, not the whole CLI): it must give
 * exactly the full CLI's outcome. Each case runs on two copies of one store, once through `concord` and
 * once through the full CLI alone (test/cli/full-cli.mjs): same exit code, same stdout and stderr, same
 * stored history afterwards (reports and status changes), including the refusals.
 */
import { spawnSync } from "node:child_process"
import { closeSync, cpSync, existsSync, openSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, cleanup, concord, type RunResult, runNode, tempDir } from "../helpers/cli.js"

const FULL = path.join(import.meta.dirname, "full-cli.mjs")
const MODULE_LOG = path.join(import.meta.dirname, "module-log.mjs")
const BUILTINS_LOG = path.join(import.meta.dirname, "builtins-log.cjs")
let dir = ""
let base = ""
let plan = "" // job A failed and retried (attempt 2 queued), job B completed
let canceled = ""

beforeAll(async () => {
  dir = tempDir("concord-lean-")
  base = path.join(dir, "base")
  const file = (name: string, yaml: string) => {
    const f = path.join(dir, name)
    writeFileSync(f, yaml)
    return f
  }
  const create = async (f: string) => {
    const r = await concord(base, ["plan", "create", f], { cwd: dir })
    expect(r.code, r.stderr).toBe(0)
    return r.stdout.trim()
  }
  plan = await create(file("p.yaml", "name: p\njobs:\n  - { name: A, run: 'exit 3' }\n  - { name: B, run: 'true' }\n"))
  const run = await concord(base, ["run", plan], { cwd: dir })
  expect(run.code, run.stderr).toBe(3)
  const retry = await concord(base, ["approve", plan, "--retry", "A"], { cwd: dir })
  expect(retry.code, retry.stderr).toBe(0)
  canceled = await create(file("q.yaml", "name: q\njobs:\n  - { name: C, run: 'true' }\n"))
  const cancel = await concord(base, ["cancel", canceled, "--yes"], { cwd: dir })
  expect(cancel.code, cancel.stderr).toBe(0)
}, 120_000)
afterAll(() => cleanup(dir))

/** What a run printed, with its store's path spelled <store> (the two copies differ only in that). */
const outcome = (r: RunResult, store: string) => ({
  code: r.code,
  stdout: r.stdout.replaceAll(store, "<store>"),
  stderr: r.stderr.replaceAll(store, "<store>"),
})

/** The store's history of a plan without times and Automerge actors (each process writes as its own). */
async function history(store: string, id: string) {
  const r = await concord(store, ["history", id, "--json"], { cwd: dir })
  expect(r.code, r.stderr).toBe(0)
  return JSON.parse(r.stdout).map(({ at: _at, hash: _hash, actor: _actor, ...rest }: Record<string, unknown>) => rest)
}

let n = 0
async function both(args: string[], id = plan) {
  const lean = path.join(dir, `lean-${++n}`)
  const full = path.join(dir, `full-${n}`)
  cpSync(base, lean, { recursive: true })
  cpSync(base, full, { recursive: true })
  const [l, f] = await Promise.all([concord(lean, args, { cwd: dir }), runNode([FULL, ...args], { cwd: dir, env: { CONCORD_STORE: full } })])
  const [hl, hf, h0] = await Promise.all([history(lean, id), history(full, id), history(base, id)])
  return { lean: outcome(l, lean), full: outcome(f, full), stored: { lean: hl, full: hf }, added: hl.length - h0.length }
}

describe("the lean report start-up gives the full CLI's outcome", () => {
  it.each([
    ["a progress report", ["report", "progress", "half way", "--progress", "40", "--job", "B"], 1],
    ["a completed report that moves the job (--json)", ["report", "completed", "done", "--job", "A", "--json"], 2],
    ["a report for an older attempt: stored, the job stays", ["report", "completed", "late", "--job", "A", "--attempt", "1"], 1],
    ["a message with terminal escapes", ["report", "blocked", "\u001b[2Jwiped\u202e", "--job", "B"], 1],
  ])(
    "%s",
    async (_what, args, added) => {
      const r = await both([...args, "--plan", plan])
      expect(r.lean.code, r.lean.stderr).toBe(0)
      expect(r.lean).toEqual(r.full)
      expect(r.stored.lean).toEqual(r.stored.full)
      expect(r.added).toBe(added)
    },
    60_000
  )

  it("a report on a finished plan is stored with the same note, and moves nothing", async () => {
    const r = await both(["report", "completed", "too late", "--job", "C", "--plan", canceled], canceled)
    expect(r.lean.code).toBe(0)
    expect(r.lean.stderr).toContain("stays canceled")
    expect(r.lean).toEqual(r.full)
    expect(r.stored.lean).toEqual(r.stored.full)
    expect(r.added).toBe(1)
  }, 60_000)

  it.each([
    ["an unknown job", ["report", "working", "--job", "Z"], 2, /has no job "Z"/],
    ["an attempt the job never had", ["report", "working", "--job", "A", "--attempt", "7"], 2, /has no attempt 7 \(current is 2\)/],
    ["an unknown plan", ["report", "working", "--job", "A", "--plan", "nope"], 2, /no plan "nope"/],
    ["an invalid status", ["report", "finished", "--job", "A"], 2, /invalid report status "finished"/],
    ["a bad --progress", ["report", "progress", "--progress", "1e1", "--job", "A"], 2, /invalid --progress "1e1"/],
    ["no job", ["report", "working"], 2, /no job given/],
    [
      "an unknown option (the full CLI's usage line)",
      ["report", "working", "--jsno", "--job", "A"],
      2,
      /unknown option '--jsno' \(did you mean --json\?\); see concord report --help/,
    ],
  ])(
    "refused: %s",
    async (_what, args, code, message) => {
      const r = await both(args.includes("--plan") ? args : [...args, "--plan", plan])
      expect(r.lean.code).toBe(code)
      expect(r.lean.stderr).toMatch(message)
      expect(r.lean.stdout).toBe("")
      expect(r.lean).toEqual(r.full)
      expect(r.added).toBe(0)
      expect(r.stored.lean).toEqual(r.stored.full)
    },
    60_000
  )

  it("a store that is not there: exit 1 naming it, nothing created", async () => {
    const gone = path.join(dir, "gone")
    const args = ["--store", gone, "report", "working", "--job", "A", "--plan", plan]
    const [l, f] = await Promise.all([concord(gone, args, { cwd: dir }), runNode([FULL, ...args], { cwd: dir })])
    expect(l.code).toBe(1)
    expect(l.stderr).toContain(gone)
    expect(outcome(l, gone)).toEqual(outcome(f, gone))
    expect(existsSync(gone)).toBe(false)
  }, 60_000)

  it("loads one bundle: neither the full CLI nor Automerge's own modules; a usage error goes to the full CLI", async () => {
    const loaded = async (args: string[]) => {
      const store = path.join(dir, `modules-${++n}`)
      cpSync(base, store, { recursive: true })
      const log = path.join(dir, `modules-${n}.log`)
      writeFileSync(log, "")
      const r = await runNode([`--import=${MODULE_LOG}`, BIN, ...args], { cwd: dir, env: { CONCORD_STORE: store, CONCORD_TEST_MODULE_LOG: log } })
      return {
        r,
        urls: readFileSync(log, "utf8")
          .split("\n")
          .filter(u => u.startsWith("file:")),
      }
    }
    const ok = await loaded(["report", "working", "--job", "B", "--plan", plan])
    expect(ok.r.code, ok.r.stderr).toBe(0)
    // dist/cli/lean.js is a script bin/concord.js compiles itself (vm.Script, for V8's code cache): no
    // module but bin/ is loaded, so neither the full CLI nor Automerge's modules
    const entry = ["/bin/concord.js", "/bin/flags.js"]
    expect(ok.urls.some(u => u.endsWith("/bin/concord.js"))).toBe(true)
    expect(ok.urls.filter(u => !entry.some(e => u.endsWith(e)) && !u.includes("/test/cli/module-log"))).toEqual([])
    const usage = await loaded(["report", "working", "--jsno", "--job", "B", "--plan", plan])
    expect(usage.r.code).toBe(2)
    expect(usage.urls.some(u => u.endsWith("/dist/cli/main.js"))).toBe(true)
  }, 60_000)

  it("with no orchestrator running, loads neither node:net nor Node's ES module loader", () => {
    const store = path.join(dir, `builtins-${++n}`)
    cpSync(base, store, { recursive: true })
    const file = (ext: string) => path.join(dir, `builtins-${n}.${ext}`)
    // stdout and stderr to files: a pipe as either is a socket, which loads node:net itself
    const [out, err] = [openSync(file("out"), "w"), openSync(file("err"), "w")]
    const r = spawnSync(process.execPath, ["-r", BUILTINS_LOG, BIN, "report", "working", "--job", "B", "--plan", plan], {
      cwd: dir,
      env: { ...process.env, CONCORD_STORE: store, CONCORD_TEST_BUILTINS_LOG: file("log") },
      stdio: ["ignore", out, err],
      timeout: 60_000,
    })
    closeSync(out)
    closeSync(err)
    expect(r.status, readFileSync(file("err"), "utf8")).toBe(0)
    expect(readFileSync(file("out"), "utf8")).toMatch(/^reported working for B #1/)
    const builtins = readFileSync(file("log"), "utf8").split("\n")
    // the list is the process's own: the store hashes its chunks with node:crypto
    expect(builtins).toContain("NativeModule crypto")
    // the endpoint client's node:net only once an endpoint is found; bin/ is CommonJS, and Automerge's
    // WebAssembly is found without Node's package-exports resolver; Automerge's random bytes come from
    // node:crypto, not from globalThis.crypto (which would load Node's Web Crypto)
    const unwanted = /^NativeModule (net|internal\/modules\/esm\/(resolve|module_job|translators|load)|internal\/crypto\/webcrypto)$/
    expect(builtins.filter(b => unwanted.test(b))).toEqual([])
  }, 60_000)
})
