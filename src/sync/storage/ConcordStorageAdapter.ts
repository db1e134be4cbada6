/**
 * A crash-safe, multi-process-safe filesystem StorageAdapter for automerge-repo.
 *
 * Same on-disk layout as NodeFSStorageAdapter (`<dir>/<key0[0:2]>/<key0[2:]>/<key1>/<key2>...`),
 * so both can use one directory. Differences:
 *  - saves are atomic and durable (temp file in `<dir>/.tmp`, fsync, rename, fsync directory);
 *  - snapshot / incremental chunks are verified when read; a damaged one is moved to
 *    `<dir>/quarantine/` with a warning instead of being handed to Automerge (which would silently
 *    drop it together with every other chunk concatenated after it);
 *  - loadRange retries when a listed file disappears before it is read (another process compacted);
 *  - no cache of file contents, so several processes can share the directory;
 *  - disk errors are thrown as {@link StoreError} with the path and errno code.
 */
import type { Chunk, StorageAdapterInterface, StorageKey } from "@automerge/automerge-repo/slim"
import { createHash } from "node:crypto"
import { promises as fsp, type Dirent } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import path from "node:path"
import { ensureDir, fsyncDir, writeFileAtomic } from "./atomic.js"
import { verifyAutomergeBytes, type VerifyResult } from "./chunk-format.js"
import { StoreError, errnoCode } from "./StoreError.js"

export { StoreError } from "./StoreError.js"
export { fsyncDir } from "./atomic.js"

export const TMP_DIR_NAME = ".tmp"
export const QUARANTINE_DIR_NAME = "quarantine"

export interface ConcordStorageAdapterOptions {
  /** Receives warnings (damaged chunk quarantined, ...). Default: `concord: warning: <msg>` on stderr. */
  onWarning?: (msg: string) => void
  /**
   * A damaged chunk whose mtime is more recent than this is skipped but left in place (it may be a
   * file another, non-atomic writer such as NodeFSStorageAdapter is still writing); older damaged
   * chunks are quarantined. Default 0: quarantine at once (right when every writer is atomic, e.g.
   * ConcordStorageAdapter / DocStore). Set e.g. 2000 when NodeFSStorageAdapter writers share the
   * directory, so a file they are still writing is not moved away under them.
   */
  quarantineGraceMs?: number
  /** How many times loadRange re-lists after a listed file vanished. Default 5. */
  loadRangeRetries?: number
}

export function defaultWarning(msg: string): void {
  try {
    process.stderr.write(`concord: warning: ${msg}\n`)
  } catch {
    // nothing sensible left to do
  }
}

/** Chunk keys we verify: [docId, "snapshot" | "incremental", hash]. */
export function isDocChunkKey(key: StorageKey): boolean {
  return key.length >= 3 && (key[1] === "snapshot" || key[1] === "incremental")
}

interface ListedFile {
  key: StorageKey
  file: string
}

interface ReadFile {
  key: StorageKey
  file: string
  data: Uint8Array
  mtimeNs: bigint
}

const READ_PARALLELISM = 16

const keyString = (key: StorageKey) => key.join("\u0000")

export class ConcordStorageAdapter implements StorageAdapterInterface {
  readonly baseDirectory: string
  readonly #warn: (msg: string) => void
  readonly #graceMs: number
  readonly #retries: number
  /**
   * Keys this instance wrote: write order (to order loadRange results on mtime ties) and the sha256
   * of the bytes written. A chunk byte-identical to what we wrote ourselves is returned as written,
   * even if it is not valid Automerge (the adapter is a key/value store; verification is there to
   * catch files torn or damaged by crashes and other writers).
   */
  readonly #written = new Map<string, { seq: number; sha256: string }>()
  #seq = 0
  #tmpReady = false
  /** Files we already warned about but left in place (grace period), to warn only once. */
  readonly #warnedRecent = new Set<string>()

  constructor(baseDirectory: string, opts: ConcordStorageAdapterOptions = {}) {
    this.baseDirectory = path.resolve(baseDirectory)
    this.#warn = opts.onWarning ?? defaultWarning
    this.#graceMs = opts.quarantineGraceMs ?? 0
    this.#retries = opts.loadRangeRetries ?? 5
  }

  get tmpDirectory(): string {
    return path.join(this.baseDirectory, TMP_DIR_NAME)
  }

  get quarantineDirectory(): string {
    return path.join(this.baseDirectory, QUARANTINE_DIR_NAME)
  }

  /** Path of the file holding `key` (same mapping as NodeFSStorageAdapter). */
  filePath(key: StorageKey): string {
    checkKey(key)
    const [first, ...rest] = key
    return path.join(this.baseDirectory, first.slice(0, 2), first.slice(2), ...rest)
  }

  // ---------------------------------------------------------------- load

