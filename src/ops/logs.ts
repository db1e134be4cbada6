/**
 * A job attempt's log file (its process's stdout and stderr, written by the runner to
 * `<store>/logs/<plan>/<job>.<attempt>.log`): the last N lines, and following it as it grows. For every
 * front end (`mc_capture`, `concord logs`, the dashboard). Logs live on the machine that ran the job, so
 * only a local store has them; a remote backend refuses with a clear error.
 *
 * Lines are returned as written (raw bytes decoded as UTF-8): front ends escape control characters
 * before showing them to a human or a model.
 */
import { promises as fsp, watch as fsWatch, type FSWatcher } from "node:fs"
import path from "node:path"
import { ConcordError, InputError, NotFoundError } from "../doc/errors.js"
import { readJob } from "../doc/plan.js"
import type { PlanBackend } from "./backend.js"
import { resolvePlan } from "./resolve.js"

export interface LogInput {
  planRef?: string
  job: string
  /** default: the job's current attempt */
  attempt?: number
  /** How many lines from the end (default 100, at most MAX_TAIL_LINES). */
  lines?: number
}

export interface LogTail {
  planId: string
  plan: string
  job: string
  attempt: number
  /** Absolute path of the log file. */
  file: string
  /** The last lines (without their line breaks). A final line still being written is included. */
  lines: string[]
  /** Whether the file holds more lines than returned. */
  truncated: boolean
  /** Whether the last line has no line break yet (a follower from `size` continues it). */
  partial: boolean
  /** Size of the file in bytes when read; follow from here. */
  size: number
}

export const DEFAULT_TAIL_LINES = 100
export const MAX_TAIL_LINES = 10_000
/** Read at most this much from the end of a log for a tail (a tail of very long lines is cut). */
const MAX_TAIL_BYTES = 4 * 1024 * 1024

/** Where a job attempt's log is; throws a clear error when there is none (yet) or it is not here. */
export async function locateLog(backend: PlanBackend, input: Omit<LogInput, "lines">): Promise<Omit<LogTail, "lines" | "truncated" | "partial" | "size">> {
  if (input.attempt !== undefined && (!Number.isInteger(input.attempt) || input.attempt < 1)) {
    throw new InputError(`invalid attempt ${input.attempt}: expected a whole number from 1`)
  }
  if (!backend.storeDir) {
    throw new ConcordError(
      `job logs stay on the machine that ran the job: ${backend.where} does not have them (read them there, or from that machine's store)`,
      1,
      "logs_not_here"
    )
  }
  const plan = await resolvePlan(backend, input.planRef)
  const job = readJob(plan.doc, input.job)
  const n = input.attempt ?? job.attempt
  const a = job.attempts.find(x => x.n === n)
  if (!a) throw new NotFoundError(`job "${input.job}" has no attempt ${n} (current is ${job.attempt})`)
  if (!a.log) throw new NotFoundError(`job "${input.job}" attempt ${n} has no log: it has not started (status ${a.status})`)
  // The log path is plan data that any writer of the plan can set: only files under the store's logs/
  // directory are ever read, so a plan cannot make a front end show another file.
  const logsDir = path.join(path.resolve(backend.storeDir), "logs") + path.sep
  const file = path.resolve(backend.storeDir, a.log)
  if (!file.startsWith(logsDir))
    throw new ConcordError(
      `job "${input.job}" attempt ${n} records a log outside the store's logs/ directory (${a.log}): refusing to read it`,
      1,
      "log_outside_store"
    )
  return { planId: plan.id, plan: plan.name, job: input.job, attempt: n, file }
}

/** The last `lines` lines of a job attempt's log. */
export async function tailLog(backend: PlanBackend, input: LogInput): Promise<LogTail> {
  const want = input.lines ?? DEFAULT_TAIL_LINES
  if (!Number.isInteger(want) || want < 0 || want > MAX_TAIL_LINES) {
    throw new InputError(`invalid lines ${want}: expected a whole number from 0 to ${MAX_TAIL_LINES}`)
  }
  const where = await locateLog(backend, input)
  let fh: fsp.FileHandle
  try {
    fh = await fsp.open(where.file, "r")
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code
    if (code === "ENOENT") throw new NotFoundError(`the log of job "${where.job}" attempt ${where.attempt} (${where.file}) does not exist on this machine`)
    throw new ConcordError(`cannot read ${where.file}: ${(e as Error).message}`)
  }
  try {
    const size = (await fh.stat()).size
    const { lines, truncated, partial } = await lastLines(fh, size, want)
    return { ...where, lines, truncated, partial, size }
  } finally {
    await fh.close()
  }
}

