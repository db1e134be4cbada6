/**
 * The merge queue on real git repositories in temp dirs, driven step by step (GitPlan is what the runner
 * calls each round): jobs' work is written into their worktrees as an agent would, statuses are recorded
 * as the runner would, and the queue merges, tests and moves the integration branch.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { enqueueMerge, entryKey, queueBusy, recordMergeResult, startMerge } from "../../../src/doc/merge.js"
import { getJob, readPlan, setJobStatus } from "../../../src/doc/plan.js"
import { validatePlanSpec } from "../../../src/doc/spec.js"
import { resolveCommit, scratchMerge } from "../../../src/orchestrator/worktree/git.js"
import { scratchWorktree } from "../../../src/orchestrator/worktree/policy.js"
import { GitPlan } from "../../../src/orchestrator/worktree/queue.js"
import { PlanStore } from "../../../src/sync/store/PlanStore.js"
import { cleanup, tempDir } from "../../helpers/cli.js"
import { addOrigin, fakeGh, makeRepo, merges, sh } from "./gitrepo.js"

const dirs: string[] = []
afterAll(() => dirs.forEach(cleanup))

let t = 1_800_000_000_000
const ctx = () => ({ by: "orchestrator@test:1", now: ++t })

async function setup(planExtra: Record<string, unknown>, jobs: Record<string, unknown>[], repoFiles?: Record<string, string>) {
  const dir = tempDir("concord-queue-")
  dirs.push(dir)
  const repo = makeRepo(path.join(dir, "repo"), repoFiles)
  const store = new PlanStore(path.join(dir, "store"))
  const spec = validatePlanSpec({ name: "feature x", repo, ...planExtra, jobs: jobs.map(j => ({ run: "true", ...j })) })
  const { id } = await store.createPlan(spec, dir, ctx())
  const events: string[] = []
  const gp = new GitPlan(store, id, ctx, e => events.push(e))
  const view = async () => readPlan(await store.loadPlan(id))
  await gp.prepare(await view())
  /** What the runner and an agent do for one attempt: worktree, running, edit files, completed. */
  async function agent(job: string, files: Record<string, string>, opts: { commit?: boolean } = {}) {
    const v = await view()
    const attempt = getJob(v, job).attempt
    const p = await gp.prepareAttempt(v, job, attempt)
    await store.updatePlan(id, d => setJobStatus(d, job, "running", { attempt, ...p.fields }, ctx()))
    for (const [f, text] of Object.entries(files)) writeFileSync(path.join(p.fields.worktree, f), text)
    if (opts.commit) {
      sh(p.fields.worktree, "add", "-A")
      sh(p.fields.worktree, "commit", "-q", "-m", `${job} work`)
    }
    await store.updatePlan(id, d => setJobStatus(d, job, "completed", { attempt }, ctx()))
    return p
  }
  /** Run queue rounds until it has nothing left to do. */
  async function drain(g = gp) {
    for (let i = 0; i < 50; i++) {
      const v = await view()
      await g.step(v)
      await g.idle()
      if (!queueBusy(await view()) && !g.busy) return
    }
    throw new Error(`queue did not drain: ${events.join("\n")}`)
  }
  return { dir, repo, store, id, gp, view, agent, drain, events }
}

const INT = "concord/feature-x"

