/** Test harness: throwaway git repositories in temp dirs, and a fake `gh` that records its arguments. */
import { execFileSync } from "node:child_process"
import { chmodSync, mkdirSync, writeFileSync } from "node:fs"
import path from "node:path"

export function sh(cwd: string, ...args: string[]): string {
  return execFileSync("git", args, { cwd, encoding: "utf8", env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } }).trim()
}

/** A repository on branch main with one commit holding `files`. */
export function makeRepo(dir: string, files: Record<string, string> = { "README.md": "line 1\nline 2\nline 3\n" }): string {
  mkdirSync(dir, { recursive: true })
  sh(dir, "init", "-q", "-b", "main")
  sh(dir, "config", "user.name", "Test")
  sh(dir, "config", "user.email", "test@example.com")
  for (const [f, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, f)), { recursive: true })
    writeFileSync(path.join(dir, f), text)
  }
  sh(dir, "add", "-A")
  sh(dir, "commit", "-q", "-m", "initial")
  return dir
}

/** A bare repository added as `origin` of `repo`. */
export function addOrigin(repo: string, bare: string): void {
  execFileSync("git", ["init", "-q", "--bare", bare])
  sh(repo, "remote", "add", "origin", bare)
}

/**
 * A fake `gh` in `binDir`: `gh auth status` succeeds, `gh pr create` prints a PR address; every call
 * appends its arguments (one JSON array per line) to `log`.
 */
export function fakeGh(binDir: string, log: string): void {
  mkdirSync(binDir, { recursive: true })
  const script = `#!/bin/sh
node -e 'require("fs").appendFileSync(process.argv[1], JSON.stringify(process.argv.slice(2)) + "\\n")' "${log}" "$@"
if [ "$1" = pr ] && [ "$2" = create ]; then echo "https://github.com/example/repo/pull/7"; fi
exit 0
`
  writeFileSync(path.join(binDir, "gh"), script)
  chmodSync(path.join(binDir, "gh"), 0o755)
}

/** Subjects of the merge commits on a branch, oldest first. */
export function merges(repo: string, branch: string): string[] {
  const out = sh(repo, "log", "--merges", "--reverse", "--format=%s", branch)
  return out ? out.split("\n") : []
}
