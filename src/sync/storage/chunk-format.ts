/**
 * Structural validation of Automerge binary files (the output of `Automerge.save`,
 * `Automerge.saveSince`, `getLastLocalChange`, `saveBundle`, ...).
 *
 * An Automerge file is a concatenation of one or more chunks:
 *
 *   magic (85 6f 4a 83) | checksum (4 bytes) | type (1 byte) | ULEB128 length | data (length bytes)
 *
 * For chunk types 0 (document), 1 (change) and 3 (bundle) the checksum is the first 4 bytes of
 * sha256(type byte ++ ULEB128 length bytes ++ data). For type 2 (compressed change) the data is a
 * raw DEFLATE stream of a change chunk's data and the checksum is the one of that uncompressed
 * change chunk, i.e. sha256(0x01 ++ ULEB128(uncompressed length) ++ uncompressed data). Both rules
 * were checked against the bytes Automerge 3.5 produces and accepts.
 *
 * Why this exists: `Automerge.loadIncremental` into a non-empty document silently ignores a chunk
 * that fails to parse or whose checksum is wrong (and, given several concatenated chunks, silently
 * drops everything after the first bad one). Checking the container up front lets callers skip and
 * report bad files instead of losing data without a trace.
 */
import { createHash } from "node:crypto"
import { createRequire } from "node:module"

/** zlib, loaded at the first compressed column met (most chunks have none): one module less at start-up. */
let zlib: typeof import("node:zlib") | undefined
function inflateRawSync(data: Uint8Array): Buffer {
  zlib ??= createRequire(import.meta.url)("node:zlib") as typeof import("node:zlib")
  return zlib.inflateRawSync(data)
}

const AUTOMERGE_MAGIC = Uint8Array.of(0x85, 0x6f, 0x4a, 0x83)

const CHUNK_TYPE_DOCUMENT = 0
const CHUNK_TYPE_CHANGE = 1
const CHUNK_TYPE_COMPRESSED_CHANGE = 2

const CHUNK_TYPE_NAMES: Record<number, string> = {
  0: "document",
  1: "change",
  2: "compressed change",
  3: "bundle",
}

export type VerifyResult = { ok: true } | { ok: false; reason: string }

/** One chunk of an Automerge file, as located by {@link listChunks}. */
export interface ChunkHeaderInfo {
  /** byte offset of the chunk's magic bytes */
  offset: number
  type: number
  /** length of the data section */
  length: number
  /** total length of the chunk, header included */
  size: number
}

/** Decode a ULEB128 number; returns undefined if it runs past the end or overflows 2^53. */
function readUleb(bytes: Uint8Array, pos: number): { value: number; next: number } | undefined {
  let value = 0
  let scale = 1
  for (let i = 0; i < 10; i++) {
    if (pos + i >= bytes.length) return undefined
    const b = bytes[pos + i]
    value += (b & 0x7f) * scale
    if (!Number.isSafeInteger(value)) return undefined
    if ((b & 0x80) === 0) return { value, next: pos + i + 1 }
    scale *= 128
  }
  return undefined
}

function encodeUleb(n: number): Uint8Array {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Uint8Array.from(out)
}

/**
 * A chunk's sha256 as Automerge computes it: of its type ++ length ++ data, for a compressed change of
 * the uncompressed change chunk. A change's hash; its first 4 bytes are every chunk's checksum. Throws
 * when a compressed change does not decompress.
 */
function chunkDigest(bytes: Uint8Array, c: ChunkHeaderInfo): Buffer {
  if (c.type === CHUNK_TYPE_COMPRESSED_CHANGE) {
    const inflated = inflateRawSync(bytes.subarray(c.offset + c.size - c.length, c.offset + c.size))
    return createHash("sha256").update(Uint8Array.of(CHUNK_TYPE_CHANGE)).update(encodeUleb(inflated.length)).update(inflated).digest()
  }
  return createHash("sha256")
    .update(bytes.subarray(c.offset + 8, c.offset + c.size))
    .digest()
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex")
}

/**
 * Walk the chunk headers of `bytes` without checking checksums. Returns the chunks found, or the
 * reason the container is malformed.
 */
