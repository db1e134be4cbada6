/**
 * Access tokens of a sync server. The tokens file (JSON, mode 0600, written atomically) keeps only the
 * sha256 of each secret: secrets are 256-bit random strings, so a fast hash is enough (there is nothing
 * to brute-force), and lookup by hash compares no secret byte by byte.
 *
 *   { "version": 1, "tokens": [ { "id": "tk_…", "sha256": "<hex>", "role": "writer",
 *                                 "plans": ["<planId>"], "createdAt": 0, "label": "…" } ] }
 *
 * A secret looks like `concord_<id>_<random>`; the id part (also stored) names the token in logs.
 * `plans` holds plan document ids, or "*" for every plan on the server (including plans pushed later).
 */
import { createHash, randomBytes } from "node:crypto"
import { promises as fsp } from "node:fs"
import path from "node:path"
import { InputError } from "../../doc/errors.js"
import { isDocId } from "../../doc/ids.js"
import { writeFileAtomic } from "../storage/atomic.js"

export type Role = "admin" | "writer" | "reader" | `job:${string}`

export interface TokenRecord {
  id: string
  sha256: string
  role: Role
  plans: string[]
  createdAt: number
  label?: string
}

export interface TokensFile {
  version: 1
  tokens: TokenRecord[]
}

export const ALL_PLANS = "*"
const JOB_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/

function parseRole(s: string): Role {
  if (s === "admin" || s === "writer" || s === "reader") return s
  if (s.startsWith("job:")) {
    const name = s.slice(4)
    if (!name) throw new InputError(`invalid role "${s}": job:NAME needs a job name`)
    return `job:${name}`
  }
  throw new InputError(`invalid role "${s}": expected admin, writer, reader or job:NAME`)
}

/** The job a job:NAME role is limited to, else undefined. */
export function roleJob(role: Role): string | undefined {
  return role.startsWith("job:") ? role.slice(4) : undefined
}

function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex")
}

export function defaultTokensFile(storeDir: string): string {
  return path.join(storeDir, "tokens.json")
}

function validate(v: unknown, file: string): TokensFile {
  const bad = (why: string) => new InputError(`tokens file ${file} is invalid: ${why}`)
  if (!v || typeof v !== "object" || (v as TokensFile).version !== 1 || !Array.isArray((v as TokensFile).tokens)) {
    throw bad('expected {"version": 1, "tokens": [...]}')
  }
  for (const [i, t] of (v as TokensFile).tokens.entries()) {
    if (!t || typeof t.id !== "string" || typeof t.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(t.sha256)) {
      throw bad(`token #${i + 1} needs an id and a sha256`)
    }
    try {
      parseRole(t.role)
    } catch (e) {
      throw bad(`token ${t.id}: ${(e as Error).message}`)
    }
    if (!Array.isArray(t.plans) || t.plans.some(p => typeof p !== "string")) throw bad(`token ${t.id}: plans must be a list of ids`)
  }
  return v as TokensFile
}

export async function readTokens(file: string): Promise<TokensFile> {
  let text: string
  try {
    text = await fsp.readFile(file, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, tokens: [] }
    throw new InputError(`cannot read tokens file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`)
  }
  let v: unknown
  try {
    v = JSON.parse(text)
  } catch (e) {
    throw new InputError(`tokens file ${file} is not valid JSON: ${(e as Error).message}`)
  }
  return validate(v, file)
}

async function writeTokens(file: string, data: TokensFile): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, { mode: 0o600 })
}

export interface NewToken {
  plans: string[]
  role: string
  label?: string
}

/** Validate, add a token to the file, and return its secret (shown once, never stored). */
export async function addToken(file: string, spec: NewToken): Promise<{ secret: string; record: TokenRecord }> {
  const role = parseRole(spec.role)
  if (spec.plans.length === 0) throw new InputError("no plan given: use --plan ID (or --plan '*' for every plan)")
  for (const p of spec.plans) {
    if (p !== ALL_PLANS && !isDocId(p)) throw new InputError(`invalid plan id "${p}": expected a plan document id or "*"`)
  }
  const job = roleJob(role)
  if (job !== undefined && !JOB_NAME_RE.test(job)) throw new InputError(`invalid job name "${job}" in role ${role}`)
  const data = await readTokens(file)
  const id = `tk_${randomBytes(6).toString("hex")}`
  const secret = `concord_${id.slice(3)}_${randomBytes(32).toString("base64url")}`
  const record: TokenRecord = {
    id,
    sha256: hashSecret(secret),
    role,
    plans: [...new Set(spec.plans)],
    createdAt: Date.now(),
    ...(spec.label ? { label: spec.label } : {}),
  }
  data.tokens.push(record)
  await writeTokens(file, data)
  return { secret, record }
}

export async function revokeToken(file: string, id: string): Promise<boolean> {
  const data = await readTokens(file)
  const n = data.tokens.length
  data.tokens = data.tokens.filter(t => t.id !== id)
  if (data.tokens.length === n) return false
  await writeTokens(file, data)
  return true
}

/**
 * The server's view of the tokens file: re-read when the file changes (checked at most every 500 ms),
 * so tokens added or revoked while the server runs take effect for new connections.
 */
export class TokenBook {
  readonly file: string
  #byHash = new Map<string, TokenRecord>()
  #stamp = ""
  #checkedAt = 0
  #loading?: Promise<void>
  readonly #onWarning: (msg: string) => void

  constructor(file: string, onWarning: (msg: string) => void = () => {}) {
    this.file = file
    this.#onWarning = onWarning
  }

  get size(): number {
    return this.#byHash.size
  }

  async load(): Promise<void> {
    const data = await readTokens(this.file)
    this.#byHash = new Map(data.tokens.map(t => [t.sha256, t]))
    this.#stamp = await this.#fileStamp()
    this.#checkedAt = Date.now()
  }

  async #fileStamp(): Promise<string> {
    try {
      const st = await fsp.stat(this.file)
      return `${st.mtimeMs}:${st.size}:${st.ino}`
    } catch {
      return "none"
    }
  }

  async #refresh(): Promise<void> {
    if (Date.now() - this.#checkedAt < 500) return
    this.#loading ??= (async () => {
      try {
        this.#checkedAt = Date.now()
        if ((await this.#fileStamp()) !== this.#stamp) await this.load()
      } catch (e) {
        // keep the last good set of tokens
        this.#onWarning(`tokens file not reloaded: ${(e as Error).message}`)
      } finally {
        this.#loading = undefined
      }
    })()
    await this.#loading
  }

  /** Is this token (as verified earlier) still in the file? */
  async stillValid(record: TokenRecord): Promise<boolean> {
    await this.#refresh()
    return this.#byHash.get(record.sha256)?.id === record.id
  }

  /** The token record for a secret, or undefined. */
  async verify(secret: string | undefined | null): Promise<TokenRecord | undefined> {
    if (!secret || secret.length > 512) return undefined
    await this.#refresh()
    return this.#byHash.get(hashSecret(secret))
  }
}
