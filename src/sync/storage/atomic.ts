/**
 * Durable, atomic file writes: write a temp file, fsync it, rename it over the target, fsync the
 * directory. Readers see the old file or the new one, never a torn one, and a process killed at any
 * moment leaves at most a stray temp file.
 */
import { randomBytes } from "node:crypto"
import { promises as fsp } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import path from "node:path"
import { errnoCode } from "./StoreError.js"

let counter = 0

export interface AtomicWriteOptions {
  /** Where the temp file goes (same filesystem as the target). Default: the target's directory. */
  tmpDir?: string
  mode?: number
  /** fsync the file and its directory (default). Caches that can be rebuilt skip it. */
  durable?: boolean
}

export async function writeFileAtomic(target: string, data: string | Uint8Array, opts: AtomicWriteOptions = {}): Promise<void> {
  const dir = path.dirname(target)
  await ensureDir(dir)
  const tmp = path.join(opts.tmpDir ?? dir, `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString("hex")}.${++counter}.tmp`)
  try {
    const fh = await fsp.open(tmp, "wx", opts.mode ?? 0o644)
    try {
      await fh.writeFile(data)
      if (opts.durable !== false) await fh.sync()
    } finally {
      await fh.close()
    }
    try {
      await fsp.rename(tmp, target)
    } catch (e) {
      // The directory was removed concurrently (another process's removeRange): recreate, retry once.
      if (errnoCode(e) !== "ENOENT") throw e
      await ensureDir(dir)
      await fsp.rename(tmp, target)
    }
  } catch (e) {
    await fsp.unlink(tmp).catch(() => {})
    throw e
  }
  if (opts.durable !== false) await fsyncDir(dir)
}

export async function fsyncDir(dir: string): Promise<void> {
  let fh: FileHandle | undefined
  try {
    fh = await fsp.open(dir, "r")
    await fh.sync()
  } catch (e) {
    const code = errnoCode(e)
    // some platforms/filesystems cannot fsync directories
    if (code === "EISDIR" || code === "EINVAL" || code === "EPERM" || code === "EBADF") return
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
