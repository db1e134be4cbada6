/**
 * `concord run` on git plans, end to end: real job processes in real worktrees of a real repository,
 * the orchestrator SIGKILLed in the middle of a merge and restarted, supervisor gates, `concord cleanup`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { BIN, cleanup, type RunResult, statusJson, tempDir } from "../../helpers/cli.js"
import { makeRepo, merges, sh } from "./gitrepo.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

function world() {
  const dir = tempDir("concord-gitrun-")
  dirs.push(dir)
  const repo = makeRepo(path.join(dir, "repo"))
  const store = path.join(dir, "store")
  return { dir, repo, store }
}

/** A job that writes one file in its worktree and reports completed. */
const writes = (file: string, text: string) => `printf '%s\\n' '${text}' > ${file} && concord report completed 'wrote ${file}'`

function create(store: string, dir: string, yaml: string): string {
  const file = path.join(dir, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(file, yaml)
  const r = concord(store, ["plan", "create", file, "--json"], { cwd: dir })
  if (r.code !== 0) throw new Error(`plan create failed: ${r.stderr}`)
  return JSON.parse(r.stdout).id
}

function startRun(store: string, args: string[]): { child: ChildProcess; done: Promise<RunResult> } {
  const child = spawn(process.execPath, [BIN, "run", ...args], { cwd: store, env: { ...process.env, CONCORD_STORE: store } })
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", d => (stdout += d))
  child.stderr!.on("data", d => (stderr += d))
  return { child, done: new Promise(r => child.on("close", (code, signal) => r({ code, signal, stdout, stderr }))) }
}

async function waitFor(what: string, fn: () => boolean, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

/** concord as an OS process, with a bound generous enough for a loaded 2-core machine. */
function concord(store: string, args: string[], opts: { cwd?: string } = {}): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? store, env: { ...process.env, CONCORD_STORE: store }, encoding: "utf8", timeout: 400_000 })
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr }
}

const statuses = (s: any) => Object.fromEntries(s.jobs.map((j: any) => [j.name, j.status]))