  async load(key: StorageKey): Promise<Uint8Array | undefined> {
    const file = this.filePath(key)
    const read = await this.#readOne(key, file)
    if (read === undefined) return undefined
    return (await this.#validate(read)) ? read.data : undefined
  }

  async loadRange(keyPrefix: StorageKey): Promise<Chunk[]> {
    let lastGood: ReadFile[] = []
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      const listed = await this.#list(keyPrefix)
      const got: ReadFile[] = []
      let vanished = false
      const lastAttempt = attempt === this.#retries
      // read with bounded parallelism; stop early (unless this is the last attempt) once a file vanished
      let next = 0
      const worker = async () => {
        while (next < listed.length && (lastAttempt || !vanished)) {
          const f = listed[next++]
          const r = await this.#readOne(f.key, f.file)
          if (r) got.push(r)
          else vanished = true
        }
      }
      await Promise.all(Array.from({ length: Math.min(READ_PARALLELISM, listed.length) }, worker))
      lastGood = got
      if (!vanished) break
      // a listed file was deleted before we could read it: another process compacted; re-list so
      // that we also see the snapshot that replaced it.
    }
    const valid: ReadFile[] = []
    for (const r of lastGood) if (await this.#validate(r)) valid.push(r)
    valid.sort((a, b) => {
      if (a.mtimeNs !== b.mtimeNs) return a.mtimeNs < b.mtimeNs ? -1 : 1
      const sa = this.#written.get(keyString(a.key))?.seq ?? Number.MAX_SAFE_INTEGER
      const sb = this.#written.get(keyString(b.key))?.seq ?? Number.MAX_SAFE_INTEGER
      if (sa !== sb) return sa - sb
      const ka = keyString(a.key)
      const kb = keyString(b.key)
      return ka < kb ? -1 : ka > kb ? 1 : 0
    })
    return valid.map(r => ({ key: r.key, data: r.data }))
  }

  /**
   * List the keys under `keyPrefix` without reading them. Directories are walked in sorted order
   * (so `incremental/` is listed before `snapshot/`).
   */
  async listKeys(keyPrefix: StorageKey): Promise<StorageKey[]> {
    return (await this.#list(keyPrefix)).map(f => f.key)
  }

  // ---------------------------------------------------------------- save

  async save(key: StorageKey, data: Uint8Array): Promise<void> {
    const target = this.filePath(key)
    try {
      await this.#ensureTmpDir()
      await writeFileAtomic(target, data, { tmpDir: this.tmpDirectory })
      this.#written.set(keyString(key), { seq: ++this.#seq, sha256: sha256hex(data) })
    } catch (e) {
      throw StoreError.from("write", target, e)
    }
  }

  // ---------------------------------------------------------------- remove

  async remove(key: StorageKey): Promise<void> {
    const file = this.filePath(key)
    this.#written.delete(keyString(key))
    try {
      await fsp.unlink(file)
    } catch (e) {
      const code = errnoCode(e)
      if (code === "ENOENT") return
      // key path runs through a regular file: nothing stored under this key
      if (code === "ENOTDIR") return
      throw StoreError.from("remove", file, e)
    }
  }

  async removeRange(keyPrefix: StorageKey): Promise<void> {
    const listed = await this.#list(keyPrefix)
    for (const f of listed) {
      this.#written.delete(keyString(f.key))
      try {
        await fsp.unlink(f.file)
      } catch (e) {
        if (errnoCode(e) !== "ENOENT") throw StoreError.from("remove", f.file, e)
      }
    }
  }

  // ---------------------------------------------------------------- internals

  /** Read one file with its mtime; undefined if it does not exist (any more). */
  async #readOne(key: StorageKey, file: string): Promise<ReadFile | undefined> {
    let fh: FileHandle
    try {
      fh = await fsp.open(file, "r")
    } catch (e) {
      const code = errnoCode(e)
      if (code === "ENOENT" || code === "ENOTDIR") return undefined
      if (code === "EISDIR") return undefined
      throw StoreError.from("read", file, e)
    }
    try {
      const st = await fh.stat({ bigint: true })
      if (!st.isFile()) return undefined
      const buf = await fh.readFile()
      return {
        key,
        file,
        data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
        mtimeNs: st.mtimeNs,
      }
    } catch (e) {
      if (errnoCode(e) === "EISDIR") return undefined
      throw StoreError.from("read", file, e)
    } finally {
      await fh.close().catch(() => {})
    }
  }

  /** true if the chunk may be returned; quarantines damaged chunks. */
  async #validate(r: ReadFile): Promise<boolean> {
    if (!isDocChunkKey(r.key)) return true
    const v = verifyChunkFile(r.key, r.data)
    if (v.ok) return true
    const mine = this.#written.get(keyString(r.key))
    if (mine && mine.sha256 === sha256hex(r.data)) return true
    const ageMs = Date.now() - Number(r.mtimeNs / 1_000_000n)
    if (ageMs < this.#graceMs) {
      if (!this.#warnedRecent.has(r.file)) {
        this.#warnedRecent.add(r.file)
        this.#warn(
          `skipping damaged Automerge chunk ${r.file}: ${v.reason} (modified ${Math.max(0, ageMs)} ms ago, ` +
            `may still be being written; it will be quarantined if it stays damaged)`
        )
      }
      return false
    }
    this.#warnedRecent.delete(r.file)
    await this.#quarantine(r.key, r.file, v.reason)
    return false
  }

  async #quarantine(key: StorageKey, file: string, reason: string): Promise<void> {
    const qdir = this.quarantineDirectory
    const dest = path.join(qdir, `${key.join("__")}.${Date.now()}`)
    try {
      await fsp.mkdir(qdir, { recursive: true })
      await fsp.rename(file, dest)
      await fsyncDir(qdir).catch(() => {})
      await fsyncDir(path.dirname(file)).catch(() => {})
      this.#warn(`damaged Automerge chunk ${file}: ${reason}; moved it to ${dest}`)
    } catch (e) {
      if (errnoCode(e) === "ENOENT") {
        // another process quarantined or removed it first
        return
      }
      const err = StoreError.from("quarantine", file, e)
      this.#warn(`damaged Automerge chunk ${file}: ${reason}; ignoring it, but ${err.message}`)
    }
  }

  async #list(keyPrefix: StorageKey): Promise<ListedFile[]> {
    const root = keyPrefix.length === 0 ? this.baseDirectory : this.filePath(keyPrefix)
    const files: string[] = []
    const walk = async (dir: string, isRoot: boolean): Promise<void> => {
      let entries: Dirent[]
      try {
        entries = await fsp.readdir(dir, { withFileTypes: true })
      } catch (e) {
        const code = errnoCode(e)
        if (code === "ENOENT") return
        if (code === "ENOTDIR") {
          if (isRoot) files.push(dir) // the prefix names a single stored value
          return
        }
        throw StoreError.from("list", dir, e)
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      for (const ent of entries) {
        const p = path.join(dir, ent.name)
        if (dir === this.baseDirectory && (ent.name === TMP_DIR_NAME || ent.name === QUARANTINE_DIR_NAME)) {
          continue
        }
        if (ent.isDirectory()) await walk(p, false)
        else if (ent.isFile()) files.push(p)
      }
    }
    await walk(root, true)
    const out: ListedFile[] = []
    for (const file of files) {
      const rel = path.relative(this.baseDirectory, file).split(path.sep)
      if (rel.length < 2) continue // stray file directly in the base directory
      const key = [rel[0] + rel[1], ...rel.slice(2)]
      if (rel[0] === TMP_DIR_NAME || rel[0] === QUARANTINE_DIR_NAME) continue
      if (!keyStartsWith(key, keyPrefix)) continue
      out.push({ key, file })
    }
    return out
  }

  async #ensureTmpDir(): Promise<void> {
    if (this.#tmpReady) {
      try {
        await fsp.access(this.tmpDirectory)
        return
      } catch {
        this.#tmpReady = false
      }
    }
    await ensureDir(this.tmpDirectory)
    this.#tmpReady = true
    void this.#cleanTmp()
  }

  /** Best effort: remove temp files left behind by crashed processes (older than one hour). */
  async #cleanTmp(): Promise<void> {
    try {
      const now = Date.now()
      for (const name of await fsp.readdir(this.tmpDirectory)) {
        const p = path.join(this.tmpDirectory, name)
        const st = await fsp.stat(p).catch(() => undefined)
        if (st && st.isFile() && now - st.mtimeMs > 3_600_000) await fsp.unlink(p).catch(() => {})
      }
    } catch {
      // ignore
    }
  }
}

