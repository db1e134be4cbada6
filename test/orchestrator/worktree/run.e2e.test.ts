/**
 * `concord run` on git plans, end to end: real job processes in real worktrees of a real repository,
 * the orchestrator SIGKILLed in the middle of a merge and restarted, supervisor gates, `concord cleanup`.
 */
import type { ChildProcess } from "node:child_process"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { cleanup, type RunResult, statusJson, tempDir } from "../../helpers/cli.js"
import { makeRepo, merges, sh } from "./gitrepo.js"
import { runConcord, spawnConcord } from "../../helpers/processes.mjs"

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

async function create(store: string, dir: string, yaml: string): Promise<string> {
  const file = path.join(dir, `plan-${Math.random().toString(36).slice(2)}.yaml`)
  writeFileSync(file, yaml)
  const r = await concord(store, ["plan", "create", file, "--json"], { cwd: dir })
  if (r.code !== 0) throw new Error(`plan create failed: ${r.stderr}`)
  return JSON.parse(r.stdout).id
}

/** `concord run ARGS` as a child process (killed with the test process if it is still running). */
function startRun(store: string, args: string[]): { child: ChildProcess; done: Promise<RunResult> } {
  return spawnConcord(store, ["run", ...args], { timeoutMs: 600_000 })
}

async function waitFor(what: string, fn: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

/** concord as an OS process, with a bound generous enough for a loaded 2-core machine. */
function concord(store: string, args: string[], opts: { cwd?: string } = {}): Promise<RunResult> {
  return runConcord(store, args, { ...opts, timeoutMs: 400_000 })
}

const statuses = (s: any) => Object.fromEntries(s.jobs.map((j: any) => [j.name, j.status]))

describe("concord run on a git plan", () => {
  it("runs each job in its worktree, merges in dependency order, prints the PR command, removes the worktrees", async () => {
    const w = world()
    const id = await create(
      w.store,
      w.dir,
      `
name: three agents
repo: ${w.repo}
graceMs: 0
test: test -f README.md
jobs:
  - { name: a, run: "${writes("a.txt", "from a")}" }
  - { name: b, run: "test -f a.txt && ${writes("b.txt", "from b")}", dependsOn: [a] }
  - { name: c, run: "test -f b.txt && ${writes("c.txt", "from c")}", dependsOn: [b] }
`
    )
    const r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    const s = await statusJson(w.store, id)
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
    const id = await create(
      w.store,
      w.dir,
      `
name: crash
repo: ${w.repo}
graceMs: 0
test: '${test}'
jobs:
  - { name: a, run: "${writes("a.txt", "a")}" }
  - { name: b, run: "${writes("b.txt", "b")}" }
  - { name: c, run: "${writes("c.txt", "c")}", dependsOn: [a] }
`
    )
    const first = startRun(w.store, [id])
    await waitFor("the first test to start", () => existsSync(started))
    first.child.kill("SIGKILL")
    const r1 = await first.done
    expect(r1.signal).toBe("SIGKILL")
    const mid = await statusJson(w.store, id)
    expect(Object.values(statuses(mid))).toContain("merging")
    const INT = "concord/crash"
    expect(merges(w.repo, INT)).toEqual([]) // never half-merged: the branch did not move
    const r2 = await concord(w.store, ["run", id])
    expect(r2.code, r2.stdout + r2.stderr).toBe(0)
    expect(statuses(await statusJson(w.store, id))).toEqual({ a: "merged", b: "merged", c: "merged" })
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
    const id = await create(
      w.store,
      w.dir,
      `
name: gated
mode: supervisor
repo: ${w.repo}
graceMs: 0
jobs:
  - { name: a, run: "${writes("a.txt", "a")}" }
`
    )
    let r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    let s = await statusJson(w.store, id)
    expect(s.checkpoint).toBe("pre_merge")
    expect(statuses(s)).toEqual({ a: "completed" })
    expect(merges(w.repo, "concord/gated")).toEqual([])
    expect((await concord(w.store, ["approve", id])).code).toBe(0)
    r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    s = await statusJson(w.store, id)
    expect(s.checkpoint).toBe("pre_pr")
    expect(statuses(s)).toEqual({ a: "merged" })
    expect(merges(w.repo, "concord/gated")).toHaveLength(1)
    expect(r.stdout).not.toContain("gh pr create")
    expect((await concord(w.store, ["approve", id])).code).toBe(0)
    r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toContain("gh pr create --base main --head concord/gated")
  }, 600_000)

  it("a failed plan keeps its worktrees; concord cleanup removes them (and --branches the job branches)", async () => {
    const w = world()
    const id = await create(
      w.store,
      w.dir,
      `
name: broken
repo: ${w.repo}
graceMs: 0
jobs:
  - { name: ok, run: "${writes("ok.txt", "ok")}" }
  - { name: bad, run: "echo half > half.txt; exit 4" }
`
    )
    const r = await concord(w.store, ["run", id])
    expect(r.code).toBe(3) // paused at on_error
    const kept = readdirSync(path.join(w.store, "worktrees", id)).sort()
    expect(kept).toContain("bad.1")
    expect(readFileSync(path.join(w.store, "worktrees", id, "bad.1", "half.txt"), "utf8")).toBe("half\n")
    const c = await concord(w.store, ["cleanup", id, "--branches"])
    expect(c.code, c.stderr).toBe(0)
    expect(c.stdout).toContain(`removed ${kept.length} worktrees of plan broken`)
    expect(existsSync(path.join(w.store, "worktrees", id))).toBe(false)
    expect(sh(w.repo, "branch", "--list", "concord/broken--*")).toBe("")
    expect(sh(w.repo, "branch", "--list", "concord/broken")).toContain("concord/broken")
    // A plan without repo has nothing to clean up: usage error.
    const plain = await create(w.store, w.dir, `name: plain\njobs: [{ name: x, run: "true" }]\n`)
    const bad = await concord(w.store, ["cleanup", plain])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain(`plan "plain" has no repo`)
  }, 600_000)
})

describe("concord run: a merge conflict", () => {
  it("pauses at on_error naming the file while the queue merges the rest; a retry starts from the new head and merges", async () => {
    const w = world()
    const id = await create(
      w.store,
      w.dir,
      `
name: clash
repo: ${w.repo}
graceMs: 0
jobs:
  - { name: x, run: "${writes("README.md", "x was here")}" }
  - { name: y, run: "${writes("README.md", "y was here")}" }
  - { name: z, run: "${writes("z.txt", "z")}" }
`
    )
    let r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    let s = await statusJson(w.store, id)
    // Whichever of x and y reached the queue first merged; the other conflicts. z merged regardless.
    const st = statuses(s)
    const loser = st.x === "conflict" ? "x" : "y"
    const winner = loser === "x" ? "y" : "x"
    expect(st).toEqual({ [winner]: "merged", [loser]: "conflict", z: "merged" })
    expect(s.checkpoint).toBe("on_error")
    expect(s.checkpointContext).toMatchObject({ jobName: loser, failureKind: "merge_conflict", message: "merge conflict in README.md" })
    expect(r.stdout).toContain("merge conflict in README.md")
    expect((await concord(w.store, ["approve", id, "--retry", loser])).code).toBe(0)
    r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    s = await statusJson(w.store, id)
    expect(statuses(s)).toEqual({ x: "merged", y: "merged", z: "merged" })
    expect(sh(w.repo, "show", "concord/clash:README.md")).toBe(`${loser} was here`)
    const m = merges(w.repo, "concord/clash")
    expect(m).toHaveLength(3)
    expect(m[2]).toBe(`concord: merge ${loser} (attempt 2) into concord/clash`)
  }, 600_000)
})
