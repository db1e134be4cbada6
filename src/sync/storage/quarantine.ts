/**
 * The quarantine directory (`<store>/quarantine/`): damaged chunk files moved out of a document's
 * directories so that no reader (ours or a stock automerge-repo peer, which concatenates every chunk
 * and silently drops everything after a bad one) trips over them.
 *
 * A quarantined file is `<docId>__<snapshot|incremental>__<hash>.<ms>`: the storage key joined with
 * `__`, and when it was moved. Quarantine is never a dead end: a file that validates later (a
 * non-atomic writer such as NodeFSStorageAdapter finished writing into it after it was moved; rename
 * keeps the inode) is put back where it came from, by {@link restoreQuarantined} (run automatically
 * whenever a document is listed, and by `concord doctor --fix`).
 */
import { promises as fsp } from "node:fs"
import path from "node:path"
import type { VerifyResult } from "./chunk-format.js"
import { ensureDirIn, fsyncDir } from "./atomic.js"
import { errnoCode, StoreError } from "./StoreError.js"

const QUARANTINE_DIR = "quarantine"

/** Quarantine only chunks that have been damaged, and unchanged, for at least this long (ms). */
export const DEFAULT_QUARANTINE_GRACE_MS = 60_000

/** Env override of the grace period (ms), for tests and unusual setups. */
const QUARANTINE_GRACE_ENV = "CONCORD_QUARANTINE_GRACE_MS"

/** The grace period from the environment, if set to a valid number of ms. */
export function graceFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env[QUARANTINE_GRACE_ENV]
  if (v === undefined || v.trim() === "") return undefined
  const n = Number(v)
  return Number.isFinite(n) && n >= 0 ? n : undefined
}

export interface QuarantinedFile {
  /** file name inside the quarantine directory */
  name: string
  file: string
  /** the storage key it came from ([docId, type, hash]); undefined if the name is not one of ours */
  key?: string[]
  /** when it was quarantined (ms), from its name */
  quarantinedAt?: number
  size: number
  mtimeMs: number
}

/** Parse a quarantine file name back into its storage key. */
function parseQuarantineName(name: string): { key: string[]; at: number } | undefined {
  const m = /^(.+)\.(\d+)$/.exec(name)
  if (!m) return undefined
  const key = m[1].split("__")
  if (key.length !== 3) return undefined
  const [docId, type, hash] = key
  if (!/^[1-9A-HJ-NP-Za-km-z]{3,64}$/.test(docId)) return undefined
  if (type !== "snapshot" && type !== "incremental") return undefined
  if (!/^[0-9A-Za-z_-]{1,128}$/.test(hash)) return undefined
  return { key, at: Number(m[2]) }
}

/** Name for a quarantined copy of `key`. */
export function quarantineName(key: readonly string[], now = Date.now()): string {
  return `${key.join("__")}.${now}`
}

/** The files in `<storeDir>/quarantine/` (optionally only those of one document). */
export async function listQuarantine(storeDir: string, docId?: string): Promise<QuarantinedFile[]> {
  const dir = path.join(storeDir, QUARANTINE_DIR)
  let names: string[]
  try {
    names = await fsp.readdir(dir)
  } catch (e) {
    const code = errnoCode(e)
    if (code === "ENOENT" || code === "ENOTDIR") return []
    throw StoreError.from("list", dir, e)
  }
  const out: QuarantinedFile[] = []
  for (const name of names.sort()) {
    if (docId !== undefined && !name.startsWith(`${docId}__`)) continue
    const file = path.join(dir, name)
    const st = await fsp.stat(file).catch(() => undefined)
    if (!st?.isFile()) continue
    const parsed = parseQuarantineName(name)
    out.push({ name, file, key: parsed?.key, quarantinedAt: parsed?.at, size: st.size, mtimeMs: st.mtimeMs })
  }
  return out
}

export interface QuarantineSummary {
  dir: string
  /** number of files in the quarantine directory */
  count: number
  bytes: number
}

/**
 * Cheap: one readdir (and a stat per quarantined file). For `status` to say, in one line, that a
 * store holds quarantined data.
 */