export function listChunks(bytes: Uint8Array): { ok: true; chunks: ChunkHeaderInfo[] } | { ok: false; reason: string } {
  const chunks: ChunkHeaderInfo[] = []
  if (bytes.length === 0) return { ok: false, reason: "empty file (0 bytes)" }
  let pos = 0
  while (pos < bytes.length) {
    const n = chunks.length
    const where = `chunk ${n} at byte ${pos}`
    if (bytes.length - pos < 10) {
      return {
        ok: false,
        reason: `${where}: truncated header (${bytes.length - pos} bytes left, need at least 10)${
          n > 0 ? " (trailing bytes after the last complete chunk)" : ""
        }`,
      }
    }
    for (let i = 0; i < 4; i++) {
      if (bytes[pos + i] !== AUTOMERGE_MAGIC[i]) {
        return {
          ok: false,
          reason: `${where}: bad magic bytes ${hex(bytes.subarray(pos, pos + 4))} (expected 856f4a83)${
            n > 0 ? " (garbage after the last complete chunk)" : ""
          }`,
        }
      }
    }
    const type = bytes[pos + 8]
    if (!(type in CHUNK_TYPE_NAMES)) {
      return { ok: false, reason: `${where}: unknown chunk type ${type}` }
    }
    const len = readUleb(bytes, pos + 9)
    if (!len) return { ok: false, reason: `${where}: truncated or invalid length field` }
    const end = len.next + len.value
    if (end > bytes.length) {
      return {
        ok: false,
        reason: `${where}: truncated ${CHUNK_TYPE_NAMES[type]} chunk (declares ${len.value} data bytes, only ${bytes.length - len.next} present)`,
      }
    }
    chunks.push({ offset: pos, type, length: len.value, size: end - pos })
    pos = end
  }
  return { ok: true, chunks }
}

/**
 * Check that `bytes` is a complete, uncorrupted Automerge file: one or more well-formed chunks with
 * valid checksums that consume every byte. An empty file is invalid.
 *
 * This checks the container (framing, checksums, decompression of compressed changes), not the
 * semantic content of the chunks; a chunk that passes can still be rejected by Automerge, but a
 * truncated, torn, zero-length, garbage or garbage-appended file is always caught.
 */
export function verifyAutomergeBytes(bytes: Uint8Array, opts: { headers?: ChangeHeader[][] } = {}): VerifyResult {
  const listed = listChunks(bytes)
  if (!listed.ok) return listed
  // with `headers`: the changes' headers too, from the same hashes (none listed unless every chunk is a
  // plain change chunk, as saveSince writes them)
  let headers: ChangeHeader[] | undefined = opts.headers ? [] : undefined
  for (const [i, c] of listed.chunks.entries()) {
    const stored = bytes.subarray(c.offset + 4, c.offset + 8)
    let expected: Uint8Array
    try {
      const digest = chunkDigest(bytes, c)
      expected = digest.subarray(0, 4)
      if (headers) {
        const h = c.type === CHUNK_TYPE_CHANGE ? changeHeader(bytes, c, digest) : undefined
        if (h) headers.push(h)
        else headers = undefined
      }
    } catch (e) {
      return {
        ok: false,
        reason: `chunk ${i} at byte ${c.offset}: compressed change does not decompress (${(e as Error).message})`,
      }
    }
    if (!sameBytes(stored, expected)) {
      return {
        ok: false,
        reason: `chunk ${i} at byte ${c.offset}: bad checksum in ${CHUNK_TYPE_NAMES[c.type]} chunk (stored ${hex(stored)}, computed ${hex(expected)})`,
      }
    }
  }
  if (headers) opts.headers!.push(headers)
  return { ok: true }
}

/** What a verified Automerge file contains, as far as can be told without loading it. */
export interface ChunkContents {
  /** hashes of the changes in its change and compressed-change chunks */
  changeHashes: string[]
  /** heads recorded in its document chunks (every change of a document chunk is an ancestor) */
  documentHeads: string[]
  /** it has at least one document chunk */
  hasDocument: boolean
  /** it has chunks whose changes cannot be listed this way (bundles, unparseable document header) */
  opaque: boolean
  /** its chunks, in order (as {@link listChunks} finds them) */
  chunks: ChunkHeaderInfo[]
}

