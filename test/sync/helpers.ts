import { spawn, type ChildProcess } from "node:child_process"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import path from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath } from "node:url"
import * as A from "@automerge/automerge"
import { ConcordStorageAdapter } from "../../src/sync/storage/ConcordStorageAdapter.js"

/** A fresh temporary directory; `cleanup()` removes it. */
export async function tempDir(prefix = "concord-sync-"): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix))
  // (retried: a Repo shut down by a test may still land a last write while the tree is removed)
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 }) }
}

/**
 * A groupWrites adapter whose documents' directories exist (the first write into a directory goes the usual
 * way: it makes it; the writes after it go in groups).
 */
export async function groupWritesAdapter(dir: string, docs: string[]): Promise<ConcordStorageAdapter> {
  const a = new ConcordStorageAdapter(dir, { groupWrites: true })
  for (const d of docs) await a.save([d, "incremental", "first"], A.save(A.from({ d })))
  return a
}

const WORKER = fileURLToPath(new URL("./store/docstore-worker.mjs", import.meta.url))
const ROOT = fileURLToPath(new URL("../..", import.meta.url))

export interface Worker {
  child: ChildProcess
  lines: string[]
  stderr: string[]
  /** resolves with the first line (from now on, or already received after index `from`) matching `re` */
  waitFor(re: RegExp, timeoutMs?: number): Promise<string>
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  send(line: string): void
}

/** Start `node --import tsx docstore-worker.mjs ...args` as a real OS process. */
export function startWorker(args: string[]): Worker {
  const child = spawn(process.execPath, ["--import", "tsx", WORKER, ...args], {
    cwd: ROOT,
    stdio: ["pipe", "pipe", "pipe"],
  })
  const lines: string[] = []
  const stderr: string[] = []
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = []
  createInterface({ input: child.stdout! }).on("line", l => {
    lines.push(l)
    for (const w of [...waiters]) {
      if (w.re.test(l)) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(l)
      }
    }
  })
  createInterface({ input: child.stderr! }).on("line", l => stderr.push(l))
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(resolve => child.on("exit", (code, signal) => resolve({ code, signal })))
  return {
    child,
    lines,
    stderr,
    exited,
    send: (line: string) => child.stdin!.write(`${line}\n`),
    waitFor(re: RegExp, timeoutMs = 20_000) {
      return new Promise<string>((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`timeout waiting for ${re}; stdout: ${lines.slice(-5).join(" | ")}; stderr: ${stderr.slice(-5).join(" | ")}`)),
          timeoutMs
        )
        waiters.push({
          re,
          resolve: l => {
            clearTimeout(t)
            resolve(l)
          },
        })
      })
    },
  }
}