export async function quarantineSummary(storeDir: string): Promise<QuarantineSummary> {
  const dir = path.join(path.resolve(storeDir), QUARANTINE_DIR)
  const files = await listQuarantine(path.resolve(storeDir)).catch(() => [])
  return { dir, count: files.length, bytes: files.reduce((n, f) => n + f.size, 0) }
}

export type RestoreOutcome =
  | { kind: "restored"; file: QuarantinedFile; target: string }
  /** the same bytes are back in place already: the quarantined copy was removed */
  | { kind: "duplicate"; file: QuarantinedFile; target: string }
  | { kind: "damaged"; file: QuarantinedFile; reason: string }
  | { kind: "conflict"; file: QuarantinedFile; target: string; reason: string }
  | { kind: "unknown"; file: QuarantinedFile; reason: string }

export interface RestoreDeps {
  /** where the file for `key` lives */
  filePath(key: string[]): string
  /** validation of a chunk's bytes for its key */
  verify(key: string[], data: Uint8Array): VerifyResult
}

/**
 * Look at every quarantined file (of `docId`, or all) and put back the ones that are valid now.
 * With `dryRun`, only say what would happen. Never overwrites a valid file; a damaged file in the
 * way is replaced by the valid quarantined one.
 */
export async function restoreQuarantined(
  storeDir: string,
  deps: RestoreDeps,
  opts: { docId?: string; dryRun?: boolean; files?: QuarantinedFile[] } = {}
): Promise<RestoreOutcome[]> {
  const files = opts.files ?? (await listQuarantine(storeDir, opts.docId))
  const out: RestoreOutcome[] = []
  for (const f of files) {
    if (!f.key) {
      out.push({ kind: "unknown", file: f, reason: "not a quarantined chunk name (<docId>__<type>__<hash>.<ms>)" })
      continue
    }
    let data: Uint8Array
    try {
      data = await fsp.readFile(f.file)
    } catch (e) {
      if (errnoCode(e) === "ENOENT") continue // restored or removed by another process meanwhile
      throw StoreError.from("read", f.file, e)
    }
    const v = deps.verify(f.key, data)
    if (!v.ok) {
      out.push({ kind: "damaged", file: f, reason: v.reason })
      continue
    }
    const target = deps.filePath(f.key)
    const existing = await fsp.readFile(target).catch(e => (errnoCode(e) === "ENOENT" ? undefined : Promise.reject(e)))
    if (existing && Buffer.compare(Buffer.from(existing), Buffer.from(data)) === 0) {
      if (!opts.dryRun) await fsp.unlink(f.file).catch(() => {})
      out.push({ kind: "duplicate", file: f, target })
      continue
    }
    if (existing && deps.verify(f.key, existing).ok) {
      out.push({ kind: "conflict", file: f, target, reason: "a different valid file already holds this key; left it in quarantine" })
      continue
    }
    if (opts.dryRun) {
      out.push({ kind: "restored", file: f, target })
      continue
    }
    try {
      await ensureDirIn(path.resolve(storeDir), path.dirname(target))
      if (existing) {
        // a damaged file sits where the valid one belongs: replace it (atomically)
        await fsp.rename(f.file, target)
      } else {
        try {
          // link + unlink: never clobbers a file another process put there meanwhile
          await fsp.link(f.file, target)
          await fsp.unlink(f.file)
        } catch (e) {
          const code = errnoCode(e)
          if (code === "EEXIST") continue // someone else restored or rewrote it: look again next time
          if (code === "ENOENT") continue // another process restored it first
          if (code !== "EPERM" && code !== "ENOTSUP" && code !== "EXDEV") throw e
          await fsp.rename(f.file, target) // filesystem without hard links
        }
      }
      await fsyncDir(path.dirname(target)).catch(() => {})
      await fsyncDir(path.dirname(f.file)).catch(() => {})
    } catch (e) {
      if (errnoCode(e) === "ENOENT") continue
      throw StoreError.from("restore", target, e)
    }
    out.push({ kind: "restored", file: f, target })
  }
  return out
}
