/** Pure git-plan decisions: touchSet globs, where a job runs in its worktree, the PR body and command. */
import { describe, expect, it } from "vitest"
import type { GitView } from "../../../src/doc/merge.js"
import type { PlanSummary } from "../../../src/doc/summary.js"
import { globToRegExp, jobCwdInWorktree, prBody, prCommands, shellQuote, touchViolations } from "../../../src/orchestrator/worktree/policy.js"

describe("touchSet globs", () => {
  const m = (g: string, p: string) => globToRegExp(g).test(p)
  it("match like gitignore-style globs over repository-relative paths", () => {
    expect(m("src/**", "src/a/b.ts")).toBe(true)
    expect(m("src/**", "srcx/a.ts")).toBe(false)
    expect(m("src/", "src/deep/x")).toBe(true)
    expect(m("*.md", "README.md")).toBe(true)
    expect(m("*.md", "docs/README.md")).toBe(false)
    expect(m("**/*.md", "docs/a/README.md")).toBe(true)
    expect(m("**/*.md", "README.md")).toBe(true)
    expect(m("src/**/test/*.ts", "src/test/a.ts")).toBe(true)
    expect(m("src/**/test/*.ts", "src/x/y/test/a.ts")).toBe(true)
    expect(m("{a,b}.txt", "b.txt")).toBe(true)
    expect(m("file?.[ch]", "file1.c")).toBe(true)
    expect(m("file?.[!ch]", "file1.c")).toBe(false)
    expect(m("a+b(1).txt", "a+b(1).txt")).toBe(true)
    expect(m("./lib/*", "lib/x")).toBe(true)
  })
  it("name every changed file no glob allows; no touchSet allows everything", () => {
    expect(touchViolations(["src/a.ts", "README.md", "Makefile"], ["src/**", "*.md"])).toEqual(["Makefile"])
    expect(touchViolations(["anything"], null)).toEqual([])
  })
})

describe("job directory inside its worktree", () => {
  it("keeps the job's place relative to the repository when the plan file is inside it", () => {
    expect(jobCwdInWorktree("/r", "/r/plans", "../svc", "/w/a.1")).toBe("/w/a.1/svc")
    expect(jobCwdInWorktree("/r", "/r", null, "/w/a.1")).toBe("/w/a.1")
  })
  it("uses the worktree root (plus cwd) when the plan file is outside the repository", () => {
    expect(jobCwdInWorktree("/r", "/elsewhere", null, "/w/a.1")).toBe("/w/a.1")
    expect(jobCwdInWorktree("/r", "/elsewhere", "sub", "/w/a.1")).toBe("/w/a.1/sub")
  })
})

const git: GitView = {
  repo: ".",
  baseBranch: "main",
  integrationBranch: "concord/x",
  test: "npm test",
  pr: { title: "T", body: "Intro", draft: true },
  baseCommit: "b",
  head: "h",
  queue: [
    {
      key: "c#1",
      job: "c",
      attempt: 1,
      seq: 1,
      state: "conflict",
      enqueuedAt: 0,
      enqueuedBy: "",
      branch: "",
      scratchBase: null,
      startedAt: null,
      commit: null,
      files: ["x"],
      output: null,
      reason: "merge conflict in x",
      finishedAt: null,
    },
  ],
  prResult: null,
}

describe("pull request", () => {
  it("body lists every job with attempts, duration and last report, without control characters or broken tables", () => {
    const summary = {
      name: "x",
      jobs: [
        {
          name: "a",
          status: "merged",
          attempt: 2,
          skipped: false,
          durationMs: 83_000,
          lastReport: { status: "completed", message: "done | \x1b[31mred\x1b[0m\nnext", progress: null, at: 0, by: "" },
        },
        { name: "c", status: "conflict", attempt: 1, skipped: true, durationMs: null, lastReport: null },
      ],
    } as unknown as PlanSummary
    const body = prBody(summary, git, { a: 2, c: 1 })
    expect(body.startsWith("Intro\n")).toBe(true)
    expect(body).toContain("| a | merged | 2 | 1m23s | completed: done \\| red next |")
    expect(body).toContain("| c | conflict (skipped) | 1 | - | - |")
    expect(body).toContain("- c attempt 1: merge conflict in x")
    expect(body).not.toMatch(/\x1b/)
  })
  it("command pushes the integration branch and opens a PR against the base, quoted for a shell", () => {
    const p = prCommands("/repo dir", git, "It's done", "/s/body.md")
    expect(p.create).toEqual(["gh", "pr", "create", "--base", "main", "--head", "concord/x", "--title", "It's done", "--body-file", "/s/body.md", "--draft"])
    expect(p.command).toBe(
      `cd '/repo dir' && git push --set-upstream origin concord/x && gh pr create --base main --head concord/x --title 'It'\\''s done' --body-file /s/body.md --draft`
    )
    expect(shellQuote("$(rm -rf /)")).toBe(`'$(rm -rf /)'`)
  })
})
