/**
 * Per-token limits of the sync server, so that one runaway client (an agent in a loop, a script gone
 * wrong) cannot flood the server or fill its disk. Pure bookkeeping with an injected clock; the server
 * refuses a message that breaks a limit (the client is told why, the server logs it).
 *
 *  - messagesPerSecond / burst: a token bucket per token, shared by all of its connections: up to
 *    `burst` messages at once, refilled at `messagesPerSecond`;
 *  - bytesPerMessage: the largest sync message (its Automerge payload) a token may send;
 *  - docsPerToken: how many documents a token may create on the server (new plans, new report logs);
 *    the count survives restarts (the server seeds it from its audit trail).
 */
export interface TokenLimits {
  messagesPerSecond: number
  burst: number
  bytesPerMessage: number
  docsPerToken: number
}

export const DEFAULT_LIMITS: Readonly<TokenLimits> = {
  messagesPerSecond: 200,
  burst: 2000,
  bytesPerMessage: 16 * 1024 * 1024,
  docsPerToken: 1000,
}

export class LimitBook {
  readonly limits: TokenLimits
  readonly #buckets = new Map<string, { tokens: number; at: number }>()
  readonly #created = new Map<string, Set<string>>()

  constructor(limits: Partial<TokenLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined)) }
  }

  /** Count one message of `bytes` from a token at `now` (ms). Returns why it is refused, if it is. */
  admit(tokenId: string, bytes: number, now: number): string | undefined {
    const l = this.limits
    if (bytes > l.bytesPerMessage) {
      return `message of ${bytes} bytes is over the limit of ${l.bytesPerMessage} bytes per message for token ${tokenId}`
    }
    const b = this.#buckets.get(tokenId) ?? { tokens: l.burst, at: now }
    b.tokens = Math.min(l.burst, b.tokens + ((now - b.at) / 1000) * l.messagesPerSecond)
    b.at = now
    this.#buckets.set(tokenId, b)
    if (b.tokens < 1) {
      return `rate limit: token ${tokenId} sent more than ${l.messagesPerSecond} messages per second (burst ${l.burst}); slow down and sync again`
    }
    b.tokens -= 1
    return undefined
  }

  /** May this token create one more document? Returns why not, if not. */
  canCreate(tokenId: string, docId: string): string | undefined {
    const mine = this.#created.get(tokenId)
    if (mine?.has(docId)) return undefined
    const n = mine?.size ?? 0
    if (n >= this.limits.docsPerToken) {
      return `token ${tokenId} has created ${n} documents on this server, the limit (${this.limits.docsPerToken} per token)`
    }
    return undefined
  }

  /** Count a document this token created; false if it was counted already. */
  noteCreated(tokenId: string, docId: string): boolean {
    let s = this.#created.get(tokenId)
    if (!s) this.#created.set(tokenId, (s = new Set()))
    if (s.has(docId)) return false
    s.add(docId)
    return true
  }

  /** Stop counting a document noted as created (it was not stored after all). */
  forgetCreated(tokenId: string, docId: string): void {
    this.#created.get(tokenId)?.delete(docId)
  }

  created(tokenId: string): number {
    return this.#created.get(tokenId)?.size ?? 0
  }
}