describe("concord run on a git plan", () => {
  it("runs each job in its worktree, merges in dependency order, prints the PR command, removes the worktrees", async () => {
    const w = world()
    const id = create(w.store, w.dir, `
name: three agents
repo: ${w.repo}
graceMs: 0
test: test -f README.md
jobs:
  - { name: a, run: "${writes("a.txt", "from a")}" }
  - { name: b, run: "test -f a.txt && ${writes("b.txt", "from b")}", dependsOn: [a] }
  - { name: c, run: "test -f b.txt && ${writes("c.txt", "from c")}", dependsOn: [b] }
`)
    const r = concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const s = statusJson(w.store, id)
    expect(statuses(s)).toEqual({ a: "merged", b: "merged", c: "merged" })
    const INT = "concord/three-agents"
    expect(merges(w.repo, INT)).toEqual(["a", "b", "c"].map(j => `concord: merge ${j} (attempt 1) into ${INT}`))
    expect(r.stdout).toContain("pull request not opened (the repository has no remote named origin); open it with:")
    expect(r.stdout).toMatch(new RegExp(`git push --set-upstream origin ${INT} && gh pr create --base main --head ${INT} --title`))
    expect(existsSync(path.join(w.store, "worktrees", id))).toBe(false)
    expect(sh(w.repo, "worktree", "list").split("\n")).toHaveLength(1)
    expect(sh(w.repo, "status", "--porcelain")).toBe("")
  }, 600_000)

  it("SIGKILLed while a merge is being tested: the restarted run finishes the queue, nothing merged twice, the branch only at tested commits", async () => {
    const w = world()
    const log = path.join(w.dir, "tests.log")
    const started = path.join(w.dir, "test-started")
    // The first test run announces itself and hangs; later ones pass at once.
    const test = `echo "$(git rev-parse HEAD)" >> ${log}; if [ ! -f ${started} ]; then touch ${started}; sleep 20; fi`
    const id = create(w.store, w.dir, `
name: crash
repo: ${w.repo}
graceMs: 0
test: '${test}'
jobs:
  - { name: a, run: "${writes("a.txt", "a")}" }
  - { name: b, run: "${writes("b.txt", "b")}" }
  - { name: c, run: "${writes("c.txt", "c")}", dependsOn: [a] }
`)
    const first = startRun(w.store, [id])
    await waitFor("the first test to start", () => existsSync(started))
    first.child.kill("SIGKILL")
    const r1 = await first.done
    expect(r1.signal).toBe("SIGKILL")
    const mid = statusJson(w.store, id)
    expect(Object.values(statuses(mid))).toContain("merging")
    const INT = "concord/crash"
    expect(merges(w.repo, INT)).toEqual([]) // never half-merged: the branch did not move
    const r2 = concord(w.store, ["run", id])
    expect(r2.code, r2.stdout + r2.stderr).toBe(0)
    expect(statuses(statusJson(w.store, id))).toEqual({ a: "merged", b: "merged", c: "merged" })
    const subjects = merges(w.repo, INT)
    expect(subjects).toHaveLength(3)
    expect(new Set(subjects).size).toBe(3)
    // Every commit the branch went through was tested (the reflog lists each position).
    const tested = new Set(readFileSync(log, "utf8").trim().split("\n"))
    const positions = sh(w.repo, "reflog", "--format=%H", INT).split("\n").slice(0, -1) // the last is the creation at base
    expect(positions).toHaveLength(3)
    for (const p of positions) expect(tested.has(p)).toBe(true)
  }, 600_000)

  it("supervisor mode: pre_merge gates entry to the queue, pre_pr gates the pull request", async () => {
    const w = world()
    const id = create(w.store, w.dir, `
name: gated
mode: supervisor
repo: ${w.repo}
graceMs: 0
jobs:
  - { name: a, run: "${writes("a.txt", "a")}" }
`)
    let r = concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    let s = statusJson(w.store, id)
    expect(s.checkpoint).toBe("pre_merge")
    expect(statuses(s)).toEqual({ a: "completed" })
    expect(merges(w.repo, "concord/gated")).toEqual([])
    expect(concord(w.store, ["approve", id]).code).toBe(0)
    r = concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    s = statusJson(w.store, id)
    expect(s.checkpoint).toBe("pre_pr")
    expect(statuses(s)).toEqual({ a: "merged" })
    expect(merges(w.repo, "concord/gated")).toHaveLength(1)
    expect(r.stdout).not.toContain("gh pr create")
    expect(concord(w.store, ["approve", id]).code).toBe(0)
    r = concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toContain("gh pr create --base main --head concord/gated")
  }, 600_000)

  it("a failed plan keeps its worktrees; concord cleanup removes them (and --branches the job branches)", async () => {
    const w = world()
    const id = create(w.store, w.dir, `
name: broken
repo: ${w.repo}
graceMs: 0
jobs:
  - { name: ok, run: "${writes("ok.txt", "ok")}" }
  - { name: bad, run: "echo half > half.txt; exit 4" }
`)
    const r = concord(w.store, ["run", id])
    expect(r.code).toBe(3) // paused at on_error
    const kept = readdirSync(path.join(w.store, "worktrees", id)).sort()
    expect(kept).toContain("bad.1")
    expect(readFileSync(path.join(w.store, "worktrees", id, "bad.1", "half.txt"), "utf8")).toBe("half\n")
    const c = concord(w.store, ["cleanup", id, "--branches"])
    expect(c.code, c.stderr).toBe(0)
    expect(c.stdout).toContain(`removed ${kept.length} worktrees of plan broken`)
    expect(existsSync(path.join(w.store, "worktrees", id))).toBe(false)
    expect(sh(w.repo, "branch", "--list", "concord/broken--*")).toBe("")
    expect(sh(w.repo, "branch", "--list", "concord/broken")).toContain("concord/broken")
    // A plan without repo has nothing to clean up: usage error.
    const plain = create(w.store, w.dir, `name: plain\njobs: [{ name: x, run: "true" }]\n`)
    const bad = concord(w.store, ["cleanup", plain])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain(`plan "plain" has no repo`)
  }, 600_000)
})

describe("concord run: a merge conflict", () => {
  it("pauses at on_error naming the file while the queue merges the rest; a retry starts from the new head and merges", async () => {
    const w = world()
    const id = create(w.store, w.dir, `
name: clash
repo: ${w.repo}
graceMs: 0
jobs:
  - { name: x, run: "${writes("README.md", "x was here")}" }
  - { name: y, run: "${writes("README.md", "y was here")}" }
  - { name: z, run: "${writes("z.txt", "z")}" }
`)
    let r = concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    let s = statusJson(w.store, id)
    // Whichever of x and y reached the queue first merged; the other conflicts. z merged regardless.
    const st = statuses(s)
    const loser = st.x === "conflict" ? "x" : "y"
    const winner = loser === "x" ? "y" : "x"
    expect(st).toEqual({ [winner]: "merged", [loser]: "conflict", z: "merged" })
    expect(s.checkpoint).toBe("on_error")
    expect(s.checkpointContext).toMatchObject({ jobName: loser, failureKind: "merge_conflict", message: "merge conflict in README.md" })
    expect(r.stdout).toContain("merge conflict in README.md")
    expect(concord(w.store, ["approve", id, "--retry", loser]).code).toBe(0)
    r = concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    s = statusJson(w.store, id)
    expect(statuses(s)).toEqual({ x: "merged", y: "merged", z: "merged" })
    expect(sh(w.repo, "show", "concord/clash:README.md")).toBe(`${loser} was here`)
    const m = merges(w.repo, "concord/clash")
    expect(m).toHaveLength(3)
    expect(m[2]).toBe(`concord: merge ${loser} (attempt 2) into concord/clash`)
  }, 600_000)
})
