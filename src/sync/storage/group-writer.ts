/**
 * Group commits made on a thread of their own (a worker thread of this process): the steps of
 * writeFilesAtomicGroup (atomic.ts) for a group of files, every one of them off the caller's thread.
 *
 * Why a thread: a process that serves many writers at once (`concord run`'s endpoint) spends its one
 * JavaScript thread on their changes, and a group written from that thread costs it the blocking calls of
 * every file (open, write, close, rename: ~0.2 ms per report) and two trips through its event loop (after
 * the files' fsyncs, after the directories'), each of which waits behind whatever the thread is busy with
 * (measured: ~5.5 ms per group under 16 senders, of which the disk took ~1.5). Here the group is one
 * message to the thread and one back; the thread does nothing else, so its own trips cost nothing.
 *
 * The steps (per file writeFileAtomic's guarantees): each temp file is created and written, all of them are
 * fsynced at once (Node's thread pool), each is renamed over its target, and each directory written into is
 * fsynced once, again all at once. A file any step of which fails is left out (`written[i]` false, its temp
 * file removed): the caller writes it the usual way, which reports the error. If the thread cannot be
 * started, or dies, every file of the groups it held is left out the same way (a file it may have put in
 * place is written again, to the same content, by the usual path), and the next group starts a new one.
 */
import { Worker } from "node:worker_threads"

/** One file of a group: its target, the temp file to write first (same file system), its bytes. */
export interface ThreadGroupFile {
  target: string
  tmp: string
  data: string | Uint8Array
  mode?: number
}

/** What a group write did: per file whether it is in place and durable, and the fsyncs it made. */
export interface GroupOutcome {
  written: boolean[]
  fileSyncs: number
  dirSyncs: number
}

interface Request {
  id: number
  files: ThreadGroupFile[]
}

/**
 * The thread's code. Its source is the thread's program (a worker started with `eval`), so it uses nothing
 * from this module: only what it is given (`require`) and what it declares.
 */
function groupWriterThread(load: (id: string) => unknown): void {
  const { parentPort } = load("node:worker_threads") as typeof import("node:worker_threads")
  const fs = load("node:fs") as typeof import("node:fs")
  const path = load("node:path") as typeof import("node:path")
  /** Errors with which some platforms or file systems refuse to open or fsync a directory (as atomic.ts). */
  const unsyncableDir = (code: unknown) => code === "EISDIR" || code === "EINVAL" || code === "EPERM" || code === "EBADF"
  const fsync = (fd: number) => new Promise<NodeJS.ErrnoException | null>(resolve => fs.fsync(fd, e => resolve(e)))
  const discard = (fd: number | undefined, tmp: string) => {
    try {
      if (fd !== undefined) fs.closeSync(fd)
    } catch {
      // already closed
    }
    try {
      fs.unlinkSync(tmp)
    } catch {
      // never made, or already renamed
    }
  }
  const writeGroup = async (files: ThreadGroupFile[]) => {
    const written = files.map(() => false)
    const open: { i: number; fd: number; dir: string }[] = []
    for (const [i, f] of files.entries()) {
      let fd: number | undefined
      try {
        fd = fs.openSync(f.tmp, "wx", f.mode ?? 0o644)
        fs.writeFileSync(fd, f.data)
        open.push({ i, fd, dir: path.dirname(f.target) })
      } catch {
        discard(fd, f.tmp)
      }
    }
    const failed = await Promise.all(open.map(o => fsync(o.fd)))
    const renamed: typeof open = []
    for (const [n, o] of open.entries()) {
      if (failed[n]) {
        discard(o.fd, files[o.i].tmp)
        continue
      }
      try {
        fs.closeSync(o.fd)
      } catch {
        // (the data is durable; a failed close changes nothing on disk)
      }
      try {
        fs.renameSync(files[o.i].tmp, files[o.i].target)
        renamed.push(o)
      } catch {
        discard(undefined, files[o.i].tmp)
      }
    }
    const dirs = [...new Set(renamed.map(o => o.dir))]
    const durable = await Promise.all(
      dirs.map(async dir => {
        let fd: number
        try {
          fd = fs.openSync(dir, "r")
        } catch (e) {
          return unsyncableDir((e as NodeJS.ErrnoException).code)
        }
        const e = await fsync(fd)
        try {
          fs.closeSync(fd)
        } catch {
          // nothing to undo
        }
        return !e || unsyncableDir(e.code)
      })
    )
    const ok = new Set(dirs.filter((_, n) => durable[n]))
    for (const o of renamed) if (ok.has(o.dir)) written[o.i] = true
    return { written, fileSyncs: open.length, dirSyncs: dirs.length }
  }
  parentPort?.on("message", (req: Request) => {
    writeGroup(req.files).then(
      out => parentPort?.postMessage({ id: req.id, ...out }),
      () => parentPort?.postMessage({ id: req.id, written: req.files.map(() => false), fileSyncs: 0, dirSyncs: 0 })
    )
  })
}

