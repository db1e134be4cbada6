/**
 * The sync server's audit trail: one record for every change it accepted from a client, written before
 * the change reaches the server's Repo (and so before it is stored or passed on to anyone).
 *
 *   <store>/audit/YYYY-MM-DD.jsonl   (UTC day the change was received; mode 0600)
 *   {"v":1,"at":1733050000000,"hash":"<change hash>","doc":"<document id>","token":"tk_…","label":"agent C",
 *    "role":"job:C","remote":"127.0.0.1:53422","by":"job:C#1@host:42","actor":"<automerge actor>","created":false}
 *
 * Append-only: files are opened with O_APPEND, each message's records go in one write followed by
 * fsync (and an fsync of the directory when a day's file is created); nothing is ever rewritten. The
 * directory is not an Automerge document, so it is never synced to anyone. A record's `by` is the
 * author the change claims (its message); `token`, `role`, `remote` and `at` are what the server
 * verified and saw. A crash can leave a torn last line: readers skip lines that do not parse.
 */
import { promises as fsp } from "node:fs"
import path from "node:path"
import { ensureDirIn } from "../storage/atomic.js"

const AUDIT_DIR = "audit"

export interface AuditRecord {
  v: 1
  /** when the server received the change (ms) */
  at: number
  hash: string
  doc: string
  token: string
  label?: string
  role: string
  remote: string
  /** the author claimed in the change's message, if any */
  by: string | null
  actor: string
  /** this message created the document on the server */
  created?: boolean
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10)

/** The writer side, owned by one server process. Appends are serialized. */
export class AuditLog {
  readonly dir: string
  readonly #storeDir: string
  #file?: { day: string; handle: fsp.FileHandle }
  #queue: Promise<void> = Promise.resolve()
  #closed = false

  constructor(storeDir: string) {
    this.#storeDir = path.resolve(storeDir)
    this.dir = path.join(this.#storeDir, AUDIT_DIR)
  }

  /** Append records durably (one write, one fsync). Rejects if they could not be written. */
  append(records: AuditRecord[]): Promise<void> {
    if (records.length === 0) return Promise.resolve()
    const run = this.#queue.then(() => this.#write(records))
    this.#queue = run.catch(() => {})
    return run
  }

  async #write(records: AuditRecord[]): Promise<void> {
    if (this.#closed) throw new Error("audit log is closed")
    const d = day(records[0].at)
    if (this.#file?.day !== d) {
      await this.#file?.handle.close().catch(() => {})
      this.#file = undefined
      await ensureDirIn(this.#storeDir, this.dir, 0o700)
      const name = path.join(this.dir, `${d}.jsonl`)
      const handle = await fsp.open(name, "a", 0o600)
      this.#file = { day: d, handle }
      await syncDir(this.dir)
    }
    const text = `${records.map(r => JSON.stringify(r)).join("\n")}\n`
    const buf = Buffer.from(text, "utf8")
    let off = 0
    while (off < buf.length) off += (await this.#file.handle.write(buf, off, buf.length - off)).bytesWritten
    await this.#file.handle.sync()
  }

  async close(): Promise<void> {
    await this.#queue
    this.#closed = true
    await this.#file?.handle.close().catch(() => {})
    this.#file = undefined
  }
}

async function syncDir(dir: string): Promise<void> {
  let h: fsp.FileHandle | undefined
  try {
    h = await fsp.open(dir, "r")
    await h.sync()
  } catch {
    // some file systems cannot fsync a directory
  } finally {
    await h?.close().catch(() => {})
  }
}

/**
 * Every audit record of a store, oldest file first, in the order written. Lines that do not parse (a
 * torn last line after a crash) are skipped and counted in `skipped`. No audit directory: no records.
 */
export async function readAudit(storeDir: string): Promise<AuditRecord[] & { skipped?: number }> {
  const dir = path.join(storeDir, AUDIT_DIR)
  let names: string[]
  try {
    names = (await fsp.readdir(dir)).filter(n => /^\d{4}-\d{2}-\d{2}\.jsonl$/.test(n)).sort()
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
    throw e
  }
  const out: AuditRecord[] & { skipped?: number } = []
  let skipped = 0
  for (const n of names) {
    const text = await fsp.readFile(path.join(dir, n), "utf8")
    for (const line of text.split("\n")) {
      if (!line) continue
      try {
        const r = JSON.parse(line) as AuditRecord
        if (r && typeof r.hash === "string" && typeof r.token === "string" && typeof r.role === "string") out.push(r)
        else skipped++
      } catch {
        skipped++
      }
    }
  }
  if (skipped) out.skipped = skipped
  return out
}

/**
 * Does the author a change claims fit the token that delivered it? A job:NAME token speaks for its
 * job's agent only (`job:NAME#N@...`); admin and writer tokens may act as anyone (orchestrator, user,
 * agent); a reader delivers nothing. A change with no readable claim fits no job token.
 */
export function claimFitsRole(role: string, by: string | null): boolean {
  if (role === "admin" || role === "writer") return true
  if (role.startsWith("job:")) {
    const job = role.slice(4)
    return typeof by === "string" && by.startsWith(`job:${job}#`) && /^job:[^#]+#\d+(@|$)/.test(by)
  }
  return false
}
