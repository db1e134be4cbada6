/**
 * Detecting a sync conversation that no longer makes progress, so the client can start it afresh.
 *
 * Automerge's sync protocol assumes that every message of a connection arrives. When one is lost (the
 * server refused it under its rate limit or access rules, a socket closed under it, a faulty network
 * path dropped it), the sender's sync state still lists its changes as sent, and it never sends them
 * again on that connection: the receiver keeps asking for them (`need`) and gets an empty answer, round
 * trip after round trip (a livelock that also eats the token's rate limit), or, when nothing else
 * happens, the two sides just stay apart. Automerge-repo resets the per-peer sync state (keeping only
 * the shared heads) when a peer connects, so the cure is to reconnect.
 *
 * Pure bookkeeping (no I/O, no clock): the adapter feeds it every sync message it sends or receives.
 */

export interface StallVerdict {
  documentId: string
  direction: "in" | "out"
  need: readonly string[]
  repeats: number
}

/**
 * Counts, per document and direction, how many sync messages in a row asked for the same missing
 * changes. A healthy conversation asks once (twice when messages cross); `limit` repeats mean the other
 * side will not send them on this connection.
 */
export class SyncStallDetector {
  readonly #last = new Map<string, { need: string; repeats: number }>()

  constructor(readonly limit = 6) {}

  /** Note one sync message; returns a verdict when this document's conversation is stuck. */
  see(direction: "in" | "out", documentId: string, need: readonly string[]): StallVerdict | undefined {
    const key = `${direction} ${documentId}`
    if (need.length === 0) {
      this.#last.delete(key)
      return undefined
    }
    const sig = [...need].sort().join(",")
    const prev = this.#last.get(key)
    const repeats = prev && prev.need === sig ? prev.repeats + 1 : 1
    this.#last.set(key, { need: sig, repeats })
    if (repeats < this.limit) return undefined
    this.#last.delete(key)
    return { documentId, direction, need, repeats }
  }

  /** A new connection: every conversation starts afresh. */
  reset(): void {
    this.#last.clear()
  }
}

/**
 * Anti-entropy for a long-running sync: compares, now and then, the heads the server has durably with
 * the heads this client has. A difference that stays exactly the same across `checks` comparisons, while
 * connected, is a conversation that lost a message (see above); a moving difference is sync at work.
 */
export class DivergenceWatch {
  readonly #seen = new Map<string, { sig: string; checks: number }>()

  constructor(readonly checks = 2) {}

  /**
   * One comparison. `server` and `local` map document ids to their heads (server: null = it does not
   * have the document). Returns the documents whose difference has not moved for `checks` comparisons.
   */
  compare(server: Record<string, readonly string[] | null>, local: Record<string, readonly string[]>): string[] {
    const stuck: string[] = []
    for (const [id, mine] of Object.entries(local)) {
      const theirs = server[id]
      if (theirs === undefined) continue
      const sig = `${[...(theirs ?? [])].sort().join(",")}|${[...mine].sort().join(",")}`
      const same = theirs !== null && theirs.length === mine.length && theirs.every(h => mine.includes(h))
      if (same) {
        this.#seen.delete(id)
        continue
      }
      const prev = this.#seen.get(id)
      const checks = prev && prev.sig === sig ? prev.checks + 1 : 1
      this.#seen.set(id, { sig, checks })
      if (checks >= this.checks) {
        stuck.push(id)
        this.#seen.delete(id)
      }
    }
    return stuck
  }
}
