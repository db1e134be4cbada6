/**
 * `npm start`, part two: the git demo. Makes a throwaway git repository, runs the plan
 * examples/git-demo.yaml in it (three agents, each in its own worktree; a merge queue that tests every
 * combination before the integration branch moves), and ends with the integration branch and the
 * pull request command. Exits 0 only if every job merged and the PR command was produced.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const bin = path.join(root, "bin", "concord.js")
const env = {
  ...process.env,
  CONCORD_STORE: process.env.CONCORD_STORE ?? path.join(root, ".concord"),
  GIT_DEMO_AGENT: path.join(root, "examples", "git-agent.sh"),
}
const say = (s = "") => process.stdout.write(`${s}\n`)
const git = (cwd: string, ...args: string[]) => execFileSync("git", args, { cwd, encoding: "utf8" }).trim()

function concord(args: string[], capture = false) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: root, env, stdio: capture ? ["ignore", "pipe", "inherit"] : "inherit", encoding: "utf8" })
  return { code: r.status ?? 1, stdout: r.stdout ?? "" }
}

// A throwaway repository: a README and a test script that passes.
const repo = mkdtempSync(path.join(os.tmpdir(), "concord-git-demo-"))
git(repo, "init", "-q", "-b", "main")
git(repo, "config", "user.name", "Demo")
git(repo, "config", "user.email", "demo@example.com")
writeFileSync(path.join(repo, "README.md"), "# greeter\n")
writeFileSync(path.join(repo, "test.sh"), 'echo "no tests yet"\n')
git(repo, "add", "-A")
git(repo, "commit", "-q", "-m", "initial")
const planFile = path.join(repo, "concord-plan.yaml")
copyFileSync(path.join(root, "examples", "git-demo.yaml"), planFile)
writeFileSync(path.join(repo, ".git", "info", "exclude"), "concord-plan.yaml\n")

say()
say("concord git demo: three agents, each in its own git worktree, merged through a tested queue.")
say("  greet -> tests, docs   (tests and docs start from greet's merged work)")
say(`repository: ${repo}`)
say()
const created = concord(["plan", "create", planFile, "--json"], true)
if (created.code !== 0) process.exit(created.code)
const { id } = JSON.parse(created.stdout) as { id: string }
const run = concord(["run", id])

const status = JSON.parse(concord(["status", id, "--json"], true).stdout)
const allMerged = status.jobs.every((j: { status: string }) => j.status === "merged")
say()
say(`integration branch concord/greeter in ${repo}:`)
say(git(repo, "log", "--graph", "--format=%h %s", "concord/greeter"))
const ok = run.code === 0 && allMerged && status.status === "completed"
say()
say(ok ? "As expected: every job merged in dependency order, each merge tested; the PR command is above." : "Unexpected outcome: see the output above.")
say(`Inspect:  git -C ${repo} log --graph --oneline concord/greeter   |   node bin/concord.js history ${id}`)
process.exit(ok ? 0 : 1)