/** Read backwards in blocks until `want` complete lines (or the start of the file) are in hand. */
async function lastLines(fh: fsp.FileHandle, size: number, want: number): Promise<{ lines: string[]; truncated: boolean; partial: boolean }> {
  if (want === 0 || size === 0) return { lines: [], truncated: size > 0, partial: false }
  const block = 64 * 1024
  const parts: Buffer[] = []
  let pos = size
  let newlines = 0
  let read = 0
  while (pos > 0 && read < MAX_TAIL_BYTES) {
    const len = Math.min(block, pos)
    pos -= len
    const buf = Buffer.alloc(len)
    await fh.read(buf, 0, len, pos)
    parts.unshift(buf)
    read += len
    for (const b of buf) if (b === 10) newlines++
    // want+1 line breaks guarantee `want` complete lines after the first break (a trailing break ends the last line)
    if (newlines > want) break
  }
  let text = Buffer.concat(parts).toString("utf8")
  const fromStart = pos === 0
  const partial = !text.endsWith("\n")
  if (!partial) text = text.slice(0, -1)
  let lines = text.split("\n")
  // The first piece is a partial line unless we read from the start of the file.
  if (!fromStart) lines = lines.slice(1)
  return { lines: lines.slice(-want), truncated: !fromStart || lines.length > want, partial }
}

/**
 * Where a follower continues after showing `tail`: the lines to show first and the byte offset to follow
 * from. A last line still being written is left to the follower, so it is shown once, whole.
 */
export function followStart(tail: LogTail): { lines: string[]; from: number } {
  if (!tail.partial || tail.lines.length === 0) return { lines: tail.lines, from: tail.size }
  return { lines: tail.lines.slice(0, -1), from: tail.size - Buffer.byteLength(tail.lines[tail.lines.length - 1]) }
}

export interface FollowOptions {
  /** Start from this byte offset (default: the current end of the file; use a tail's `size`). */
  from?: number
  /** Poll interval as a fallback to fs.watch (default 250 ms). */
  pollMs?: number
}

/**
 * Follow a job attempt's log: `onLines` gets every complete line appended from `from` on (a partial
 * last line waits for its line break). A truncated or replaced file is read again from its start.
 * Resolves when `signal` aborts.
 */
export async function followLog(
  backend: PlanBackend,
  input: Omit<LogInput, "lines">,
  onLines: (lines: string[]) => void,
  signal: AbortSignal,
  opts: FollowOptions = {}
): Promise<void> {
  const where = await locateLog(backend, input)
  let pos =
    opts.from ??
    (await fsp.stat(where.file).then(
      s => s.size,
      () => 0
    ))
  let pending = ""
  let busy = false
  let again = false
  const decoder = new TextDecoder("utf-8")
  const readMore = async () => {
    if (busy) return void (again = true)
    busy = true
    try {
      do {
        again = false
        let size: number
        try {
          size = (await fsp.stat(where.file)).size
        } catch {
          continue // not there (yet): keep waiting
        }
        if (size < pos) {
          pos = 0 // truncated or replaced
          pending = ""
        }
        if (size === pos) continue
        const fh = await fsp.open(where.file, "r")
        try {
          const buf = Buffer.alloc(Math.min(size - pos, 4 * 1024 * 1024))
          const { bytesRead } = await fh.read(buf, 0, buf.length, pos)
          pos += bytesRead
          pending += decoder.decode(buf.subarray(0, bytesRead), { stream: true })
          if (bytesRead < size - pos + bytesRead) again = true
        } finally {
          await fh.close()
        }
        const cut = pending.lastIndexOf("\n")
        if (cut >= 0 && !signal.aborted) {
          const lines = pending.slice(0, cut).split("\n")
          pending = pending.slice(cut + 1)
          onLines(lines)
        }
      } while (again && !signal.aborted)
    } finally {
      busy = false
    }
  }
  let watcher: FSWatcher | undefined
  try {
    watcher = fsWatch(path.dirname(where.file), { persistent: false }, (_e, name) => {
      if (!name || name === path.basename(where.file)) void readMore()
    })
    watcher.on("error", () => {})
  } catch {
    // polling alone
  }
  const timer = setInterval(() => void readMore(), opts.pollMs ?? 250)
  await readMore()
  await new Promise<void>(resolve => (signal.aborted ? resolve() : signal.addEventListener("abort", () => resolve(), { once: true })))
  clearInterval(timer)
  watcher?.close()
}