describe("merge queue on real git repositories", { timeout: 300_000 }, () => {
  it("three agents editing different files merge cleanly in dependency order, each exactly once", async () => {
    const s = await setup({}, [{ name: "a" }, { name: "b", dependsOn: ["a"] }, { name: "c", dependsOn: ["b"] }])
    await s.agent("a", { "a.txt": "from a\n" }, { commit: true })
    await s.drain()
    // b starts from the integration head: it sees a's work.
    const pb = await s.agent("b", { "b.txt": "from b\n" })
    expect(readFileSync(path.join(pb.fields.worktree, "a.txt"), "utf8")).toBe("from a\n")
    await s.drain()
    await s.agent("c", { "c.txt": "from c\n" })
    await s.drain()
    const v = await s.view()
    expect(v.jobs.map(j => j.status)).toEqual(["merged", "merged", "merged"])
    expect(merges(s.repo, INT)).toEqual([
      `concord: merge a (attempt 1) into ${INT}`,
      `concord: merge b (attempt 1) into ${INT}`,
      `concord: merge c (attempt 1) into ${INT}`,
    ])
    expect(sh(s.repo, "show", `${INT}:c.txt`)).toBe("from c")
    expect(sh(s.repo, "show", `${INT}:a.txt`)).toBe("from a")
    // The document's head is the branch's commit; the attempt records its worktree and branch.
    expect(v.git!.head).toBe(await resolveCommit(s.repo, INT))
    expect(getJob(v, "b").current.branch).toBe(`${INT}--b`)
    expect(getJob(v, "b").current.worktree).toBe(pb.fields.worktree)
    // The main checkout was never touched.
    expect(sh(s.repo, "rev-parse", "--abbrev-ref", "HEAD")).toBe("main")
    expect(sh(s.repo, "status", "--porcelain")).toBe("")
  })

  it("two agents editing the same lines: the second is a conflict naming the file, and the queue goes on", async () => {
    const s = await setup({}, [{ name: "x" }, { name: "y" }, { name: "z" }])
    await s.agent("x", { "README.md": "x was here\nline 2\nline 3\n" })
    await s.agent("y", { "README.md": "y was here\nline 2\nline 3\n" })
    await s.agent("z", { "z.txt": "z\n" })
    await s.drain()
    const v = await s.view()
    expect(Object.fromEntries(v.jobs.map(j => [j.name, j.status]))).toEqual({ x: "merged", y: "conflict", z: "merged" })
    const y = getJob(v, "y").current
    expect(y.failureKind).toBe("merge_conflict")
    expect(y.reason).toBe("merge conflict in README.md")
    expect(v.git!.queue.find(e => e.job === "y")!.files).toEqual(["README.md"])
    expect(sh(s.repo, "show", `${INT}:README.md`)).toContain("x was here")
    expect(merges(s.repo, INT)).toHaveLength(2)
  })

  it("a failing test leaves the integration branch at the last passing commit, with the output's tail recorded", async () => {
    const s = await setup({ test: "if [ -f bad.txt ]; then seq 1 100000; echo 'FAIL: bad.txt must not exist'; exit 3; fi; echo ok" }, [
      { name: "good" },
      { name: "bad" },
      { name: "later" },
    ])
    await s.agent("good", { "good.txt": "fine\n" })
    await s.drain()
    const passing = await resolveCommit(s.repo, INT)
    await s.agent("bad", { "bad.txt": "oops\n" })
    await s.drain()
    expect(await resolveCommit(s.repo, INT)).toBe(passing)
    let v = await s.view()
    expect(getJob(v, "bad").status).toBe("conflict")
    expect(getJob(v, "bad").current.failureKind).toBe("test_failed")
    const entry = v.git!.queue.find(e => e.job === "bad")!
    expect(entry.state).toBe("test_failed")
    expect(entry.output!.endsWith("FAIL: bad.txt must not exist")).toBe(true)
    expect(entry.output!.length).toBeLessThanOrEqual(4000) // a tail, however much the test printed
    // The failed combination is kept on the scratch ref for inspection, never on the branch.
    expect(sh(s.repo, "rev-parse", `refs/concord/scratch/${INT}`)).toBe(entry.commit)
    await s.agent("later", { "later.txt": "x\n" })
    await s.drain()
    v = await s.view()
    expect(getJob(v, "later").status).toBe("merged")
    expect(sh(s.repo, "ls-tree", "--name-only", INT).split("\n").sort()).toEqual(["README.md", "good.txt", "later.txt"])
  })

  it("a touchSet violation is refused with the offending files named", async () => {
    const s = await setup({}, [{ name: "api", touchSet: ["src/**", "*.md"] }], { "README.md": "r\n", "src/a.ts": "1\n" })
    await s.agent("api", { "src/a.ts": "2\n", "README.md": "r2\n", "package.json": "{}\n", Makefile: "all:\n" })
    await s.drain()
    const v = await s.view()
    expect(getJob(v, "api").status).toBe("conflict")
    expect(getJob(v, "api").current.failureKind).toBe("touch_violation")
    expect(getJob(v, "api").current.reason).toBe("changed files outside its touchSet (src/**, *.md): Makefile, package.json")
    expect(merges(s.repo, INT)).toEqual([])
    expect(await resolveCommit(s.repo, INT)).toBe(await resolveCommit(s.repo, "main"))
  })

  it("setup copies files, links directories and runs commands in the worktree; they are never committed", async () => {
    const s = await setup({}, [{ name: "a", setup: { copyFiles: [".env"], symlinkDirs: ["deps"], commands: ["echo prepared > prepared.txt"] } }])
    writeFileSync(path.join(s.repo, ".env"), "SECRET=1\n")
    sh(s.repo, "status") // untracked .env stays out of the repository
    const { mkdirSync } = await import("node:fs")
    mkdirSync(path.join(s.repo, "deps"))
    writeFileSync(path.join(s.repo, "deps", "lib.js"), "x\n")
    const p = await s.agent("a", { "a.txt": "a\n" })
    expect(readFileSync(path.join(p.fields.worktree, ".env"), "utf8")).toBe("SECRET=1\n")
    expect(readFileSync(path.join(p.fields.worktree, "deps", "lib.js"), "utf8")).toBe("x\n")
    await s.drain()
    const files = sh(s.repo, "ls-tree", "-r", "--name-only", INT).split("\n").sort()
    expect(files).toEqual(["README.md", "a.txt", "prepared.txt"])
  })

  it("restart after a crash between recording the tested commit and moving the branch: finishes the move, merges nothing twice", async () => {
    const s = await setup({}, [{ name: "a" }, { name: "b" }])
    await s.agent("a", { "a.txt": "a\n" }, { commit: true })
    await s.agent("b", { "b.txt": "b\n" }, { commit: true })
    // What a runner did before it was killed: a queued, merging, scratch-merged and recorded passed...
    await s.store.updatePlan(s.id, d => enqueueMerge(d, "a", ctx()))
    await s.store.updatePlan(s.id, d => enqueueMerge(d, "b", ctx()))
    const head = (await s.view()).git!.head!
    await s.store.updatePlan(s.id, d => startMerge(d, entryKey("a", 1), head, ctx()))
    const m = await scratchMerge(s.repo, scratchWorktree(s.store.dir, s.id), head, `${INT}--a`, `concord: merge a (attempt 1) into ${INT}`, [], s.store.dir)
    if (m.kind !== "merged") throw new Error("expected a clean merge")
    await s.store.updatePlan(s.id, d => recordMergeResult(d, entryKey("a", 1), { kind: "passed", commit: m.commit }, ctx()))
    // ...but the branch never moved. A new orchestrator takes over.
    expect(await resolveCommit(s.repo, INT)).toBe(head)
    const fresh = new GitPlan(s.store, s.id, ctx, () => {})
    await fresh.prepare(await s.view())
    await s.drain(fresh)
    const v = await s.view()
    expect(v.jobs.map(j => j.status)).toEqual(["merged", "merged"])
    expect(merges(s.repo, INT)).toEqual([`concord: merge a (attempt 1) into ${INT}`, `concord: merge b (attempt 1) into ${INT}`])
    expect(sh(s.repo, "rev-parse", `${INT}~1`)).toBe(m.commit) // a's recorded commit, exactly
  })

  it("restart after a crash mid-merge (recorded merging, nothing recorded after): merges again from the recorded base", async () => {
    const s = await setup({}, [{ name: "a" }])
    await s.agent("a", { "a.txt": "a\n" }, { commit: true })
    await s.store.updatePlan(s.id, d => enqueueMerge(d, "a", ctx()))
    const head = (await s.view()).git!.head!
    await s.store.updatePlan(s.id, d => startMerge(d, entryKey("a", 1), head, ctx()))
    // Killed in the middle of the scratch merge: the scratch worktree is left mid-merge.
    const scratch = scratchWorktree(s.store.dir, s.id)
    sh(s.repo, "worktree", "add", "-q", "--detach", scratch, head)
    writeFileSync(path.join(scratch, "junk.txt"), "half-done\n")
    const fresh = new GitPlan(s.store, s.id, ctx, () => {})
    await fresh.prepare(await s.view())
    await s.drain(fresh)
    expect(getJob(await s.view(), "a").status).toBe("merged")
    expect(merges(s.repo, INT)).toHaveLength(1)
    expect(sh(s.repo, "ls-tree", "--name-only", INT).split("\n").sort()).toEqual(["README.md", "a.txt"])
  })

  it("an integration branch moved outside concord stops the queue with a message; it is never overwritten", async () => {
    const s = await setup({}, [{ name: "a" }])
    await s.agent("a", { "a.txt": "a\n" })
    sh(s.repo, "checkout", "-q", "-b", "side")
    writeFileSync(path.join(s.repo, "side.txt"), "side\n")
    sh(s.repo, "add", "-A")
    sh(s.repo, "commit", "-q", "-m", "side work")
    sh(s.repo, "checkout", "-q", "main")
    const side = await resolveCommit(s.repo, "side")
    sh(s.repo, "branch", "-f", INT, "side")
    expect(await s.gp.step(await s.view())).toBe(true) // enqueued
    await s.gp.step(await s.view())
    await s.gp.idle()
    expect(s.events.join("\n")).toMatch(
      /concord\/feature-x is at [0-9a-f]{12} but the plan recorded [0-9a-f]{12}: it was moved outside concord; put it back to continue \(retrying in 1 s\)/
    )
    expect(await resolveCommit(s.repo, INT)).toBe(side)
    expect(getJob(await s.view(), "a").status).toBe("ready_to_merge")
  })

  it("refuses an integration branch that exists already and that the plan did not create", async () => {
    const dir = tempDir("concord-queue-")
    dirs.push(dir)
    const repo = makeRepo(path.join(dir, "repo"))
    writeFileSync(path.join(repo, "other.txt"), "x\n")
    sh(repo, "checkout", "-q", "-b", INT)
    sh(repo, "add", "-A")
    sh(repo, "commit", "-q", "-m", "someone else's")
    sh(repo, "checkout", "-q", "main")
    const store = new PlanStore(path.join(dir, "store"))
    const { id } = await store.createPlan(validatePlanSpec({ name: "feature x", repo, jobs: [{ name: "a", run: "true" }] }), dir, ctx())
    const gp = new GitPlan(store, id, ctx, () => {})
    await expect(gp.prepare(readPlan(await store.loadPlan(id)))).rejects.toThrow(
      /integration branch concord\/feature-x already exists .*git branch -D concord\/feature-x/
    )
  })

  it("opens the PR with gh when available (fake gh records its arguments), else records and prints the exact command", async () => {
    const s = await setup({ pr: { title: "Feature X", draft: true } }, [{ name: "a" }])
    await s.agent("a", { "a.txt": "a\n" })
    await s.drain()
    // No origin: the command is printed, not run.
    await s.gp.finish(await s.view())
    let pr = (await s.view()).git!.prResult!
    expect(pr.manual).toBe("the repository has no remote named origin")
    expect(pr.command).toContain(`git push --set-upstream origin ${INT} && gh pr create --base main --head ${INT} --title 'Feature X' --body-file`)
    expect(s.events.join("\n")).toContain(pr.command)

    // Again on a fresh plan document with an origin and a fake gh on PATH.
    const s2 = await setup({ pr: { title: "Feature X", draft: true } }, [{ name: "a" }])
    addOrigin(s2.repo, path.join(s2.dir, "origin.git"))
    const bin = path.join(s2.dir, "bin")
    const log = path.join(s2.dir, "gh.log")
    fakeGh(bin, log)
    await s2.agent("a", { "a.txt": "a\n" })
    await s2.drain()
    await s2.store.appendReport(s2.id, "a", { status: "completed", message: "wrote a.txt", attempt: 1 }, ctx())
    const oldPath = process.env.PATH
    process.env.PATH = `${bin}${path.delimiter}${oldPath}`
    try {
      await s2.gp.finish(await s2.view())
      await s2.gp.finish(await s2.view()) // recorded once: no second PR
    } finally {
      process.env.PATH = oldPath
    }
    pr = (await s2.view()).git!.prResult!
    expect(pr.url).toBe("https://github.com/example/repo/pull/7")
    const calls = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map(l => JSON.parse(l) as string[])
    expect(calls[0]).toEqual(["auth", "status"])
    const create = calls.filter(c => c[0] === "pr")
    expect(create).toHaveLength(1)
    const bodyFile = create[0][create[0].indexOf("--body-file") + 1]
    expect(create[0]).toEqual(["pr", "create", "--base", "main", "--head", INT, "--title", "Feature X", "--body-file", bodyFile, "--draft"])
    const body = readFileSync(bodyFile, "utf8")
    expect(body).toContain("| a | merged | 1 |")
    expect(body).toContain("completed: wrote a.txt")
    // The push really happened.
    expect(sh(path.join(s2.dir, "origin.git"), "rev-parse", INT)).toBe(await resolveCommit(s2.repo, INT))
    expect(existsSync(bodyFile)).toBe(true)
  })
})
