/**
 * The git tools of `concord mcp` (mc_diff, mc_merge, mc_sync, mc_pr, mc_cleanup), driven by the MCP SDK's
 * own Client over stdio against real plans run by `concord run` on real git repositories in temp dirs:
 * each tool's effect, and its refusals (tool errors with the CLI's message, nothing written).
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import path from "node:path"
import { describe, expect, it } from "vitest"
import { readPlan, updateAttempt } from "../../src/doc/plan.js"
import { PlanStore } from "../../src/sync/store/PlanStore.js"
import { concord, createPlan, statusJson, tempDir } from "../helpers/cli.js"
import { addOrigin, fakeGh, makeRepo, merges, sh } from "../orchestrator/worktree/gitrepo.js"
import { addTokenCli, startServerProcess } from "../sync/net/helpers.js"
import { job, mcpFixtures, storeFiles, text } from "./client.js"

const { dirs, mcp } = mcpFixtures()
const statuses = (s: any) => Object.fromEntries(s.jobs.map((j: any) => [j.name, j.status]))
/** The message `concord ARGS` prints on stderr (without `concord: `), and its exit code. */
const cliError = async (store: string, args: string[]) => {
  const r = await concord(store, args)
  return { code: r.code, message: r.stderr.trim().replace(/^concord: /, "") }
}

function world() {
  const dir = tempDir("concord-gitmcp-")
  dirs.push(dir)
  const repo = makeRepo(path.join(dir, "repo"), { "README.md": "line 1\nline 2\nline 3\n" })
  const store = path.join(dir, "store")
  mkdirSync(store)
  return { dir, repo, store }
}

const commitAs = (msg: string) => `git add -A && git commit -q -m '${msg}'`