/** The writer thread of this process (one, shared by every store in it), started when first wanted. */
class GroupWriter {
  #worker: Worker | undefined
  readonly #pending = new Map<number, { files: number; resolve: (o: GroupOutcome) => void }>()
  #nextId = 0
  /** threads started (for tests) */
  started = 0

  /** Start the thread now (a store that will write groups starts it with itself, not at its first group). */
  warm(): void {
    this.#thread()
  }

  write(files: ThreadGroupFile[]): Promise<GroupOutcome> {
    const none = (): GroupOutcome => ({ written: files.map(() => false), fileSyncs: 0, dirSyncs: 0 })
    if (files.length === 0) return Promise.resolve(none())
    const worker = this.#thread()
    if (!worker) return Promise.resolve(none())
    const id = ++this.#nextId
    return new Promise<GroupOutcome>(resolve => {
      this.#pending.set(id, { files: files.length, resolve })
      // (kept alive while a group is under way: a process does not exit with a write half made)
      if (this.#pending.size === 1) worker.ref()
      try {
        worker.postMessage({ id, files } satisfies Request)
      } catch {
        this.#settle(id, none())
      }
    })
  }

  #thread(): Worker | undefined {
    if (this.#worker) return this.#worker
    let worker: Worker
    try {
      // a CommonJS script, whatever this process was started with (execArgv: none of its options, such as
      // --input-type=module, which would take `require` away); `__name`: the helper that a transpiler
      // keeping function names (tsx's) calls inside functions
      worker = new Worker(`var __name = f => f;\n(${groupWriterThread.toString()})(require)`, { eval: true, execArgv: [] })
    } catch {
      return undefined
    }
    this.started++
    worker.unref()
    worker.on("message", (m: { id: number } & GroupOutcome) => this.#settle(m.id, { written: m.written, fileSyncs: m.fileSyncs, dirSyncs: m.dirSyncs }))
    const gone = () => {
      if (this.#worker !== worker) return
      this.#worker = undefined
      // every group it held is left out: written the usual way by the callers
      for (const [id, p] of [...this.#pending]) this.#settle(id, { written: new Array(p.files).fill(false), fileSyncs: 0, dirSyncs: 0 })
    }
    worker.on("error", gone)
    worker.on("exit", gone)
    this.#worker = worker
    return worker
  }

  #settle(id: number, out: GroupOutcome): void {
    const p = this.#pending.get(id)
    if (!p) return
    this.#pending.delete(id)
    if (this.#pending.size === 0) this.#worker?.unref()
    p.resolve(out)
  }

  /** Stop the thread (for tests: a dying thread's groups are left out, and the next group starts another). */
  async stop(): Promise<void> {
    await this.#worker?.terminate()
  }
}

export const groupWriter = new GroupWriter()
