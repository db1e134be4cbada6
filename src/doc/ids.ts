import { createHash, randomBytes } from "node:crypto"
import bs58 from "bs58"

/**
 * Document ids are automerge-repo DocumentIds (base58check of 16 bytes), so any automerge-repo peer can
 * sync them. Computed here without importing automerge-repo, which keeps the CLI's start-up cheap.
 */
export type DocId = string

/**
 * base58check, as automerge-repo encodes document ids (the bs58check package): the payload, then the
 * first 4 bytes of sha256(sha256(payload)), in base58. Node's own sha256 here, not a JavaScript one.
 */
function checksum(payload: Uint8Array): Buffer {
  return createHash("sha256").update(createHash("sha256").update(payload).digest()).digest().subarray(0, 4)
}

function encodeCheck(payload: Uint8Array): string {
  return bs58.encode(Buffer.concat([payload, checksum(payload)]))
}

/** The payload of a base58check string, or undefined if it is not one. */
function decodeCheck(s: string): Uint8Array | undefined {
  let raw: Uint8Array
  try {
    raw = bs58.decode(s)
  } catch {
    return undefined
  }
  if (raw.length < 5) return undefined
  const payload = raw.subarray(0, raw.length - 4)
  return checksum(payload).equals(raw.subarray(raw.length - 4)) ? payload : undefined
}

export function newDocId(): DocId {
  return encodeCheck(randomBytes(16))
}

/** The id of a job's report log. Derived, so every process can find it without reading the plan. */
export function reportDocId(planId: DocId, job: string): DocId {
  const name = `concord/reports\0${planId}\0${job}`
  let id = reportIds.get(name)
  if (id === undefined) {
    id = encodeCheck(createHash("sha256").update(name).digest().subarray(0, 16))
    if (reportIds.size >= 4096) reportIds.clear()
    reportIds.set(name, id)
  }
  return id
}

/** Report log ids already derived: a long-lived process derives the same few at every report. */
const reportIds = new Map<string, DocId>()

/** Ids already found valid: a long-lived process checks the same few ids on every call. */
const knownIds = new Set<string>()

export function isDocId(s: string): boolean {
  if (knownIds.has(s)) return true
  const ok = decodeCheck(s)?.length === 16
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
