/**
 * Test harness: two automerge-repo NetworkAdapters joined back to back in one process, delivering each
 * message on a later turn of the event loop (as a socket would), and counting what goes through.
 */
import { type Message, NetworkAdapter, type PeerId, type PeerMetadata } from "@automerge/automerge-repo/slim"

export class PipeEnd extends NetworkAdapter {
  other?: PipeEnd
  /** messages this end sent */
  sent = 0
  /** messages this end sent that carried changes (sync messages) */
  syncSent = 0
  #ready = false
  #closed = false

  isReady(): boolean {
    return this.#ready
  }

  whenReady(): Promise<void> {
    return Promise.resolve()
  }

  connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    this.peerId = peerId
    this.peerMetadata = peerMetadata
    this.#ready = true
    this.#announce()
    if (this.other) this.other.#announce()
  }

  /** once both ends are connected, each learns the other */
  #announce(): void {
    const o = this.other
    if (!o?.peerId || !this.peerId || this.#closed) return
    this.emit("peer-candidate", { peerId: o.peerId, peerMetadata: o.peerMetadata ?? {} })
  }

  send(message: Message): void {
    if (this.#closed) return
    this.sent++
    if (message.type === "sync") this.syncSent++
    const o = this.other
    setImmediate(() => {
      if (!o || o.#closed) return
      o.emit("message", message)
    })
  }

  disconnect(): void {
    if (this.#closed) return
    this.#closed = true
    const o = this.other
    if (o?.peerId) this.emit("peer-disconnected", { peerId: o.peerId })
    if (this.peerId && o && !o.#closed) setImmediate(() => o.emit("peer-disconnected", { peerId: this.peerId! }))
  }
}

/** Two connected ends: give one to each Repo's `network`. */
export function pipe(): [PipeEnd, PipeEnd] {
  const a = new PipeEnd()
  const b = new PipeEnd()
  a.other = b
  b.other = a
  return [a, b]
}
