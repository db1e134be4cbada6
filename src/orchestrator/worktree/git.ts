/**
 * Git, through the `git` command (child_process): worktrees for job attempts, the scratch merge of the
 * merge queue, the compare-and-swap move of the integration branch, and pushing. Thin: decisions live in
 * src/doc/merge.ts (the queue) and policy.ts; this file only runs git and reports what it found.
 */
import { spawn } from "node:child_process"
import { promises as fsp } from "node:fs"
import path from "node:path"
import { ConcordError } from "../../doc/errors.js"
import { ensureDirIn } from "../../sync/storage/atomic.js"

export class GitError extends ConcordError {
  constructor(message: string) {
    super(message, 1)
    this.name = "GitError"
  }
}

export interface Ran {
  code: number | null
  signal: string | null
  stdout: string
  stderr: string
}

/** Run a command, capturing output (at most `maxBytes` of each stream are kept, the tail). */
export function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: NodeJS.ProcessEnv; maxBytes?: number; timeoutMs?: number } = { cwd: "." }
): Promise<Ran> {
  const max = opts.maxBytes ?? 1 << 20
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ["ignore", "pipe", "pipe"], detached: opts.timeoutMs !== undefined })
    let stdout = ""
    let stderr = ""
    const keep = (acc: string, d: Buffer) => {
      const s = acc + d.toString("utf8")
      return s.length > max ? s.slice(s.length - max) : s
    }
    child.stdout.on("data", (d: Buffer) => (stdout = keep(stdout, d)))
    child.stderr.on("data", (d: Buffer) => (stderr = keep(stderr, d)))
    let timer: NodeJS.Timeout | undefined
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        try {
          process.kill(-child.pid!, "SIGKILL")
        } catch {
          /* gone */
        }
      }, opts.timeoutMs)
    }
    child.once("error", e => {
      if (timer) clearTimeout(timer)
      reject(new GitError(`cannot run ${cmd}: ${(e as NodeJS.ErrnoException).code ?? e.message}`))
    })
    child.once("close", (code, signal) => {
      if (timer) clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

const GIT_ENV = { GIT_TERMINAL_PROMPT: "0", GIT_EDITOR: "true", GIT_MERGE_AUTOEDIT: "no", LC_ALL: "C" }

/** git in `cwd`; throws GitError naming the command and git's message unless `allowFail`. */
export async function git(cwd: string, args: string[], opts: { allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  const r = await run("git", args, { cwd, env: { ...process.env, ...GIT_ENV, ...opts.env } })
  if (r.code !== 0 && !opts.allowFail) {
    const msg = (r.stderr || r.stdout).trim().split("\n").slice(-3).join("; ")
    throw new GitError(`git ${args.join(" ")} (in ${cwd}) failed: ${msg || `exit ${r.code}`}`)
  }
  return r
}

const out = (r: Ran) => r.stdout.trim()

/** The top directory of the repository containing `dir`. */
export async function repoRoot(dir: string): Promise<string> {
  try {
    await fsp.access(dir)
  } catch {
    throw new GitError(`repo ${dir} does not exist`)
  }
  const r = await git(dir, ["rev-parse", "--show-toplevel"], { allowFail: true })
  if (r.code !== 0) throw new GitError(`repo ${dir} is not inside a git repository`)
  return out(r)
}

/** The branch checked out in `root`; a detached HEAD is an error (the plan then needs baseBranch). */
export async function currentBranch(root: string): Promise<string> {
  const r = await git(root, ["symbolic-ref", "--short", "-q", "HEAD"], { allowFail: true })
  if (r.code !== 0 || !out(r)) throw new GitError(`repository ${root} is on a detached HEAD: set "baseBranch" in the plan`)
  return out(r)
}

/** The commit a ref points to, or null when it does not exist. */
export async function resolveCommit(root: string, ref: string): Promise<string | null> {
  const r = await git(root, ["rev-parse", "--verify", "-q", `${ref}^{commit}`], { allowFail: true })
  return r.code === 0 ? out(r) : null
}

async function isAncestor(root: string, ancestor: string, of: string): Promise<boolean> {
  return (await git(root, ["merge-base", "--is-ancestor", ancestor, of], { allowFail: true })).code === 0
}

const identities = new Map<string, NodeJS.ProcessEnv>()

/** Author identity for concord's own commits when the repository has none configured. */
async function identityEnv(cwd: string): Promise<NodeJS.ProcessEnv> {
  const known = identities.get(cwd)
  if (known) return known
  const name = out(await git(cwd, ["config", "user.name"], { allowFail: true }))
  const email = out(await git(cwd, ["config", "user.email"], { allowFail: true }))
  const env: NodeJS.ProcessEnv = {}
  if (!name && !process.env.GIT_AUTHOR_NAME) env.GIT_AUTHOR_NAME = env.GIT_COMMITTER_NAME = "concord"
  if (!email && !process.env.GIT_AUTHOR_EMAIL) env.GIT_AUTHOR_EMAIL = env.GIT_COMMITTER_EMAIL = "concord@localhost"
  identities.set(cwd, env)
  return env
}

/** Create (or create again) a branch at `commit`; refuses to move an existing branch unless `force`. */
export async function createBranch(root: string, branch: string, commit: string): Promise<void> {
  await git(root, ["branch", "--no-track", branch, commit])
}

/**
 * A worktree at `dir` on `branch`, starting at `start`. A worktree already there on that branch (left by
 * a launch that crashed before the job started) is reused; the branch is (re)set to `start` otherwise.
 */
/** `store`: the store the worktree lives in; its directory is never created again if it is gone (atomic.ts). */
export async function addWorktree(root: string, dir: string, branch: string, start: string, store: string): Promise<void> {
  const existing = await git(dir, ["rev-parse", "--abbrev-ref", "HEAD"], { allowFail: true }).catch(() => undefined)
  if (existing && existing.code === 0 && out(existing) === branch) {
    const top = out(await git(dir, ["rev-parse", "--show-toplevel"]))
    if (path.resolve(top) === path.resolve(dir)) return
  }
  if (existing) {
    // Something else is in the way (a half-created worktree): clear it and git's record of it.
    await fsp.rm(dir, { recursive: true, force: true })
    await git(root, ["worktree", "prune"])
  }
  await ensureDirIn(store, path.dirname(dir))
  const add = await git(root, ["worktree", "add", "-q", "-B", branch, dir, start], { allowFail: true })
  if (add.code !== 0) {
    // A worktree git still records at this path (removed by hand): prune the record and try once more.
    await fsp.rm(dir, { recursive: true, force: true })
    await git(root, ["worktree", "prune"])
    await git(root, ["worktree", "add", "-q", "-B", branch, dir, start])
  }
}

export async function removeWorktree(root: string, dir: string): Promise<void> {
  await git(root, ["worktree", "remove", "--force", "--force", dir], { allowFail: true })
  await fsp.rm(dir, { recursive: true, force: true })
  await git(root, ["worktree", "prune"], { allowFail: true })
}

export interface SetupSpec {
  copyFiles: string[]
  symlinkDirs: string[]
  commands: string[]
}

class SetupError extends ConcordError {
  readonly output: string
  constructor(message: string, output = "") {
    super(message, 1)
    this.name = "SetupError"
    this.output = output
  }
}

/** Copy files and symlink directories from the main checkout into a worktree (no commands). */
export async function linkSetup(root: string, dir: string, setup: Pick<SetupSpec, "copyFiles" | "symlinkDirs">): Promise<void> {
  for (const f of setup.copyFiles) {
    const from = path.join(root, f)
    const to = path.join(dir, f)
    try {
      await fsp.mkdir(path.dirname(to), { recursive: true })
      await fsp.copyFile(from, to)
    } catch (e) {
      throw new SetupError(`setup.copyFiles: cannot copy ${f} from ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
  for (const d of setup.symlinkDirs) {
    const from = path.join(root, d)
    const to = path.join(dir, d)
    try {
      const st = await fsp.stat(from)
      if (!st.isDirectory()) throw new SetupError(`setup.symlinkDirs: ${d} in ${root} is not a directory`)
      const cur = await fsp.lstat(to).catch(() => undefined)
      if (cur?.isSymbolicLink()) await fsp.unlink(to)
      else if (cur) throw new SetupError(`setup.symlinkDirs: ${d} already exists in the worktree (tracked by git?)`)
      await fsp.mkdir(path.dirname(to), { recursive: true })
      await fsp.symlink(from, to, "dir")
    } catch (e) {
      if (e instanceof SetupError) throw e
      throw new SetupError(`setup.symlinkDirs: cannot link ${d} from ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
    }
  }
}

/** Run setup commands in a worktree, in order; the first failure throws with its output's tail. */
export async function runSetupCommands(dir: string, commands: string[], env: NodeJS.ProcessEnv): Promise<void> {
  for (const c of commands) {
    const r = await run("/bin/sh", ["-c", c], { cwd: dir, env, maxBytes: 64 * 1024 })
    if (r.code !== 0) {
      throw new SetupError(`setup command ${JSON.stringify(c)} failed (${r.signal ?? `exit ${r.code}`})`, tail(r.stdout + r.stderr))
    }
  }
}

/** The last `lines` lines (at most `chars` characters) of an output. */
export function tail(s: string, lines = 30, chars = 4000): string {
  const t = s.trimEnd().split("\n").slice(-lines).join("\n")
  return t.length > chars ? t.slice(t.length - chars) : t
}

/**
 * Commit whatever the job left uncommitted in its worktree (agents often do not commit), except the
 * files setup copied or linked in. Returns the branch head afterwards.
 */
export async function commitAll(dir: string, message: string, exclude: string[]): Promise<string> {
  await git(dir, ["add", "-A"])
  if (exclude.length) await git(dir, ["rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", ...exclude], { allowFail: true })
  const staged = await git(dir, ["diff", "--cached", "--quiet"], { allowFail: true })
  if (staged.code === 1) await git(dir, ["commit", "-q", "--no-verify", "-m", message], { env: await identityEnv(dir) })
  return out(await git(dir, ["rev-parse", "HEAD"]))
}

/** Files that differ between two commits (repository-relative, no rename detection). */
export async function changedFiles(root: string, from: string, to: string): Promise<string[]> {
  const r = await git(root, ["diff", "--name-only", "--no-renames", "-z", from, to])
  return r.stdout.split("\0").filter(Boolean)
}

export type ScratchOutcome = { kind: "merged"; commit: string } | { kind: "conflict"; files: string[] }

/**
 * Merge `branch` onto `base` in the scratch worktree `dir` (detached HEAD; created when missing). A
 * conflict is aborted and reported with the conflicting files; the scratch worktree is left clean.
 */
export async function scratchMerge(
  root: string,
  dir: string,
  base: string,
  branch: string,
  message: string,
  keep: string[],
  /** the store the scratch worktree lives in (never created again if it is gone) */
  store: string
): Promise<ScratchOutcome> {
  const ok = await git(dir, ["rev-parse", "--show-toplevel"], { allowFail: true }).catch(() => undefined)
  if (ok?.code !== 0 || path.resolve(out(ok)) !== path.resolve(dir)) {
    await git(root, ["worktree", "prune"])
    await fsp.rm(dir, { recursive: true, force: true })
    await ensureDirIn(store, path.dirname(dir))
    await git(root, ["worktree", "add", "-q", "--detach", dir, base])
  }
  await git(dir, ["merge", "--abort"], { allowFail: true })
  await git(dir, ["checkout", "-q", "-f", "--detach", base])
  await git(dir, ["clean", "-ffdq", ...keep.flatMap(k => ["-e", `/${k}`])])
  const r = await git(dir, ["merge", "--no-ff", "--no-edit", "-m", message, branch], { allowFail: true, env: await identityEnv(dir) })
  if (r.code !== 0) {
    const u = await git(dir, ["diff", "--name-only", "--diff-filter=U", "-z"], { allowFail: true })
    const files = u.stdout.split("\0").filter(Boolean)
    await git(dir, ["merge", "--abort"], { allowFail: true })
    await git(dir, ["checkout", "-q", "-f", "--detach", base], { allowFail: true })
    if (files.length === 0) throw new GitError(`merging ${branch} failed: ${tail(r.stderr + r.stdout, 3, 500)}`)
    return { kind: "conflict", files }
  }
  return { kind: "merged", commit: out(await git(dir, ["rev-parse", "HEAD"])) }
}

/** Point a ref at a commit (the scratch ref), creating it when missing. */
export async function setRef(root: string, ref: string, commit: string): Promise<void> {
  await git(root, ["update-ref", ref, commit])
}

/**
 * Move `branch` from exactly `from` to `to` (git's compare-and-swap): refused if the branch moved
 * meanwhile, so a half-done or concurrent move can never overwrite anything.
 */
export async function moveBranch(root: string, branch: string, to: string, from: string): Promise<void> {
  await git(root, ["update-ref", "-m", "concord: merge queue", `refs/heads/${branch}`, to, from])
}

export async function runShell(dir: string, command: string, env: NodeJS.ProcessEnv, timeoutMs?: number): Promise<Ran> {
  return run("/bin/sh", ["-c", command], { cwd: dir, env, maxBytes: 256 * 1024, timeoutMs })
}

/* ------------------------------------------------- job worktrees on request (src/ops/git.ts) */

export interface Capped {
  /** The first bytes of the output, cut at the last whole line. */
  text: string
  /** Bytes the command wrote in all. */
  bytes: number
  truncated: boolean
}

/** git in `cwd`, keeping only the first `maxBytes` of its output, cut after the last `sep` (the rest is counted, not kept). */
export async function gitHead(cwd: string, args: string[], maxBytes: number, env?: NodeJS.ProcessEnv, sep = "\n"): Promise<Capped> {
  return new Promise((resolve, reject) => {
    const child = spawn("git", args, { cwd, env: { ...process.env, ...GIT_ENV, ...env }, stdio: ["ignore", "pipe", "pipe"] })
    const kept: Buffer[] = []
    let keptBytes = 0
    let bytes = 0
    let stderr = ""
    child.stdout.on("data", (d: Buffer) => {
      bytes += d.length
      if (keptBytes < maxBytes) {
        const piece = d.subarray(0, maxBytes - keptBytes)
        kept.push(piece)
        keptBytes += piece.length
      }
    })
    child.stderr.on("data", (d: Buffer) => (stderr = (stderr + d.toString("utf8")).slice(-4000)))
    child.once("error", e => reject(new GitError(`cannot run git: ${(e as NodeJS.ErrnoException).code ?? e.message}`)))
    child.once("close", code => {
      if (code !== 0) return reject(new GitError(`git ${args.join(" ")} (in ${cwd}) failed: ${tail(stderr, 3, 500) || `exit ${code}`}`))
      let text = Buffer.concat(kept).toString("utf8")
      const truncated = bytes > keptBytes
      if (truncated) {
        const nl = text.lastIndexOf(sep)
        text = nl >= 0 ? text.slice(0, nl + 1) : ""
      }
      resolve({ text, bytes, truncated })
    })
  })
}

/**
 * A tree object of what a worktree holds now, committed or not (tracked and untracked files, minus
 * ignored ones and `exclude`), written through a temporary index: the worktree's own index, HEAD and
 * files are not touched. (The blobs land in the object store, like any `git add`.)
 */
export async function worktreeTree(dir: string, exclude: string[]): Promise<string> {
  const real = path.resolve(dir, out(await git(dir, ["rev-parse", "--git-path", "index"])))
  const tmp = path.join(path.dirname(real), `concord-index-${process.pid}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`)
  try {
    await fsp.copyFile(real, tmp).catch(() => {})
    const env = { GIT_INDEX_FILE: tmp }
    await git(dir, ["add", "-A"], { env })
    if (exclude.length) await git(dir, ["rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", ...exclude], { env, allowFail: true })
    return out(await git(dir, ["write-tree"], { env }))
  } finally {
    await fsp.rm(tmp, { force: true })
  }
}

/** Tracked files with changes not committed (staged or not) in a worktree; untracked files are not listed. */
export async function uncommittedChanges(dir: string): Promise<string[]> {
  const r = await git(dir, ["status", "--porcelain", "-z", "--no-renames", "--untracked-files=no"])
  return r.stdout
    .split("\0")
    .filter(Boolean)
    .map(l => l.slice(3))
}

/** A rebase, merge, cherry-pick or revert left unfinished in a worktree (by an agent, or a sync that was killed), if any. */
export async function operationInProgress(dir: string): Promise<string | null> {
  for (const [file, what] of [
    ["rebase-merge", "rebase"],
    ["rebase-apply", "rebase"],
    ["MERGE_HEAD", "merge"],
    ["CHERRY_PICK_HEAD", "cherry-pick"],
    ["REVERT_HEAD", "revert"],
  ] as const) {
    const p = path.resolve(dir, out(await git(dir, ["rev-parse", "--git-path", file])))
    if (
      await fsp.access(p).then(
        () => true,
        () => false
      )
    )
      return what
  }
  return null
}

/** What a sync of a job's worktree did. */
export type SyncOutcome =
  | { kind: "up_to_date"; head: string }
  | { kind: "synced"; head: string; from: string }
  | { kind: "conflict"; files: string[]; detail: string }

/**
 * Bring the branch checked out in `dir` up to date with `onto`, by rebase or merge. On a conflict (or any
 * failure) the rebase or merge is aborted and the branch put back where it was: the worktree is left as
 * it was found, and the conflicting files are reported.
 */
export async function syncWorktree(dir: string, onto: string, strategy: "rebase" | "merge", message: string): Promise<SyncOutcome> {
  const before = out(await git(dir, ["rev-parse", "HEAD"]))
  if (await isAncestor(dir, onto, before)) return { kind: "up_to_date", head: before }
  const env = await identityEnv(dir)
  const args = strategy === "rebase" ? ["rebase", "--no-autostash", onto] : ["merge", "--no-autostash", "--no-edit", "-m", message, onto]
  const r = await git(dir, args, { allowFail: true, env })
  if (r.code === 0) return { kind: "synced", head: out(await git(dir, ["rev-parse", "HEAD"])), from: before }
  const u = await git(dir, ["diff", "--name-only", "--diff-filter=U", "-z"], { allowFail: true })
  const files = u.stdout.split("\0").filter(Boolean)
  await git(dir, [strategy, "--abort"], { allowFail: true })
  const now = out(await git(dir, ["rev-parse", "HEAD"], { allowFail: true }))
  if (now !== before) await git(dir, ["reset", "-q", "--keep", before], { allowFail: true })
  return { kind: "conflict", files, detail: tail(r.stderr + r.stdout, 3, 500) }
}
