/**
 * Durable, atomic file writes: write a temp file, fsync it, rename it over the target, fsync the
 * directory. Readers see the old file or the new one, never a torn one, and a process killed at any
 * moment leaves at most a stray temp file.
 *
 * The one rule about a store's root directory: a write into a store creates the directories it needs
 * *below* the root ({@link ensureDirIn}, `writeFileAtomic(..., { root })`), never the root itself. A store
 * deleted or moved away while a process uses it stays gone (the write fails with {@link StoreGoneError})
 * instead of coming back as a skeleton holding only the files written afterwards. Only a deliberate
 * creation (a new plan, `concord serve`, `concord sync`; ConcordStorageAdapter.createRoot) makes a root.
 */
import { randomBytes } from "node:crypto"
import { closeSync, fsyncSync, mkdirSync, openSync, promises as fsp, renameSync, statSync, unlinkSync, writeFileSync } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import path from "node:path"
import { type GroupOutcome, groupWriter, type ThreadGroupFile } from "./group-writer.js"
import { errnoCode, StoreGoneError } from "./StoreError.js"

let counter = 0
/** This process's part of its temp file names (with the pid and a counter: unique without a random draw per write). */
const processTag = `${process.pid}.${randomBytes(6).toString("hex")}`

export interface AtomicWriteOptions {
  /** Where the temp file goes (same filesystem as the target). Default: the target's directory. */
  tmpDir?: string
  mode?: number
  /** fsync the file and its directory (default). Caches that can be rebuilt skip it. */
  durable?: boolean
  /**
   * The store the target lives in: directories are created below it only, and a missing root fails the
   * write with StoreGoneError (see the top of this file). Without it, every missing parent is created.
   */
  root?: string
  /**
   * Make the write with blocking system calls when its directory exists (known, see knownDirs, or found
   * by one stat): the eight steps then cost no round trips through Node's thread pool, which is most of a
   * small durable write's time. For a process that has nothing else to do meanwhile: a long-lived one that
   * answers a sender only once the write is durable, a one-shot `concord report`. A directory that does
   * not exist yet is made by the usual path; anything unexpected (a directory gone, a full disk) falls back
   * to it too, which handles and reports it.
   */
  blocking?: boolean
}

/**
 * Directories this process made or found (a write into one skips its mkdir; the store's hot path writes
 * into the same few). A directory removed since is found by the write itself, which fails with ENOENT:
 * it is then forgotten, made again under the same rules, and the write retried once.
 */
const knownDirs = new Set<string>()

export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(target)
  const makeDir = async () => {
    knownDirs.delete(dir)
    await (opts.root === undefined ? ensureDir(dir) : ensureDirIn(opts.root, dir))
    if (knownDirs.size >= 4096) knownDirs.clear()
    knownDirs.add(dir)
  }
  if (opts.blocking && existingDir(dir) && writeBlocking(target, data, dir, tempName(target, dir, opts), opts)) return
  if (!knownDirs.has(dir)) await makeDir()
  const tmp = tempName(target, dir, opts)
  try {
    let fh: FileHandle
    try {
      fh = await fsp.open(tmp, "wx", opts.mode ?? 0o644)
    } catch (e) {
      // the temp file's directory is the target's, removed since we last wrote there: make it again
      if (errnoCode(e) !== "ENOENT" || opts.tmpDir !== undefined) throw e
      await makeDir()
      fh = await fsp.open(tmp, "wx", opts.mode ?? 0o644)
    }
    try {
      await fh.writeFile(data)
      if (opts.durable !== false) await fh.sync()
    } finally {
      await fh.close()
    }
    try {
      await fsp.rename(tmp, target)
    } catch (e) {
      // The directory was removed (another process's removeRange, or since we last wrote there):
      // recreate, retry once.
      if (errnoCode(e) !== "ENOENT") throw e
      await makeDir()
      await fsp.rename(tmp, target)
    }
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {})
    throw e
  }
  if (opts.durable !== false) await fsyncDir(dir)
}

/** Whether `dir` is known (knownDirs) or found to be a directory by a blocking stat (then known from now on). */
function existingDir(dir: string): boolean {
  if (knownDirs.has(dir)) return true
  try {
    if (!statSync(dir).isDirectory()) return false
  } catch {
    return false
  }
  if (knownDirs.size >= 4096) knownDirs.clear()
  knownDirs.add(dir)
  return true
}

function tempName(target: string, dir: string, opts: AtomicWriteOptions): string {
  return path.join(opts.tmpDir ?? dir, `.${path.basename(target)}.${processTag}.${++counter}.tmp`)
}

/** writeFileAtomic's steps as blocking calls; false (nothing left behind) when any step failed. */
function writeBlocking(target: string, data: string | Uint8Array, dir: string, tmp: string, opts: AtomicWriteOptions): boolean {
  try {
    const fd = openSync(tmp, "wx", opts.mode ?? 0o644)
    try {
      writeFileSync(fd, data)
      if (opts.durable !== false) fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, target)
  } catch {
    try {
      unlinkSync(tmp)
    } catch {
      // never made, or already renamed
    }
    return false
  }
  if (opts.durable === false) return true
  let dfd: number | undefined
  try {
    dfd = openSync(dir, "r")
    fsyncSync(dfd)
    return true
  } catch {
    // (the file is in place; the usual path writes it again and fsyncs the directory, or says why not)
    return false
  } finally {
    if (dfd !== undefined) closeSync(dfd)
  }
}

