/**
 * A crash-safe, multi-process-safe filesystem StorageAdapter for automerge-repo.
 *
 * Same on-disk layout as NodeFSStorageAdapter (`<dir>/<key0[0:2]>/<key0[2:]>/<key1>/<key2>...`),
 * so both can use one directory. Differences:
 *  - saves are atomic and durable (temp file in `<dir>/.tmp`, fsync, rename, fsync directory);
 *  - snapshot / incremental chunks are verified when read; a damaged one is skipped instead of being
 *    handed to Automerge (which would silently drop it together with every other chunk concatenated
 *    after it). It is moved to `<dir>/quarantine/`, with a warning, only once it has been damaged and
 *    unchanged for a grace period (default 60 s): other processes, e.g. a stock NodeFSStorageAdapter,
 *    create a file and only then write into it, so a recent empty or short file is most likely still
 *    being written. A document's only data is never moved, and a quarantined file that validates later
 *    is put back (see quarantine.ts);
 *  - loadRange retries when a listed file disappears before it is read (another process compacted);
 *  - no cache of file contents, so several processes can share the directory;
 *  - disk errors are thrown as {@link StoreError} with the path and errno code;
 *  - it never creates its base directory unless opened with `create` (or told to, createRoot()): a store
 *    deleted or moved away while a process uses it stays gone, and writes fail with StoreGoneError
 *    instead of bringing it back as a skeleton of later chunks (see atomic.ts).
 */
import type { Chunk, StorageAdapterInterface, StorageKey } from "@automerge/automerge-repo/slim"
import { createHash } from "node:crypto"
import { type BigIntStats, closeSync, type Dirent, fstatSync, openSync, promises as fsp, readdirSync, readFileSync, statSync } from "node:fs"
import type { FileHandle } from "node:fs/promises"
import path from "node:path"
import { type AtomicWriteOptions, ensureDir, ensureDirIn, fsyncDir, writeFileAtomic, writeFilesAtomicGroup } from "./atomic.js"
import { groupWriter } from "./group-writer.js"
import { verifyAutomergeBytes, type VerifyResult } from "./chunk-format.js"
import {
  DEFAULT_QUARANTINE_GRACE_MS,
  graceFromEnv,
  listQuarantine,
  type QuarantinedFile,
  quarantineName,
  restoreQuarantined,
  type RestoreOutcome,
} from "./quarantine.js"
import { StoreError, errnoCode } from "./StoreError.js"

export { StoreError, StoreGoneError } from "./StoreError.js"

const TMP_DIR_NAME = ".tmp"
const QUARANTINE_DIR_NAME = "quarantine"
/** How long one reading of the quarantine directory's names serves the restore check of every listing. */
const QUARANTINE_LISTING_MS = 500

