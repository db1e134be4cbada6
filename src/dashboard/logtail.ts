/**
 * A job log's tail, then what is appended to it: a minimal reader for the dashboard's live log view
 * (src/ops/logs.ts, the shared one, was not on main when this was written).
 *
 * Only files under `<store>/logs/` are read: the log path comes from the plan document, which any writer
 * of the plan can set, so a path outside the store's log directory is refused rather than served.
 */
import { watch as fsWatch, promises as fsp, type FSWatcher } from "node:fs"
import path from "node:path"

export interface LogTail {
  close(): void
}

/** The absolute log file for a path recorded in a job attempt, or an error naming why it is refused. */
export function logFile(storeDir: string, recorded: string): { file: string } | { error: string } {
  const logs = path.resolve(storeDir, "logs")
  const file = path.resolve(storeDir, recorded)
  const rel = path.relative(logs, file)
  if (!rel || rel.startsWith("..") || path.isAbsolute(rel)) return { error: `log path ${recorded} is outside the store's logs directory` }
  return { file }
}

/**
 * Send the last `tailBytes` of `file` (from a line start), then every append, to `onData`. A file that
 * does not exist yet is waited for. Follows with fs.watch, plus a slow poll (some file systems do not
 * report appends).
 */
export function followLog(file: string, onData: (text: string) => void, opts: { tailBytes?: number; pollMs?: number } = {}): LogTail {
  const tailBytes = opts.tailBytes ?? 64 * 1024
  let pos = -1
  let closed = false
  let reading = false
  let again = false
  let watcher: FSWatcher | undefined
  const read = async () => {
    if (closed) return
    if (reading) {
      again = true
      return
    }
    reading = true
    try {
      const st = await fsp.stat(file).catch(() => undefined)
      if (!st) return
      if (pos < 0 || st.size < pos) pos = Math.max(0, st.size - tailBytes) // first read, or truncated
      if (st.size > pos) {
        const fh = await fsp.open(file, "r")
        try {
          const len = Math.min(st.size - pos, 4 * 1024 * 1024)
          const buf = Buffer.alloc(len)
          const { bytesRead } = await fh.read(buf, 0, len, pos)
          let chunk = buf.subarray(0, bytesRead)
          if (pos > 0 && pos === st.size - tailBytes) {
            const nl = chunk.indexOf(10)
            if (nl >= 0) chunk = chunk.subarray(nl + 1)
          }
          pos += bytesRead
          if (!closed && chunk.length) onData(printable(chunk.toString("utf8")))
        } finally {
          await fh.close()
        }
      }
      if (!watcher && !closed) {
        try {
          watcher = fsWatch(file, () => void read())
          watcher.on("error", () => {})
        } catch {
          // polled
        }
      }
    } catch {
      // read again on the next event or poll
    } finally {
      reading = false
      if (again && !closed) {
        again = false
        void read()
      }
    }
  }
  const timer = setInterval(() => void read(), opts.pollMs ?? 1000)
  void read()
  return {
    close() {
      closed = true
      clearInterval(timer)
      watcher?.close()
    },
  }
}

/** Log text with terminal escapes and control characters removed (newlines and tabs kept). */
export function printable(s: string): string {
  return s
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, "")
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)?/g, "")
    .replace(/\r\n/g, "\n")
    .replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f]/g, "")
}
