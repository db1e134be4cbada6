import { createHash, randomBytes } from "node:crypto"
import bs58check from "bs58check"

/**
 * Document ids are automerge-repo DocumentIds (base58check of 16 bytes), so any automerge-repo peer can
 * sync them. Computed here without importing automerge-repo, which keeps the CLI's start-up cheap.
 */
export type DocId = string

export function newDocId(): DocId {
  return bs58check.encode(randomBytes(16))
}

/** The id of a job's report log. Derived, so every process can find it without reading the plan. */
export function reportDocId(planId: DocId, job: string): DocId {
  const digest = createHash("sha256").update(`concord/reports\0${planId}\0${job}`).digest()
  return bs58check.encode(digest.subarray(0, 16))
}

/** Ids already found valid (a long-lived process checks the same few ids on every call; the checksum is sha256 twice in JS). */
const knownIds = new Set<string>()

export function isDocId(s: string): boolean {
  if (knownIds.has(s)) return true
  let ok: boolean
  try {
    ok = bs58check.decode(s).length === 16
  } catch {
    ok = false
  }
  if (ok) {
    if (knownIds.size >= 4096) knownIds.clear()
    knownIds.add(s)
  }
  return ok
}

export function docUrl(id: DocId): string {
  return `automerge:${id}`
}

/** Accepts a bare id or an `automerge:` url. */
export function parseDocRef(ref: string): DocId | undefined {
  const id = ref.startsWith("automerge:") ? ref.slice("automerge:".length).split("#")[0] : ref
  return isDocId(id) ? id : undefined
}