export interface ConcordStorageAdapterOptions {
  /** Receives warnings (damaged chunk quarantined, ...). Default: `concord: warning: <msg>` on stderr. */
  onWarning?: (msg: string) => void
  /**
   * A damaged chunk modified (mtime) more recently than this is skipped but left in place:
   * it may be a file another, non-atomic writer such as NodeFSStorageAdapter is still writing. Older
   * damaged chunks are quarantined, unless they changed while we looked or are their document's only
   * data. Default: $CONCORD_QUARANTINE_GRACE_MS, else 60 s.
   */
  quarantineGraceMs?: number
  /**
   * Put quarantined chunks of a document back when they validate, whenever the document is listed
   * (default true; `concord doctor` without --fix turns it off to only look).
   */
  autoRestore?: boolean
  /**
   * Look in the quarantine for a document's chunks at most this often (ms) per document. Default 0: at
   * every listing. A long-lived process (DocStoreOptions.live) lists the same documents at every call and
   * uses 1 s.
   */
  restoreIntervalMs?: number
  /** How many times loadRange re-lists after a listed file vanished. Default 5. */
  loadRangeRetries?: number
  /**
   * Create the base directory at the first save if it does not exist (default false: a missing base
   * directory fails every write with StoreGoneError; see createRoot for a deliberate creation).
   */
  create?: boolean
  /**
   * Write chunks with blocking system calls (AtomicWriteOptions.blocking; DocStoreOptions.blockingWrites);
   * "alone": only a save made while no other save of this adapter is under way (others go through the
   * thread pool, so concurrent writes still overlap). Default false.
   */
  blockingWrites?: boolean | "alone"
  /**
   * Read chunk files, list directories and read the store's other files (readText) with blocking system
   * calls: for a one-shot process with nothing else to do meanwhile (`concord report`), where each round
   * trip through Node's thread pool costs more than the call itself. Default false.
   */
  blockingReads?: boolean
  /**
   * Group commit of chunk writes, for a process that serves many writers at once (the endpoint of
   * `concord run`): the saves asked for in one turn of the event loop, and those asked for while a group
   * is being made durable, are written together (writeFilesAtomicGroup: each file fsynced, each directory
   * once, the fsyncs of a group at once through the thread pool, every step on a thread of its own, which
   * such a store starts with itself). Each save still resolves only once its file and directory are
   * durable. Takes precedence over blockingWrites. Default false.
   */
  groupWrites?: boolean
  /**
   * Do not write an incremental chunk again that is on disk already, byte for byte, under its content
   * name (sha256 of its bytes): make sure it is durable instead (fsync of the file and its directory,
   * nothing to write back if it was). For the sync server's Repo, which saves again the changes the
   * store's other writers put in the files it read them from (a local report, applied to the Repo's
   * copy, is saved as the same bytes under the same name). Default false.
   */
  skipIdentical?: boolean
  /**
   * Called as each chunk is about to be written by this adapter (a sync server tells its store watcher,
   * before the file can appear, that it already holds what the chunk holds).
   */
  onSave?: (key: StorageKey) => void
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
  size: number
  ino: bigint
}

/** How long a short-lived read waits for a recent damaged chunk to be completed by its writer. */
const RECENT_RETRIES = [30, 60, 120]
/** A long-lived reader warns about a damaged, not yet quarantined chunk once it stayed so this long. */
const RECENT_WARN_AFTER_MS = 3_000

const READ_PARALLELISM = 16

const keyString = (key: StorageKey) => key.join("\u0000")

/**
 * chunkDirsStamp: how long before a stamp its directories must have last changed for the stamp to vouch for
 * them (a later change could otherwise carry the same time): a file system whose times have a fraction of a
 * second moves its clock at least every scheduler tick (at most 10 ms on Linux); one with whole seconds, every
 * second or two.
 */
const RACY_MS = 50
const RACY_WHOLE_SECONDS_MS = 2500

export class ConcordStorageAdapter implements StorageAdapterInterface {
  readonly baseDirectory: string
  readonly #warn: (msg: string) => void
  readonly #graceMs: number
  readonly #retries: number
  readonly #blocking: boolean | "alone"
  readonly #blockingReads: boolean
  #saving = 0
  readonly #groupWrites: boolean
  readonly #skipIdentical: boolean
  /** saves skipIdentical found on disk already (for tests) */
  readonly skipStats = { skipped: 0 }
  /** groupWrites: saves waiting for the next group, and whether a group is under way or about to start */
  #groupWaiting: { target: string; data: Uint8Array; done: (written: boolean) => void }[] = []
  #groupBusy = false
  /** groupWrites: groups written, files written in them, and their file and directory fsyncs (for tests and benchmarks) */
  readonly groupStats = { groups: 0, files: 0, fileSyncs: 0, dirSyncs: 0 }
  /**
   * Keys this instance wrote: write order (to order loadRange results on mtime ties) and the sha256
   * of the bytes written. A chunk byte-identical to what we wrote ourselves is returned as written,
   * even if it is not valid Automerge (the adapter is a key/value store; verification is there to
   * catch files torn or damaged by crashes and other writers).
   */
  readonly #onSave?: (key: StorageKey) => void
  readonly #written = new Map<string, { seq: number; sha256: string }>()
  #seq = 0
  #tmpReady = false
  readonly #create: boolean
  readonly #autoRestore: boolean
  /** Damaged files left in place (grace period, or a document's only data): when first seen, warned. */
  readonly #suspect = new Map<string, { firstSeen: number; warned: boolean }>()
  /** Quarantined files found still damaged, by name, with the size:mtime they had then (not re-read). */
  readonly #stillDamaged = new Map<string, string>()
  readonly #restoreIntervalMs: number
  /** when each document's quarantine was last looked at (restoreIntervalMs > 0) */
  readonly #restoreChecked = new Map<string, number>()
  /** the documents the quarantine directory held files of, read at most every QUARANTINE_LISTING_MS */
  #quarantined: { at: number; docs: Set<string> } | undefined