// ------------------------------------------------------------------ helpers

/**
 * Container check, plus for incrementals named by their sha256 (automerge-repo's keyHash, which
 * NodeFSStorageAdapter and DocStore use) a check of the content against the name: a multi-chunk
 * file cut exactly at a chunk boundary is otherwise a valid, shorter file.
 */
export function verifyChunkFile(key: StorageKey, data: Uint8Array): VerifyResult {
  const v = verifyAutomergeBytes(data)
  if (!v.ok) return v
  const name = key[key.length - 1]
  if (key[1] === "incremental" && key.length === 3 && /^[0-9a-f]{64}$/.test(name)) {
    const h = sha256hex(data)
    if (h !== name) return { ok: false, reason: `content (sha256 ${h.slice(0, 16)}...) does not match the file name` }
  }
  return v
}

function sha256hex(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex")
}

function checkKey(key: StorageKey): void {
  if (!Array.isArray(key) || key.length === 0) {
    throw new StoreError("use key", JSON.stringify(key), "EINVAL", "storage key must be a non-empty array")
  }
  for (const part of key) {
    if (
      typeof part !== "string" ||
      part.length === 0 ||
      part === "." ||
      part === ".." ||
      part.includes("/") ||
      part.includes("\\") ||
      part.includes("\u0000")
    ) {
      throw new StoreError("use key", JSON.stringify(key), "EINVAL", `invalid storage key element ${JSON.stringify(part)}`)
    }
  }
}

function keyStartsWith(key: StorageKey, prefix: StorageKey): boolean {
  if (prefix.length > key.length) return false
  for (let i = 0; i < prefix.length; i++) if (key[i] !== prefix[i]) return false
  return true
}

/** fsync a directory so a rename / create inside it is durable. */