/** One file of a group write (see writeFilesAtomicGroup). */
export interface GroupWrite {
  target: string
  data: string | Uint8Array
  /** Where the temp file goes (same filesystem as the target). Default: the target's directory. */
  tmpDir?: string
  mode?: number
}

/**
 * Several atomic, durable writes made together (a group commit), on a thread of their own (group-writer.ts):
 * every temp file is written, all of them are fsynced at once through the thread pool, each is renamed over
 * its target, and then each directory written into is fsynced once, again all at once. Per file that is
 * two thread-pool calls (its fsync and a share of its directory's) instead of writeFileAtomic's eight, the
 * journal commits of concurrent fsyncs are shared by the file system, and the caller's thread makes none
 * of the calls and waits for none of them: it sends the group and gets its outcome back.
 *
 * The guarantees are writeFileAtomic's, file by file: a target is replaced only by a complete temp file
 * that is already durable, and is reported written only once its directory is durable too. A file whose
 * directory this process has not written into yet (see knownDirs), or any step of which fails, is left
 * out (`written[i]` false, nothing left behind but possibly the target in place, not yet known durable):
 * the caller writes it with writeFileAtomic, which makes directories and reports errors.
 */
export async function writeFilesAtomicGroup(items: GroupWrite[]): Promise<GroupOutcome> {
  const written = items.map(() => false)
  if (process.platform === "win32") return { written, fileSyncs: 0, dirSyncs: 0 }
  const sent: number[] = []
  const files: ThreadGroupFile[] = []
  for (const [i, it] of items.entries()) {
    const dir = path.dirname(it.target)
    if (!knownDirs.has(dir)) continue
    sent.push(i)
    files.push({ target: it.target, tmp: tempName(it.target, dir, it), data: it.data, mode: it.mode })
  }
  const out = await groupWriter.write(files)
  for (const [n, i] of sent.entries()) written[i] = out.written[n]
  return { written, fileSyncs: out.fileSyncs, dirSyncs: out.dirSyncs }
}

/** Errors with which some platforms or file systems refuse to open or fsync a directory (group-writer.ts has its own copy: its code runs on a thread of its own). */
function unsyncableDir(code: string | undefined): boolean {
  return code === "EISDIR" || code === "EINVAL" || code === "EPERM" || code === "EBADF"
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await fsp.open(dir, "r")
    await fh.sync()
  } catch (e) {
    // some platforms/filesystems cannot fsync directories
    if (unsyncableDir(errnoCode(e))) return
    throw e
  } finally {
    await fh?.close().catch(() => {})
  }
}

/** mkdir -p, then fsync the parent of every directory that was created. */
export async function ensureDir(dir: string): Promise<void> {
  const first = await fsp.mkdir(dir, { recursive: true })
  if (first === undefined) return
  // directories from `first` down to `dir` were created: make their entries durable
  const created: string[] = []
  for (let d = dir; ; d = path.dirname(d)) {
    created.push(d)
    if (d === first || path.dirname(d) === d) break
  }
  for (const d of created.reverse()) await fsyncDir(path.dirname(d)).catch(() => {})
}

/** `dir` relative to `root`, which it must be inside of (or equal to). */
function below(root: string, dir: string): string {
  const rel = path.relative(root, dir)
  if (rel.startsWith("..") || path.isAbsolute(rel)) throw new Error(`${dir} is not inside ${root}`)
  return rel
}

/**
 * mkdir -p of `dir` inside the store `root`, never creating `root` itself: each missing directory is
 * made with a plain mkdir of one level, so a root that is gone (even one deleted while this runs) fails
 * with StoreGoneError instead of being made again. The parent of every directory made is fsynced.
 */
export async function ensureDirIn(root: string, dir: string, mode?: number): Promise<void> {
  if (below(root, dir) === "") {
    const st = await fsp.stat(root).catch(e => {
      if (errnoCode(e) === "ENOENT") throw new StoreGoneError(root)
      throw e
    })
    if (!st.isDirectory()) throw Object.assign(new Error(`${root} is not a directory`), { code: "ENOTDIR" })
    return
  }
  try {
    await fsp.mkdir(dir, mode)
  } catch (e) {
    const code = errnoCode(e)
    if (code === "EEXIST") return
    if (code !== "ENOENT") throw e
    // the parent is missing: make it (within the root), then this one
    await ensureDirIn(root, path.dirname(dir), mode)
    try {
      await fsp.mkdir(dir, mode)
    } catch (e2) {
      if (errnoCode(e2) === "EEXIST") return
      if (errnoCode(e2) === "ENOENT") throw new StoreGoneError(root) // gone again meanwhile
      throw e2
    }
  }
  await fsyncDir(path.dirname(dir)).catch(() => {})
}

/** ensureDirIn for synchronous callers (no fsync of the parents). */
export function ensureDirInSync(root: string, dir: string, mode?: number): void {
  if (below(root, dir) === "") {
    try {
      statSync(root)
    } catch (e) {
      if (errnoCode(e) === "ENOENT") throw new StoreGoneError(root)
      throw e
    }
    return
  }
  try {
    mkdirSync(dir, mode)
  } catch (e) {
    const code = errnoCode(e)
    if (code === "EEXIST") return
    if (code !== "ENOENT") throw e
    ensureDirInSync(root, path.dirname(dir), mode)
    try {
      mkdirSync(dir, mode)
    } catch (e2) {
      if (errnoCode(e2) === "EEXIST") return
      if (errnoCode(e2) === "ENOENT") throw new StoreGoneError(root)
      throw e2
    }
  }
}
