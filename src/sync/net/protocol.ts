/**
 * The wire format between concord's sync server and its clients: exactly the one of
 * `@automerge/automerge-repo-network-websocket` (CBOR frames; a client sends `join`, the server answers
 * `peer`; then automerge-repo messages: `sync`, `request`, `doc-unavailable`, `ephemeral`), so a stock
 * `WebSocketClientAdapter` can talk to a concord server and the other way round. The sync protocol itself
 * is automerge-repo's (Automerge sync messages inside `sync` / `request` frames); nothing here replaces it.
 *
 * One addition, ignored by stock peers (automerge-repo drops message types it does not know): the server
 * may send `concord-refused` to tell a client that one of its messages was dropped by access control,
 * so that `concord sync` can stop with a clear error instead of waiting for a sync that cannot finish.
 */
import { isValidDocumentId, type Message, type PeerId, type PeerMetadata } from "@automerge/automerge-repo/slim"
import { cbor } from "@automerge/automerge-repo/slim"
import { ProtocolV1 } from "@automerge/automerge-repo-network-websocket"

export { ProtocolV1 }

export interface JoinMessage {
  type: "join"
  senderId: PeerId
  peerMetadata: PeerMetadata
  supportedProtocolVersions: string[]
}

/** concord's notice that a message from the client was refused (and not stored). */
export interface RefusedMessage {
  type: "concord-refused"
  senderId: PeerId
  targetId: PeerId
  documentId?: string
  reason: string
}

export const REFUSED_TYPE = "concord-refused"

/** Message types a client may send to the server after `join`. */
const CLIENT_DOC_TYPES = new Set(["sync", "request", "doc-unavailable", "ephemeral"])

export function encodeFrame(message: unknown): Uint8Array {
  return cbor.encode(message)
}

/** Decode a CBOR frame; throws on malformed input. */
export function decodeFrame(bytes: Uint8Array): unknown {
  return cbor.decode(bytes)
}

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v)

const PEER_ID_RE = /^[\x21-\x7e]{1,200}$/

function isValidPeerId(v: unknown): v is PeerId {
  return typeof v === "string" && PEER_ID_RE.test(v)
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array
}

/**
 * Check the shape of a decoded frame from a client (after join). Returns an error string, or undefined
 * if the message is well formed. Does not judge access.
 */
export function checkClientMessage(m: Record<string, unknown>): string | undefined {
  const type = m.type
  if (typeof type !== "string") return "message without a type"
  if (!CLIENT_DOC_TYPES.has(type)) return `unsupported message type ${JSON.stringify(type.slice(0, 40))}`
  if (!isValidPeerId(m.senderId)) return "invalid senderId"
  if (typeof m.documentId !== "string" || !isValidDocumentId(m.documentId)) return "invalid documentId"
  if (type === "doc-unavailable") return undefined
  if (!isBytes(m.data) || m.data.byteLength === 0) return `${type} message without data`
  if (type === "ephemeral") {
    if (typeof m.count !== "number" || !Number.isFinite(m.count)) return "ephemeral message without count"
    if (typeof m.sessionId !== "string") return "ephemeral message without sessionId"
  }
  return undefined
}

/** Check a join message; returns an error string or undefined. */
export function checkJoin(m: Record<string, unknown>): string | undefined {
  if (!isValidPeerId(m.senderId)) return "join without a valid senderId"
  if (m.supportedProtocolVersions !== undefined) {
    if (!Array.isArray(m.supportedProtocolVersions)) return "join with invalid supportedProtocolVersions"
    if (!m.supportedProtocolVersions.includes(ProtocolV1)) return "unsupported protocol version"
  }
  return undefined
}

/** Check a frame from the server (client side): a RepoMessage for the Repo, or one of ours. */
export function checkServerMessage(m: unknown): m is Message {
  return isObject(m) && typeof m.type === "string" && isValidPeerId(m.senderId)
}

export type { PeerId, PeerMetadata, Message }