/**
 * List the change hashes / document heads of a file, so a caller can check afterwards that
 * Automerge really applied all of it (`Automerge.getMissingDeps(doc, hashes)` is empty).
 * Returns undefined if the container is invalid (see {@link verifyAutomergeBytes}).
 *
 * A change's hash is the full sha256 of its (uncompressed) chunk's type ++ length ++ data, i.e. the
 * checksum is the hash's first 4 bytes. A document chunk's data starts with its actor table
 * (ULEB count, then ULEB length + bytes each) followed by its heads (ULEB count, 32 bytes each).
 */
export function chunkContents(bytes: Uint8Array): ChunkContents | undefined {
  // one pass, one sha256 per chunk: a change's checksum is the first 4 bytes of its hash
  const listed = listChunks(bytes)
  if (!listed.ok) return undefined
  const out: ChunkContents = { changeHashes: [], documentHeads: [], hasDocument: false, opaque: false, chunks: listed.chunks }
  for (const c of listed.chunks) {
    const stored = bytes.subarray(c.offset + 4, c.offset + 8)
    const data = bytes.subarray(c.offset + c.size - c.length, c.offset + c.size)
    let digest: Buffer
    try {
      digest = chunkDigest(bytes, c)
    } catch {
      return undefined
    }
    if (!sameBytes(stored, digest.subarray(0, 4))) return undefined
    if (c.type === CHUNK_TYPE_CHANGE || c.type === CHUNK_TYPE_COMPRESSED_CHANGE) out.changeHashes.push(digest.toString("hex"))
    else if (c.type === CHUNK_TYPE_DOCUMENT) {
      out.hasDocument = true
      const heads = documentHeads(data)
      if (heads) out.documentHeads.push(...heads)
      else out.opaque = true
    } else {
      out.opaque = true
    }
  }
  return out
}

function documentHeads(data: Uint8Array): string[] | undefined {
  let pos = 0
  const actors = readUleb(data, pos)
  if (!actors) return undefined
  pos = actors.next
  for (let i = 0; i < actors.value; i++) {
    const len = readUleb(data, pos)
    if (!len) return undefined
    pos = len.next + len.value
    if (pos > data.length) return undefined
  }
  const count = readUleb(data, pos)
  if (!count) return undefined
  pos = count.next
  if (pos + count.value * 32 > data.length) return undefined
  const heads: string[] = []
  for (let i = 0; i < count.value; i++, pos += 32) heads.push(hex(data.subarray(pos, pos + 32)))
  return heads
}

/** What the header of one change says: its hash, its author (actor id, hex) and its message. */
export interface ChangeHeader {
  hash: string
  actor: string
  message: string | null
}

/**
 * The header of a (plain) change chunk, read without Automerge (`digest`: its hash); undefined if it does not
 * parse. A change chunk's data starts with its dependencies (ULEB count, 32 bytes each), its actor (ULEB
 * length + bytes), seq and start op (ULEB), time (SLEB) and message (ULEB length + UTF-8; empty: none).
 */
function changeHeader(bytes: Uint8Array, c: ChunkHeaderInfo, digest: Buffer): ChangeHeader | undefined {
  const data = bytes.subarray(c.offset + c.size - c.length, c.offset + c.size)
  const deps = readUleb(data, 0)
  if (!deps) return undefined
  let pos = deps.next + deps.value * 32
  const actorLen = pos <= data.length ? readUleb(data, pos) : undefined
  if (!actorLen || actorLen.next + actorLen.value > data.length) return undefined
  const actor = hex(data.subarray(actorLen.next, actorLen.next + actorLen.value))
  pos = actorLen.next + actorLen.value
  for (let i = 0; i < 2; i++) {
    const n = readUleb(data, pos) // seq, start op
    if (!n) return undefined
    pos = n.next
  }
  // time: a signed LEB128 (only where it ends matters)
  while (pos < data.length && data[pos] & 0x80) pos++
  pos++
  const msgLen = pos <= data.length ? readUleb(data, pos) : undefined
  if (!msgLen || msgLen.next + msgLen.value > data.length) return undefined
  const message = msgLen.value === 0 ? null : Buffer.from(data.buffer, data.byteOffset + msgLen.next, msgLen.value).toString("utf8")
  return { hash: digest.toString("hex"), actor, message }
}