  constructor(baseDirectory: string, opts: ConcordStorageAdapterOptions = {}) {
    this.baseDirectory = path.resolve(baseDirectory)
    this.#warn = opts.onWarning ?? defaultWarning
    this.#graceMs = opts.quarantineGraceMs ?? graceFromEnv() ?? DEFAULT_QUARANTINE_GRACE_MS
    this.#autoRestore = opts.autoRestore ?? true
    this.#restoreIntervalMs = opts.restoreIntervalMs ?? 0
    this.#retries = opts.loadRangeRetries ?? 5
    this.#blocking = opts.blockingWrites ?? false
    this.#blockingReads = opts.blockingReads ?? false
    this.#groupWrites = opts.groupWrites ?? false
    if (this.#groupWrites) groupWriter.warm()
    this.#skipIdentical = opts.skipIdentical ?? false
    this.#create = opts.create ?? false
    this.#onSave = opts.onSave
  }

  /** Make the base directory (and its parents) if missing: for a command that deliberately creates a store. */
  async createRoot(): Promise<void> {
    try {
      await ensureDir(this.baseDirectory)
    } catch (e) {
      throw StoreError.from("create directory", this.baseDirectory, e)
    }
  }

  /** mkdir -p of a directory inside the store, never of the store itself (StoreGoneError if it is gone). */
  async ensureDir(dir: string, mode?: number): Promise<void> {
    if (this.#create) await ensureDir(this.baseDirectory)
    await ensureDirIn(this.baseDirectory, dir, mode)
  }

  /**
   * An atomic write of a file of the store that is not a document chunk (index, caches, ...), under the
   * same rule as save(): the store's directory is never created again once it is gone.
   */
  async writeFile(target: string, data: string | Uint8Array, opts: Omit<AtomicWriteOptions, "root"> = {}): Promise<void> {
    if (this.#create) await ensureDir(this.baseDirectory)
    await writeFileAtomic(target, data, { blocking: this.#blocking === true, ...opts, root: this.baseDirectory })
  }

  get tmpDirectory(): string {
    return path.join(this.baseDirectory, TMP_DIR_NAME)
  }

  get quarantineDirectory(): string {
    return path.join(this.baseDirectory, QUARANTINE_DIR_NAME)
  }

  get quarantineGraceMs(): number {
    return this.#graceMs
  }

  /**
   * A stamp of the two directories a document's chunk files are listed from (`incremental/`, `snapshot/`):
   * their inodes and modification and change times, read with two blocking stats (microseconds, and no
   * trip through the thread pool, which a listing takes twice). A file added to, removed from or renamed
   * in either directory changes both times, so a stamp equal to one taken before a listing means that
   * listing still holds, unless that one was "racy": taken so soon after its directory's last change that
   * a later change could carry the same time (see RACY_MS). Then, on Windows, or when a directory cannot be
   * looked at, it is undefined: list. (A live DocStore's look for other writers' chunks: DocStore.ts.)
   */
  chunkDirsStamp(docId: string): string | undefined {
    if (process.platform === "win32") return undefined
    const now = Date.now()
    let stamp = ""
    for (const type of ["incremental", "snapshot"]) {
      let st: BigIntStats | undefined
      try {
        st = statSync(this.filePath([docId, type]), { bigint: true, throwIfNoEntry: false })
      } catch {
        return undefined
      }
      if (!st) {
        stamp += "none;"
        continue
      }
      for (const changed of [st.mtimeNs, st.ctimeNs]) {
        const racyMs = changed % 1_000_000_000n === 0n ? RACY_WHOLE_SECONDS_MS : RACY_MS
        if (now - Number(changed / 1_000_000n) < racyMs) return undefined
      }
      stamp += `${st.ino}:${st.mtimeNs}:${st.ctimeNs};`
    }
    return stamp
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
    return (await this.#validate(read, "later")) ? read.data : undefined
  }

  async loadRange(keyPrefix: StorageKey): Promise<Chunk[]> {
    return (await this.loadRangeExcept(keyPrefix, () => false)).chunks
  }

  /**
   * loadRange, except that listed files for which `known(key)` is true are neither read nor returned
   * (a caller that holds their content already: only what is new since costs a read and a check).
   * Everything else is as loadRange: a file deleted between listing and reading makes it list again, a
   * damaged file is skipped (warned, quarantined once old). `listed`: every key of the last listing,
   * known or not.
   */
  async loadRangeExcept(keyPrefix: StorageKey, known: (key: StorageKey) => boolean): Promise<{ chunks: Chunk[]; listed: StorageKey[] }> {
    let lastGood: ReadFile[] = []
    let keys: StorageKey[] = []
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      const all = await this.#list(keyPrefix)
      keys = all.map(f => f.key)
      const listed = all.filter(f => !known(f.key))
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
    // A damaged chunk modified within the grace period is most likely still being written by a
    // non-atomic writer: give it a moment before skipping it (a short-lived reader would otherwise
    // miss, e.g., a compaction snapshot whose writer is between create and write).
    let recent = lastGood.filter(r => this.#recentlyDamaged(r))
    for (const wait of RECENT_RETRIES) {
      if (recent.length === 0) break
      await new Promise(res => setTimeout(res, wait))
      const again: ReadFile[] = []
      for (const r of recent) {
        const i = lastGood.indexOf(r)
        const fresh = await this.#readOne(r.key, r.file)
        if (fresh) lastGood[i] = fresh
        else lastGood.splice(i, 1)
        if (fresh && this.#recentlyDamaged(fresh)) again.push(fresh)
      }
      recent = again
    }
    const valid: ReadFile[] = []
    for (const r of lastGood) if (await this.#validate(r, "now")) valid.push(r)
    valid.sort((a, b) => {
      if (a.mtimeNs !== b.mtimeNs) return a.mtimeNs < b.mtimeNs ? -1 : 1
      const sa = this.#written.get(keyString(a.key))?.seq ?? Number.MAX_SAFE_INTEGER
      const sb = this.#written.get(keyString(b.key))?.seq ?? Number.MAX_SAFE_INTEGER
      if (sa !== sb) return sa - sb
      const ka = keyString(a.key)
      const kb = keyString(b.key)
      return ka < kb ? -1 : ka > kb ? 1 : 0
    })
    return { chunks: valid.map(r => ({ key: r.key, data: r.data })), listed: keys }
  }

  /**
   * List the keys under `keyPrefix` without reading them. Directories are walked in sorted order
   * (so `incremental/` is listed before `snapshot/`).
   */
  async listKeys(keyPrefix: StorageKey): Promise<StorageKey[]> {
    return (await this.#list(keyPrefix)).map(f => f.key)
  }

  // ---------------------------------------------------------------- save

  /** `sha256`: the hex sha256 of `data`, when the caller has it already (an incremental chunk's key is it). */
  async save(key: StorageKey, data: Uint8Array, sha256?: string): Promise<void> {
    const target = this.filePath(key)
    this.#onSave?.(key)
    if (this.#skipIdentical && key.length === 3 && key[1] === "incremental" && /^[0-9a-f]{64}$/.test(key[2])) {
      const hash = sha256 ?? sha256hex(data)
      if (hash === key[2] && (await onDiskDurably(target, data))) {
        this.#written.set(keyString(key), { seq: ++this.#seq, sha256: hash })
        this.skipStats.skipped++
        return
      }
    }
    const write = async () => {
      await this.#ensureTmpDir()
      // in the next group (anything it could not write goes the usual way below, which reports errors)
      if (this.#groupWrites && (await this.#inGroup(target, data))) return
      const blocking = this.#blocking === "alone" ? this.#saving === 0 : this.#blocking
      this.#saving++
      try {
        await writeFileAtomic(target, data, { tmpDir: this.tmpDirectory, root: this.baseDirectory, blocking })
      } finally {
        this.#saving--
      }
    }
    try {
      try {
        await write()
      } catch (e) {
        // the temp directory was removed since we made it: make it again (or find the store gone)
        if (errnoCode(e) !== "ENOENT" || !this.#tmpReady) throw e
        this.#tmpReady = false
        await write()
      }
      this.#written.set(keyString(key), { seq: ++this.#seq, sha256: sha256 ?? sha256hex(data) })
    } catch (e) {
      throw StoreError.from("write", target, e)
    }
  }

  /**
   * groupWrites: write `data` to `target` in the next group; true once it is durable, false if the group
   * left it out (the caller writes it the usual way). A group starts as soon as the event loop has taken
   * what arrived with the first save (setImmediate); saves asked for while it is under way form the next.
   */
  #inGroup(target: string, data: Uint8Array): Promise<boolean> {
    return new Promise<boolean>(done => {
      this.#groupWaiting.push({ target, data, done })
      if (this.#groupBusy) return
      this.#groupBusy = true
      setImmediate(() => void this.#writeGroups())
    })
  }

  async #writeGroups(): Promise<void> {
    try {
      while (this.#groupWaiting.length > 0) {
        const group = this.#groupWaiting
        this.#groupWaiting = []
        let written: boolean[]
        try {
          const out = await writeFilesAtomicGroup(group.map(g => ({ target: g.target, data: g.data, tmpDir: this.tmpDirectory })))
          written = out.written
          this.groupStats.groups++
          this.groupStats.files += written.filter(Boolean).length
          this.groupStats.fileSyncs += out.fileSyncs
          this.groupStats.dirSyncs += out.dirSyncs
        } catch {
          written = group.map(() => false)
        }
        for (const [i, g] of group.entries()) g.done(written[i])
      }
    } finally {
      this.#groupBusy = false
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
    if (this.#blockingReads) return this.#readOneBlocking(key, file)
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
        size: buf.byteLength,
        ino: st.ino,
      }
    } catch (e) {
      if (errnoCode(e) === "EISDIR") return undefined
      throw StoreError.from("read", file, e)
    } finally {
      await fh.close().catch(() => {})
    }
  }

  /** #readOne with blocking calls (blockingReads): the same outcomes. */
  #readOneBlocking(key: StorageKey, file: string): ReadFile | undefined {
    let fd: number
    try {
      fd = openSync(file, "r")
    } catch (e) {
      const code = errnoCode(e)
      if (code === "ENOENT" || code === "ENOTDIR" || code === "EISDIR") return undefined
      throw StoreError.from("read", file, e)
    }
    try {
      const st = fstatSync(fd, { bigint: true })
      if (!st.isFile()) return undefined
      const buf = readFileSync(fd)
      return { key, file, data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), mtimeNs: st.mtimeNs, size: buf.byteLength, ino: st.ino }
    } catch (e) {
      if (errnoCode(e) === "EISDIR") return undefined
      throw StoreError.from("read", file, e)
    } finally {
      try {
        closeSync(fd)
      } catch {
        // (read already)
      }
    }
  }

  /**
   * A file of the store that is not a chunk (a cache, an index entry), as text; a blocking reader
   * (blockingReads) reads it with a blocking call. Fails as fs.readFile does.
   */
  async readText(file: string): Promise<string> {
    return this.#blockingReads ? readFileSync(file, "utf8") : fsp.readFile(file, "utf8")
  }

  /** A doc chunk that is damaged now and was modified within the grace period. */
  #recentlyDamaged(r: ReadFile): boolean {
    if (!isDocChunkKey(r.key) || this.#graceMs <= 0) return false
    if (this.#isMine(r) || verifyChunkFile(r.key, r.data).ok) return false
    return this.#ageMs(r) < this.#graceMs
  }

  #ageMs(r: ReadFile): number {
    return Date.now() - Number(r.mtimeNs / 1_000_000n)
  }

  #isMine(r: ReadFile): boolean {
    const mine = this.#written.get(keyString(r.key))
    return mine !== undefined && mine.sha256 === sha256hex(r.data)
  }

  /**
   * true if the chunk may be returned. A damaged chunk is skipped; it is quarantined only once it has
   * been unchanged for the grace period. `warn`: "now" warns at once about a damaged chunk left in
   * place (short-lived readers); "later" only if it is still damaged a few seconds after it was first
   * seen (long-lived watchers, which see a non-atomic writer's files between create and write).
   */
  async #validate(r: ReadFile, warn: "now" | "later"): Promise<boolean> {
    if (!isDocChunkKey(r.key)) return true
    const v = verifyChunkFile(r.key, r.data)
    if (v.ok || this.#isMine(r)) {
      this.#suspect.delete(r.file)
      return true
    }
    const ageMs = this.#ageMs(r)
    if (ageMs < this.#graceMs) {
      this.#leftInPlace(
        r.file,
        warn,
        `skipping damaged Automerge chunk ${r.file}: ${v.reason} (modified ${Math.max(0, ageMs)} ms ago: it may still be ` +
          `being written; it will be quarantined if it stays damaged for ${Math.round(this.#graceMs / 1000)} s)`
      )
      return false
    }
    await this.#quarantine(r, v.reason, warn)
    return false
  }

  #leftInPlace(file: string, warn: "now" | "later", msg: string): void {
    const now = Date.now()
    let s = this.#suspect.get(file)
    if (!s) {
      s = { firstSeen: now, warned: false }
      this.#suspect.set(file, s)
    }
    if (!s.warned && (warn === "now" || now - s.firstSeen >= RECENT_WARN_AFTER_MS)) {
      s.warned = true
      this.#warn(msg)
    }
  }

  async #quarantine(r: ReadFile, reason: string, warn: "now" | "later"): Promise<void> {
    this.#quarantined = undefined
    const { key, file } = r
    // Still exactly the file we judged? (a writer may have touched it since we read it)
    const st = await fsp.stat(file, { bigint: true }).catch(() => undefined)
    if (!st || st.ino !== r.ino || Number(st.size) !== r.size || st.mtimeNs !== r.mtimeNs) return
    // Never move a document's last data away: a damaged chunk that is all there is stays (skipped).
    if (!(await this.#hasOtherValidChunk(key, file))) {
      this.#leftInPlace(
        file,
        warn,
        `damaged Automerge chunk ${file}: ${reason}; skipped it, but left it in place: it is the only data of ` + `document ${key[0]} (see concord doctor)`
      )
      return
    }
    const qdir = this.quarantineDirectory
    const dest = path.join(qdir, quarantineName(key))
    try {
      await ensureDirIn(this.baseDirectory, qdir)
      await fsp.rename(file, dest)
      await fsyncDir(qdir).catch(() => {})
      await fsyncDir(path.dirname(file)).catch(() => {})
      this.#suspect.delete(file)
      this.#warn(`damaged Automerge chunk ${file}: ${reason}; moved it to ${dest} (concord doctor restores it if it turns out valid)`)
    } catch (e) {
      if (errnoCode(e) === "ENOENT") {
        // another process quarantined or removed it first
        return
      }
      const err = StoreError.from("quarantine", file, e)
      this.#leftInPlace(file, "now", `damaged Automerge chunk ${file}: ${reason}; ignoring it, but ${err.message}`)
    }
  }

  /** Does the document of `key` have a valid chunk file other than `file`? */
  async #hasOtherValidChunk(key: StorageKey, file: string): Promise<boolean> {
    for (const type of ["snapshot", "incremental"]) {
      for (const f of await this.#list([key[0], type], false)) {
        if (f.file === file || !isDocChunkKey(f.key)) continue
        const other = await this.#readOne(f.key, f.file)
        if (other && (verifyChunkFile(other.key, other.data).ok || this.#isMine(other))) return true
      }
    }
    return false
  }

  /**
   * Put back this document's (or every document's) quarantined chunks that are valid now (a writer
   * finished writing into a file after it was moved). Warns about each one restored.
   */
  async restoreQuarantined(docId?: string): Promise<RestoreOutcome[]> {
    let files: QuarantinedFile[]
    try {
      files = await listQuarantine(this.baseDirectory, docId)
    } catch {
      return [] // an unreadable quarantine directory must not stop a load; doctor reports it
    }
    if (files.length === 0) return []
    const todo = files.filter(f => this.#stillDamaged.get(f.name) !== `${f.size}:${f.mtimeMs}`)
    if (todo.length === 0) return []
    let outcomes: RestoreOutcome[]
    try {
      outcomes = await restoreQuarantined(this.baseDirectory, { filePath: k => this.filePath(k), verify: verifyChunkFile }, { files: todo })
    } catch (e) {
      this.#warn(`cannot restore quarantined chunks: ${(e as Error).message}`)
      return []
    }
    for (const o of outcomes) {
      if (o.kind === "restored") this.#warn(`quarantined chunk ${o.file.file} is valid now; restored it to ${o.target}`)
      else if (o.kind === "damaged" || o.kind === "unknown" || o.kind === "conflict") {
        this.#stillDamaged.set(o.file.name, `${o.file.size}:${o.file.mtimeMs}`)
      }
    }
    return outcomes
  }

  async #list(keyPrefix: StorageKey, restore = true): Promise<ListedFile[]> {
    if (restore && this.#autoRestore && keyPrefix.length >= 1 && keyPrefix.length <= 2) {
      if ((keyPrefix.length === 1 || keyPrefix[1] === "snapshot" || keyPrefix[1] === "incremental") && this.#restoreDue(keyPrefix[0])) {
        if (await this.#mayHaveQuarantined(keyPrefix[0])) await this.restoreQuarantined(keyPrefix[0])
      }
    }
    const root = keyPrefix.length === 0 ? this.baseDirectory : this.filePath(keyPrefix)
    const files: string[] = []
    const walk = async (dir: string, isRoot: boolean): Promise<void> => {
      let entries: Dirent[]
      try {
        entries = this.#blockingReads ? readdirSync(dir, { withFileTypes: true }) : await fsp.readdir(dir, { withFileTypes: true })
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

  /**
   * Whether the quarantine directory holds files of this document, from one reading of its names shared
   * by every document listed within QUARANTINE_LISTING_MS (a status of a 1,000-job plan lists 1,000 logs:
   * one readdir of the quarantine instead of 1,000).
   */
  async #mayHaveQuarantined(docId: string): Promise<boolean> {
    const now = Date.now()
    const q = this.#quarantined
    if (!q || now - q.at > QUARANTINE_LISTING_MS || now < q.at) {
      let names: string[] = []
      try {
        names = this.#blockingReads ? readdirSync(this.quarantineDirectory) : await fsp.readdir(this.quarantineDirectory)
      } catch {
        // none (or unreadable: restoreQuarantined and doctor say so)
      }
      this.#quarantined = { at: now, docs: new Set(names.map(n => /^[A-Za-z0-9]+/.exec(n)?.[0] ?? n)) }
    }
    return this.#quarantined!.docs.has(docId)
  }

  #restoreDue(docId: string): boolean {
    if (this.#restoreIntervalMs <= 0) return true
    const now = Date.now()
    const last = this.#restoreChecked.get(docId)
    if (last !== undefined && now - last < this.#restoreIntervalMs && now >= last) return false
    this.#restoreChecked.set(docId, now)
    return true
  }

  /** The temp directory, made once (a write that finds it removed since makes it again: see save). */
  async #ensureTmpDir(): Promise<void> {
    if (this.#tmpReady) return
    // (a blocking writer looks for it with a blocking call first: it is there but in a new store)
    if (!this.#blocking || !isDirectorySync(this.tmpDirectory)) await this.ensureDir(this.tmpDirectory)
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
        if (st?.isFile() && now - st.mtimeMs > 3_600_000) await fsp.unlink(p).catch(() => {})
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

/**
 * Does `file` hold exactly `data`? If so it is made durable (fsync of the file, then of its directory:
 * its writer may not have), and true. false when it does not exist, differs, or anything fails (the
 * caller then writes it).
 */
async function onDiskDurably(file: string, data: Uint8Array): Promise<boolean> {
  let fh: FileHandle | undefined
  try {
    fh = await fsp.open(file, "r")
    const st = await fh.stat()
    if (!st.isFile() || st.size !== data.byteLength) return false
    const buf = await fh.readFile()
    if (!buf.equals(data)) return false
    await fh.sync()
    await fsyncDir(path.dirname(file))
    return true
  } catch {
    return false
  } finally {
    await fh?.close().catch(() => {})
  }
}

function isDirectorySync(p: string): boolean {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
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