describe("mc_diff, mc_merge, mc_sync, mc_pr, mc_cleanup on a supervised git plan", () => {
  it("each tool's effect and refusals, through the plan's whole life", async () => {
    const w = world()
    // a completes first (the plan then waits at pre_merge for a): b and c start their work once a's
    // completed report is durable, however the machine schedules the three (a's grace period lets it
    // mark that after its report; it exits right after)
    const aDone = path.join(w.dir, "a-done")
    const afterA = `i=0; while [ ! -e ${aDone} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done;`
    const id = await createPlan(
      w.store,
      `
name: tools
mode: supervisor
repo: ${w.repo}
graceMs: 5000
pr: { title: "Tools" }
jobs:
  - { name: a, run: "printf 'line 1 from a\\\\nline 2\\\\nline 3\\\\n' > README.md && echo a > a.txt && printf 'x\\\\033[2Jy\\\\n' > esc.txt && ${commitAs("a work")} && concord report completed 'a done' && touch ${aDone}" }
  - { name: b, run: "${afterA} printf 'line 1 from b\\\\nline 2\\\\nline 3\\\\n' > README.md && ${commitAs("b work")} && concord report completed 'b done'" }
  - { name: c, run: "${afterA} echo c > c.txt && concord report completed 'c done'" }
  - { name: d, run: "true", dependsOn: [a] }
`
    )
    const INT = "concord/tools"
    let r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    let s = await statusJson(w.store, id)
    expect(s.checkpoint).toBe("pre_merge")
    expect(statuses(s)).toMatchObject({ a: "completed", b: "completed", c: "completed" })

    const c = await mcp(["--store", w.store, "--plan", id])
    const { tools } = await c.client.listTools({}, { timeout: 600_000 })
    for (const name of ["mc_diff", "mc_merge", "mc_sync", "mc_pr", "mc_cleanup"]) {
      const t = tools.find(x => x.name === name)
      expect(t, name).toBeDefined()
      expect(t!.description!.length).toBeGreaterThan(40)
      expect(t!.outputSchema?.type).toBe("object")
    }

    // mc_diff: the attempt's change from where it started, committed (a) or not (c: an untracked file).
    const da = await c.call("mc_diff", { name: "a" })
    expect(da.isError, text(da)).toBeFalsy()
    expect(da.structuredContent.files.map((f: any) => f.path).sort()).toEqual(["README.md", "a.txt", "esc.txt"])
    // A terminal escape in a changed file is shown, not sent raw (structuredContent keeps the exact text).
    expect(text(da)).not.toContain("\x1b")
    expect(text(da)).toContain("+x\\x1b[2Jy")
    expect(da.structuredContent.diff).toContain("+x\x1b[2Jy")
    expect(da.structuredContent.diff).toContain("-line 1\n+line 1 from a")
    expect(da.structuredContent).toMatchObject({ to: "worktree", against: "start", truncated: false })
    const stat = await c.call("mc_diff", { name: "a", stat: true })
    expect(stat.structuredContent.diff).toMatch(/3 files changed/)
    expect(stat.structuredContent.diff).not.toContain("+line 1 from a")
    const wt = (name: string) => path.join(w.store, "worktrees", id, `${name}.1`)
    const cWorktree = wt("c")
    expect(existsSync(cWorktree)).toBe(true)
    const cStatusBefore = sh(cWorktree, "status", "--porcelain")
    const dc = await c.call("mc_diff", { name: "c" })
    expect(dc.structuredContent.files).toEqual([{ path: "c.txt", added: 1, deleted: 0 }])
    expect(sh(cWorktree, "status", "--porcelain")).toBe(cStatusBefore) // its index was not touched
    expect(cStatusBefore).toBe("?? c.txt")
    // A huge change: the answer stays bounded (64 KiB of diff by default) and says how much there was.
    const aWorktree = path.join(w.store, "worktrees", id, "a.1")
    writeFileSync(path.join(aWorktree, "big.txt"), Array.from({ length: 200_000 }, (_, i) => `generated line ${i}`).join("\n"))
    const big = await c.call("mc_diff", { name: "a" })
    expect(big.isError, text(big)).toBeFalsy()
    expect(big.structuredContent).toMatchObject({ truncated: true })
    expect(big.structuredContent.bytes).toBeGreaterThan(4_000_000)
    expect(Buffer.byteLength(big.structuredContent.diff)).toBeLessThanOrEqual(64 * 1024)
    expect(big.structuredContent.files.map((f: any) => f.path)).toContain("big.txt")
    expect(text(big)).toMatch(/\[diff truncated: showing the first \d+ of \d+ bytes; use stat, or a larger maxBytes\]$/)
    rmSync(path.join(aWorktree, "big.txt"))

    // Bounded: a cut diff says so.
    const small = await c.call("mc_diff", { name: "a", maxBytes: 60 })
    expect(small.structuredContent.truncated).toBe(true)
    expect(small.structuredContent.bytes).toBeGreaterThan(60)
    expect(text(small)).toContain("[diff truncated: showing the first")
    // The CLI says the same.
    const cli = await concord(w.store, ["diff", id, "a", "--stat"])
    expect(cli.code, cli.stderr).toBe(0)
    expect(cli.stdout).toMatch(/3 files changed/)
    const cliPatch = await concord(w.store, ["diff", id, "a"])
    expect(cliPatch.stdout).toContain("+x\\x1b[2Jy")
    expect(cliPatch.stdout).not.toContain("\x1b")

    // Refusals: unknown job, a job without a worktree (d waits for a), bad input; the CLI's message.
    for (const [args, cliArgs] of [
      [{ name: "zzz" }, ["diff", id, "zzz"]],
      [{ name: "d" }, ["diff", id, "d"]],
    ] as const) {
      const e = await c.call("mc_diff", args)
      expect(e.isError).toBe(true)
      const want = await cliError(w.store, [...cliArgs])
      expect(want.code).toBe(2)
      expect(text(e)).toBe(want.message)
    }
    const badMax = await c.call("mc_diff", { name: "a", maxBytes: 0 })
    expect(badMax.isError).toBe(true)
    expect(text(badMax)).toBe("invalid maxBytes 0: expected a whole number from 1 to 4194304")
    expect(await cliError(w.store, ["diff", id, "a", "--max-bytes", "0"])).toEqual({ code: 2, message: text(badMax) })
    expect(text(await c.call("mc_diff", { name: "d" }))).toMatch(/job "d" attempt 1 has no worktree \(it is waiting_deps/)
    expect(text(await c.call("mc_diff", { name: "zzz" }))).toMatch(/plan "tools" has no job "zzz"/)

    // mc_merge: the plan waits at pre_merge for a; b must wait its turn; nothing written for b.
    let before = storeFiles(w.store)
    const mb = await c.call("mc_merge", { name: "b" })
    expect(mb.isError, text(mb)).toBeFalsy()
    expect(mb.structuredContent).toMatchObject({ state: "waiting", approved: null })
    expect(text(mb)).toContain("the plan waits at pre_merge for a first")
    const md = await c.call("mc_merge", { name: "d" })
    expect(md.isError).toBe(true)
    expect(text(md)).toBe((await cliError(w.store, ["merge", id, "d"])).message)
    expect(text(md)).toMatch(/job "d" is waiting_deps, not completed/)
    expect(storeFiles(w.store)).toEqual(before)
    const ma = await c.call("mc_merge", { name: "a" })
    expect(ma.isError, text(ma)).toBeFalsy()
    expect(ma.structuredContent).toMatchObject({ state: "approved", approved: { checkpoint: "pre_merge" } })
    expect(merges(w.repo, INT)).toEqual([]) // no second merge path: only the queue merges
    r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    s = await statusJson(w.store, id)
    expect(job(s, "a").status).toBe("merged")
    const head = sh(w.repo, "rev-parse", INT)
    const merged = await c.call("mc_merge", { name: "a" })
    expect(merged.structuredContent).toMatchObject({ state: "merged", queue: { state: "merged", commit: head } })

    // Against the integration head instead: c's worktree lacks a's merged work.
    const dci = await c.call("mc_diff", { name: "c", against: "integration", stat: true })
    expect(dci.structuredContent).toMatchObject({ against: "integration", from: head })
    expect(dci.structuredContent.files.map((f: any) => f.path).sort()).toEqual(["README.md", "a.txt", "c.txt", "esc.txt"])

    // mc_sync: b conflicts with a's merged change: refused, and the worktree is exactly as it was.
    const bWorktree = wt("b")
    const bHead = sh(bWorktree, "rev-parse", "HEAD")
    before = storeFiles(w.store)
    const sb = await c.call("mc_sync", { name: "b" })
    expect(sb.isError).toBe(true)
    expect(text(sb)).toMatch(/rebase onto concord\/tools \([0-9a-f]{12}\) stopped: conflicts in README\.md; aborted, the worktree is as it was/)
    expect(sh(bWorktree, "rev-parse", "HEAD")).toBe(bHead)
    expect(sh(bWorktree, "status", "--porcelain")).toBe("")
    expect(readFileSync(path.join(bWorktree, "README.md"), "utf8")).toBe("line 1 from b\nline 2\nline 3\n")
    expect(existsSync(path.join(bWorktree, ".git"))).toBe(true)
    expect(storeFiles(w.store)).toEqual(before)
    const sbm = await cliError(w.store, ["sync-worktree", id, "b", "--strategy", "merge"])
    expect(sbm.code).toBe(1)
    expect(sbm.message).toMatch(/merge onto concord\/tools .* stopped: conflicts in README\.md/)
    expect(sh(bWorktree, "rev-parse", "HEAD")).toBe(bHead)
    expect(sh(bWorktree, "status", "--porcelain")).toBe("")

    // A rebase left unfinished in the worktree (an agent's, or a sync killed mid-way): refused, named.
    expect(() => sh(bWorktree, "rebase", head)).toThrow()
    const inProgress = await c.call("mc_sync", { name: "b" })
    expect(inProgress.isError).toBe(true)
    expect(text(inProgress)).toMatch(/a rebase is in progress in its worktree .*: finish it or abort it \(git -C .* rebase --abort\)/)
    sh(bWorktree, "rebase", "--abort")
    expect(sh(bWorktree, "rev-parse", "HEAD")).toBe(bHead)

    // A tracked file changed and not committed: refused before anything moves.
    writeFileSync(path.join(cWorktree, "README.md"), "scribble\n")
    const dirty = await c.call("mc_sync", { name: "c" })
    expect(dirty.isError).toBe(true)
    expect(text(dirty)).toMatch(/its worktree has uncommitted changes \(README\.md\): commit them first/)
    sh(cWorktree, "checkout", "--", "README.md")
    // c syncs cleanly (merge strategy); afterwards its diff shows only its own change.
    const sc = await c.call("mc_sync", { name: "c", strategy: "merge" })
    expect(sc.isError, text(sc)).toBeFalsy()
    expect(sc.structuredContent).toMatchObject({ changed: true, onto: head, strategy: "merge" })
    expect(readFileSync(path.join(cWorktree, "a.txt"), "utf8")).toBe("a\n")
    expect(readFileSync(path.join(cWorktree, "c.txt"), "utf8")).toBe("c\n")
    const planDoc = readPlan(await new PlanStore(w.store).loadPlan(id))
    expect(planDoc.jobs.find(j => j.name === "c")!.current.baseCommit).toBe(head) // its recorded start moved to the head it synced onto
    const dc2 = await c.call("mc_diff", { name: "c" })
    expect(dc2.structuredContent.files.map((f: any) => f.path)).toEqual(["c.txt"])
    const again = await c.call("mc_sync", { name: "c" })
    expect(again.structuredContent.changed).toBe(false)
    // A sync killed after git moved the branch but before the plan recorded it (the document still has the
    // old start): the next sync finds the head in the branch and repairs the record; nothing else moves.
    const oldStart = planDoc.jobs.find(j => j.name === "a")!.current.baseCommit!
    await new PlanStore(w.store).updatePlan(id, d => updateAttempt(d, "c", 1, { baseCommit: oldStart }, { by: "test", now: Date.now() }))
    expect((await c.call("mc_diff", { name: "c" })).structuredContent.files.length).toBeGreaterThan(1) // a's work counted as c's
    const cHead = sh(cWorktree, "rev-parse", "HEAD")
    const repaired = await c.call("mc_sync", { name: "c" })
    expect(repaired.structuredContent.changed).toBe(false)
    expect(text(repaired)).toContain(`its recorded start is now ${head.slice(0, 12)}`)
    expect(sh(cWorktree, "rev-parse", "HEAD")).toBe(cHead)
    expect((await c.call("mc_diff", { name: "c" })).structuredContent.files.map((f: any) => f.path)).toEqual(["c.txt"])
    // A job's own server: name defaults to its job; a planning server without a job needs it.
    const agentC = await mcp(["--store", w.store, "--plan", id, "--job", "c"])
    expect((await agentC.call("mc_diff", {})).structuredContent).toMatchObject({ job: "c", files: [{ path: "c.txt" }] })
    expect((await agentC.call("mc_sync", {})).structuredContent).toMatchObject({ job: "c", changed: false })
    expect(text(await c.call("mc_sync", {}))).toBe("mc_sync needs name (the job); this server was started for no job")
    // a is merged: its branch is not a worktree to sync any more.
    expect(text(await c.call("mc_sync", { name: "a" }))).toMatch(/job "a" attempt 1 is merged: not synced/)

    // mc_pr before the plan completed: refused, same message as `concord pr`, nothing written.
    before = storeFiles(w.store)
    const early = await c.call("mc_pr", {})
    expect(early.isError).toBe(true)
    const earlyCli = await cliError(w.store, ["pr", id])
    expect(earlyCli.code).toBe(2)
    expect(text(early)).toBe(earlyCli.message)
    expect(text(early)).toMatch(
      /plan "tools" is (paused|running): no pull request before the plan completed \(not every job is merged yet: b \(completed\), c \(completed\), d/
    )
    expect(storeFiles(w.store)).toEqual(before)

    // mc_cleanup: c's worktree is in use (completed, not yet in the queue): refused; neither name nor all: refused.
    const cu = await c.call("mc_cleanup", { name: "c" })
    expect(cu.isError).toBe(true)
    expect(text(cu)).toMatch(/job "c": nothing to clean up: .* is in use \(attempt 1 is completed and not yet in the merge queue/)
    expect(existsSync(cWorktree)).toBe(true)
    expect((await c.call("mc_cleanup", {})).isError).toBe(true)

    // Approve b: the queue (not mc_merge) finds the conflict; mc_merge then refuses b, naming the file.
    expect(s.checkpointContext.jobName).toBe("b")
    expect((await c.call("mc_merge", { name: "b" })).structuredContent.state).toBe("approved")
    r = await concord(w.store, ["run", id])
    s = await statusJson(w.store, id)
    expect(job(s, "b").status, r.stdout).toBe("conflict")
    expect(s.status).toBe("paused") // at c's pre_merge, or b's on_error: a refusal after pre_merge does not fail the plan
    before = storeFiles(w.store)
    const mr = await c.call("mc_merge", { name: "b" })
    expect(mr.isError).toBe(true)
    expect(text(mr)).toMatch(/job "b" attempt 1 was refused by the merge queue \(merge conflict in README\.md\): retry it/)
    expect(text(mr)).toBe((await cliError(w.store, ["merge", id, "b"])).message)
    expect(storeFiles(w.store)).toEqual(before)
    // Its attempt is over: its worktree and branch may go; the other jobs' stay.
    const cb = await c.call("mc_cleanup", { name: "b", deleteBranch: true })
    expect(cb.isError, text(cb)).toBeFalsy()
    expect(cb.structuredContent.removed).toEqual([bWorktree])
    expect(cb.structuredContent.branchesDeleted).toEqual(["concord/tools--b"])
    expect(existsSync(bWorktree)).toBe(false)
    expect(sh(w.repo, "branch", "--list", "concord/tools--b")).toBe("")
    expect(sh(w.repo, "worktree", "list")).not.toContain(bWorktree)
  }, 900_000)

  it("mc_pr: refused at pre_pr, then the recorded command, then opened once with gh; diff and cleanup after the plan completed", async () => {
    const w = world()
    const id = await createPlan(
      w.store,
      `
name: pr
mode: supervisor
repo: ${w.repo}
graceMs: 0
pr: { title: "Tools" }
jobs:
  - { name: a, run: "echo a > a.txt && concord report completed 'a done'" }
`
    )
    const INT = "concord/pr"
    const c = await mcp(["--store", w.store, "--plan", id])
    let r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    expect((await c.call("mc_merge", { name: "a" })).structuredContent.state).toBe("approved")
    r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(3)
    expect((await statusJson(w.store, id)).checkpoint).toBe("pre_pr")
    const before = storeFiles(w.store)
    const atPrePr = await c.call("mc_pr", {})
    expect(atPrePr.isError).toBe(true)
    expect(text(atPrePr)).toBe((await cliError(w.store, ["pr", id])).message)
    expect(text(atPrePr)).toMatch(/plan "pr" waits at pre_pr: approve it/)
    expect(storeFiles(w.store)).toEqual(before)
    expect((await concord(w.store, ["approve", id])).code).toBe(0)
    r = await concord(w.store, ["run", id])
    expect(r.code, r.stdout + r.stderr).toBe(0)
    expect(r.stdout).toContain("pull request not opened (the repository has no remote named origin)")

    // The plan completed; its PR was only printed. mc_pr tries again: still no origin.
    const manual = await c.call("mc_pr", {})
    expect(manual.isError, text(manual)).toBeFalsy()
    expect(manual.structuredContent).toMatchObject({ now: true, url: null, manual: "the repository has no remote named origin" })
    expect(manual.structuredContent.command).toContain(`gh pr create --base main --head ${INT} --title Tools`)

    // With an origin and a (fake) gh on the server's PATH: opened once; asked again, the recorded address.
    addOrigin(w.repo, path.join(w.dir, "origin.git"))
    // A gh that takes a second, so two calls at once overlap: exactly one PR.
    const real = path.join(w.dir, "real-gh")
    const log = path.join(w.dir, "gh.log")
    fakeGh(real, log)
    const bin = path.join(w.dir, "bin")
    mkdirSync(bin)
    writeFileSync(path.join(bin, "gh"), `#!/bin/sh\nsleep 1\nexec "${real}/gh" "$@"\n`, { mode: 0o755 })
    const env = { PATH: `${bin}${path.delimiter}${process.env.PATH}` }
    const withGh = await mcp(["--store", w.store, "--plan", id], { env })
    const other = await mcp(["--store", w.store, "--plan", id], { env })
    expect(text(await withGh.call("mc_pr", { name: "nope" }))).toMatch(/plan "pr" has no job "nope"/)
    const both = await Promise.all([
      withGh.call("mc_pr", { name: "a", title: "Tools, all merged", draft: true }),
      other.call("mc_pr", { title: "Tools, all merged", draft: true }),
    ])
    for (const b of both) expect(b.isError, text(b)).toBeFalsy()
    const opened = both.find(b => b.structuredContent.now)!
    expect(opened.structuredContent).toMatchObject({ now: true, url: "https://github.com/example/repo/pull/7", manual: null })
    expect(both.filter(b => b.structuredContent.now)).toHaveLength(1)
    expect(both.map(b => b.structuredContent.url)).toEqual(["https://github.com/example/repo/pull/7", "https://github.com/example/repo/pull/7"])
    const second = await withGh.call("mc_pr", {})
    expect(second.structuredContent).toMatchObject({ now: false, url: "https://github.com/example/repo/pull/7" })
    const cli = await concord(w.store, ["pr", id])
    expect(cli.code).toBe(0)
    expect(cli.stdout.trim()).toBe("the pull request was opened: https://github.com/example/repo/pull/7")
    const calls = readFileSync(log, "utf8")
      .trim()
      .split("\n")
      .map(l => JSON.parse(l) as string[])
    const creates = calls.filter(x => x[0] === "pr")
    expect(creates).toHaveLength(1)
    expect(creates[0]).toEqual([
      "pr",
      "create",
      "--base",
      "main",
      "--head",
      INT,
      "--title",
      "Tools, all merged",
      "--body-file",
      creates[0][creates[0].indexOf("--body-file") + 1],
      "--draft",
    ])
    expect(sh(path.join(w.dir, "origin.git"), "rev-parse", INT)).toBe(sh(w.repo, "rev-parse", INT))
    expect((await statusJson(w.store, id)).git.pr.url).toBe("https://github.com/example/repo/pull/7")

    // Completed: the runner removed the worktrees; a job's diff falls back to its branch.
    expect(existsSync(path.join(w.store, "worktrees", id))).toBe(false)
    const gone = await c.call("mc_diff", { name: "a" })
    expect(gone.isError, text(gone)).toBeFalsy()
    expect(gone.structuredContent).toMatchObject({ to: "branch" })
    expect(gone.structuredContent.files.map((f: any) => f.path)).toEqual(["a.txt"])
    const all = await c.call("mc_cleanup", { all: true, deleteBranch: true })
    expect(all.isError, text(all)).toBeFalsy()
    expect(all.structuredContent.branchesDeleted).toEqual(["concord/pr--a"])
    expect(sh(w.repo, "branch", "--list", "concord/pr--*")).toBe("")
    expect(sh(w.repo, "branch", "--list", INT)).toContain(INT)
    const noBranch = await c.call("mc_diff", { name: "a" })
    expect(noBranch.isError).toBe(true)
    expect(text(noBranch)).toMatch(/its worktree and branch concord\/pr--a are gone/)
  }, 900_000)
})

describe("git tools refuse what they cannot do", () => {
  it("a plan without repo, and a server on a sync server (no local repository), refuse clearly with nothing written", async () => {
    const w = world()
    const plain = await createPlan(w.store, `name: plain\njobs: [{ name: x, run: "true" }]\n`)
    const c = await mcp(["--store", w.store, "--plan", plain])
    const before = storeFiles(w.store)
    for (const [tool, args, cliArgs] of [
      ["mc_diff", { name: "x" }, ["diff", plain, "x"]],
      ["mc_sync", { name: "x" }, ["sync-worktree", plain, "x"]],
      ["mc_merge", { name: "x" }, ["merge", plain, "x"]],
      ["mc_pr", {}, ["pr", plain]],
      ["mc_cleanup", { all: true }, ["cleanup", plain]],
    ] as const) {
      const r = await c.call(tool, args)
      expect(r.isError, tool).toBe(true)
      expect(text(r)).toMatch(/plan "plain" has no repo/)
      const e = await cliError(w.store, [...cliArgs])
      expect(e.code, tool).toBe(2)
      expect(text(r)).toBe(e.message)
    }
    expect(storeFiles(w.store)).toEqual(before)

    const gitPlan = await createPlan(w.store, `name: remote-git\nrepo: ${w.repo}\njobs: [{ name: x, run: "true" }]\n`)
    const serverStore = path.join(w.dir, "server")
    const admin = await addTokenCli(serverStore, "*", "admin")
    const server = await startServerProcess(serverStore)
    try {
      expect((await concord(w.store, ["sync", server.url, "--token", admin])).code).toBe(0)
      const remote = await mcp(["--remote", server.url, "--token", admin, "--plan", gitPlan])
      const serverBefore = storeFiles(serverStore)
      for (const [tool, args] of [
        ["mc_diff", { name: "x" }],
        ["mc_sync", { name: "x" }],
        ["mc_pr", {}],
        ["mc_cleanup", { all: true }],
      ] as const) {
        const r = await remote.call(tool, args)
        expect(r.isError, tool).toBe(true)
        expect(text(r)).toMatch(/needs the plan's git repository and worktrees, which are on the machine that runs the plan; this works against server /)
      }
      // mc_merge is a plan operation: it works remotely (here: x has not completed).
      const m = await remote.call("mc_merge", { name: "x" })
      expect(text(m)).toMatch(/job "x" is queued, not completed/)
      expect(storeFiles(serverStore)).toEqual(serverBefore)
    } finally {
      await server.stop()
    }
  }, 900_000)
})
