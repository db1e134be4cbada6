/**
 * The direct change exchange of a one-shot `concord sync` (POST /v1/exchange): per document, the
 * changes the server lacks go up and the changes the client lacks come back, both as Automerge chunks
 * (`saveSince` / `loadIncremental`), in one HTTP request, without Automerge's sync protocol or a Repo on
 * the client.
 *
 * Wire format of both the request and the answer (content type application/octet-stream):
 *   4 bytes    big-endian length H of the header
 *   H bytes    the header, UTF-8 JSON: {"docs": [{"id", "heads", "bytes", ...}, ...]}
 *   the documents' chunks, one after another, each `bytes` long, in the header's order
 * Request entry: {id, heads: the client's heads (hex; [] when it has no copy), bytes}.
 * Answer entry:  {id, heads: the server's durable heads after applying (null: it has no such document),
 *                 bytes: changes the client lacks, refused?: why the client's changes were refused,
 *                 missingDeps?: the changes sent build on changes the server does not have (send more)}.
 * Pure encoding and validation: no I/O.
 */

import type { Backend } from "./access.js"

export interface ExchangeRequestDoc {
  id: string
  heads: string[]
  bytes: number
}

export interface ExchangeAnswerDoc {
  id: string
  heads: string[] | null
  bytes: number
  refused?: string
  missingDeps?: boolean
}

export interface Framed<T> {
  docs: T[]
  chunks: Uint8Array[]
}

/** Largest header accepted (JSON of ids and heads). */
const MAX_HEADER_BYTES = 8 * 1024 * 1024
/** Most documents in one exchange. */
const MAX_EXCHANGE_DOCS = 10_000
/** Most heads per document in one exchange. */
const MAX_HEADS = 1000

const HEX_HEAD = /^[0-9a-f]{64}$/

/** Header + chunks as one buffer (the chunks' lengths are written into the header entries). */
export function encodeFramed<T extends { bytes: number }>(docs: T[], chunks: Uint8Array[]): Buffer {
  if (docs.length !== chunks.length) throw new Error("encodeFramed: one chunk per document")
  docs.forEach((d, i) => (d.bytes = chunks[i].byteLength))
  const header = Buffer.from(JSON.stringify({ docs }), "utf8")
  const len = Buffer.alloc(4)
  len.writeUInt32BE(header.byteLength)
  return Buffer.concat([len, header, ...chunks.map(c => Buffer.from(c.buffer, c.byteOffset, c.byteLength))])
}

/** Split a framed buffer; throws an Error naming what is wrong. */
function decodeFramed(buf: Uint8Array): Framed<Record<string, unknown>> {
  if (buf.byteLength < 4) throw new Error("body too short for an exchange")
  const view = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const h = view.readUInt32BE(0)
  if (h > MAX_HEADER_BYTES || 4 + h > buf.byteLength) throw new Error(`header length ${h} does not fit the body (${buf.byteLength} bytes)`)
  let header: unknown
  try {
    header = JSON.parse(view.subarray(4, 4 + h).toString("utf8"))
  } catch (e) {
    throw new Error(`header is not JSON (${(e as Error).message})`)
  }
  const docs = (header as { docs?: unknown })?.docs
  if (!Array.isArray(docs)) throw new Error('header must be {"docs": [...]}')
  if (docs.length > MAX_EXCHANGE_DOCS) throw new Error(`at most ${MAX_EXCHANGE_DOCS} documents per exchange (got ${docs.length})`)
  const chunks: Uint8Array[] = []
  let at = 4 + h
  for (const d of docs) {
    const n = (d as { bytes?: unknown })?.bytes
    if (!Number.isSafeInteger(n) || (n as number) < 0) throw new Error("every document needs a byte count")
    if (at + (n as number) > buf.byteLength) throw new Error("the chunks are shorter than the header says")
    chunks.push(buf.subarray(at, at + (n as number)))
    at += n as number
  }
  if (at !== buf.byteLength) throw new Error(`${buf.byteLength - at} bytes after the last chunk`)
  return { docs: docs as Record<string, unknown>[], chunks }
}

const isHeads = (v: unknown): v is string[] => Array.isArray(v) && v.length <= MAX_HEADS && v.every(x => typeof x === "string" && HEX_HEAD.test(x))

/** Validate a request's entries (ids checked by `isDocId`); throws an Error naming the first bad one. */
export function parseRequest(buf: Uint8Array, isDocId: (id: string) => boolean): Framed<ExchangeRequestDoc> {
  const f = decodeFramed(buf)
  const seen = new Set<string>()
  for (const d of f.docs) {
    if (typeof d.id !== "string" || !isDocId(d.id)) throw new Error(`invalid document id ${JSON.stringify(d.id)}`)
    if (seen.has(d.id)) throw new Error(`document ${d.id} appears twice`)
    seen.add(d.id)
    if (!isHeads(d.heads)) throw new Error(`heads of ${d.id} must be at most ${MAX_HEADS} hex change hashes`)
  }
  return f as unknown as Framed<ExchangeRequestDoc>
}

/** Validate an answer (the client's side); throws an Error naming the first bad entry. */
export function parseAnswer(buf: Uint8Array): Framed<ExchangeAnswerDoc> {
  const f = decodeFramed(buf)
  for (const d of f.docs) {
    if (typeof d.id !== "string") throw new Error("an answer entry has no document id")
    if (d.heads !== null && !isHeads(d.heads)) throw new Error(`bad heads for ${d.id}`)
    if (d.refused !== undefined && typeof d.refused !== "string") throw new Error(`bad refusal for ${d.id}`)
  }
  return f as unknown as Framed<ExchangeAnswerDoc>
}

/** The job names of a plan document, read without its JavaScript view. */
export function jobsOf(raw: Backend): string[] {
  try {
    const jobs = raw.getWithType("_root", "jobs")
    return jobs && jobs[0] === "map" ? raw.keys(jobs[1] as string) : []
  } catch {
    return []
  }
}
