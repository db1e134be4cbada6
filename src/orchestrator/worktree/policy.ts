/**
 * Pure decisions of git plans: where worktrees go, where a job runs inside its worktree, which changed
 * files a touchSet refuses, and what the pull request says. No I/O: tested without git.
 */
import path from "node:path"
import type { PlanSummary } from "../../doc/summary.js"
import type { GitView } from "../../doc/merge.js"

/** Directory of a plan's worktrees inside the store. */
export function worktreesDir(storeDir: string, planId: string): string {
  return path.join(storeDir, "worktrees", planId)
}
export function attemptWorktree(storeDir: string, planId: string, job: string, attempt: number): string {
  return path.join(worktreesDir(storeDir, planId), `${job}.${attempt}`)
}
/** The merge queue's scratch checkout (detached; the scratch merge and `test` run there). */
export function scratchWorktree(storeDir: string, planId: string): string {
  return path.join(worktreesDir(storeDir, planId), "_scratch")
}
/** The ref the scratch merge result is kept under (never a branch: nobody checks it out by accident). */
export function scratchRef(integrationBranch: string): string {
  return `refs/concord/scratch/${integrationBranch}`
}

/**
 * Where a job runs inside its worktree. Its `cwd` is relative to the plan file's directory; when that
 * directory is inside the repository, the same place inside the worktree is used, else the worktree root.
 */
export function jobCwdInWorktree(repoRoot: string, baseDir: string, jobCwd: string | null, worktree: string): string {
  const inMain = path.resolve(baseDir, jobCwd ?? ".")
  const rel = path.relative(repoRoot, inMain)
  if (rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))) return path.join(worktree, rel)
  return path.resolve(worktree, jobCwd ?? ".")
}

/**
 * A glob as a RegExp over repository-relative paths: `**` matches across directories (also none),
 * `*` and `?` within one path component, `[...]` a character class, `{a,b}` alternatives; a pattern
 * ending in `/` means everything below that directory.
 */
export function globToRegExp(glob: string): RegExp {
  let g = glob.replace(/^\.\//, "")
  if (g.endsWith("/")) g += "**"
  let re = ""
  let inBraces = 0
  for (let i = 0; i < g.length; i++) {
    const c = g[i]
    if (c === "*") {
      if (g[i + 1] === "*") {
        const before = i === 0 || g[i - 1] === "/"
        const after = g[i + 2] === "/" || i + 2 === g.length
        i++
        if (before && g[i + 1] === "/") {
          re += "(?:.*/)?"
          i++
        } else if (before && after) re += ".*"
        else re += "[^/]*"
      } else re += "[^/]*"
    } else if (c === "?") re += "[^/]"
    else if (c === "[") {
      const end = g.indexOf("]", i + 1)
      if (end === -1) re += "\\["
      else {
        const body = g.slice(i + 1, end).replace(/\\/g, "\\\\")
        re += `[${body.startsWith("!") ? `^${body.slice(1)}` : body}]`
        i = end
      }
    } else if (c === "{") {
      inBraces++
      re += "(?:"
    } else if (c === "}" && inBraces > 0) {
      inBraces--
      re += ")"
    } else if (c === "," && inBraces > 0) re += "|"
    else re += c.replace(/[.+^$()|\\\]{}]/g, "\\$&")
  }
  return new RegExp(`^${re}$`)
}

/** The changed files that no glob of the touchSet allows (empty: the change is within its touchSet). */
export function touchViolations(files: string[], touchSet: string[] | null): string[] {
  if (!touchSet) return []
  const res = touchSet.map(globToRegExp)
  return files.filter(f => !res.some(r => r.test(f)))
}

/** Quote for a POSIX shell, so a printed command can be pasted as is. */
export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

/** Control characters (terminal escapes) out of text that is shown or sent on. */
export function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]/g, "?")
}

function duration(ms: number | null): string {
  if (ms === null) return "-"
  const s = Math.round(ms / 1000)
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
}

const cell = (s: string) => printable(s).replace(/\|/g, "\\|").replace(/\n/g, " ")

/** The PR body: the plan's own `pr.body`, then every job with its attempts, duration, status and last report. */
export function prBody(summary: PlanSummary, git: GitView, attempts: Record<string, number>): string {
  const lines: string[] = []
  if (git.pr.body) lines.push(printable(git.pr.body).trim(), "")
  lines.push(
    `Plan **${cell(summary.name)}** (${summary.jobs.length} jobs), merged by concord's merge queue into \`${git.integrationBranch}\`${git.test ? ` with \`${cell(git.test)}\` passing on every merge` : ""}.`,
    ""
  )
  lines.push("| job | status | attempts | duration | last report |", "| --- | --- | --- | --- | --- |")
  for (const j of summary.jobs) {
    const r = j.lastReport ? `${j.lastReport.status}${j.lastReport.message ? `: ${j.lastReport.message}` : ""}` : "-"
    lines.push(
      `| ${cell(j.name)} | ${j.status}${j.skipped ? " (skipped)" : ""} | ${attempts[j.name] ?? j.attempt} | ${duration(j.durationMs)} | ${cell(r.length > 200 ? `${r.slice(0, 197)}...` : r)} |`
    )
  }
  const refused = git.queue.filter(e => e.reason && e.state !== "merged")
  if (refused.length) {
    lines.push("", "Refused by the merge queue:")
    for (const e of refused) lines.push(`- ${cell(e.job)} attempt ${e.attempt}: ${cell(e.reason ?? "")}`)
  }
  return `${lines.join("\n")}\n`
}

export interface PrPlan {
  /** Argument vectors, run in the repository root. */
  push: string[]
  create: string[]
  /** Both as one line a human can paste. */
  command: string
}

/** The push and `gh pr create` commands for a finished plan. */
export function prCommands(repoRoot: string, git: GitView, title: string, bodyFile: string): PrPlan {
  const push = ["git", "push", "--set-upstream", "origin", git.integrationBranch]
  const create = ["gh", "pr", "create", "--base", git.baseBranch ?? "main", "--head", git.integrationBranch, "--title", title, "--body-file", bodyFile]
  if (git.pr.draft) create.push("--draft")
  const line = (argv: string[]) => argv.map(shellQuote).join(" ")
  return { push, create, command: `cd ${shellQuote(repoRoot)} && ${line(push)} && ${line(create)}` }
}
