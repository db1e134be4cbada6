/**
 * Who made a change, and what it did. Every change to a concord document carries a JSON message
 * `{by, at, did}`: a readable actor (`orchestrator@host:pid`, `job:api#2@host:pid`, `user@host`), a
 * millisecond timestamp from the writer's clock (Automerge's own change time is whole seconds), and a
 * one-line description. `concord history` reads them back.
 */
export interface WriteContext {
  /** Readable actor label, e.g. `user@laptop`. */
  by: string
  /** Millisecond clock of the writer. Injected so the doc layer stays pure. */
  now: number
}

export interface ChangeNote {
  by: string
  at: number
  did: string
}

export function changeOptions(ctx: WriteContext, did: string): { message: string; time: number } {
  const note: ChangeNote = { by: ctx.by, at: ctx.now, did }
  return { message: JSON.stringify(note), time: Math.floor(ctx.now / 1000) }
}

export function parseChangeNote(message: string | null | undefined): ChangeNote | undefined {
  if (!message) return undefined
  try {
    const v = JSON.parse(message)
    if (v && typeof v.by === "string" && typeof v.at === "number" && typeof v.did === "string") return v
  } catch {
    // not one of ours
  }
  return undefined
}

export type ActorKind = "orchestrator" | "user" | { job: string; attempt: number }

export function actorLabel(kind: ActorKind, host: string, pid?: number): string {
  const who = kind === "orchestrator" ? "orchestrator" : kind === "user" ? "user" : `job:${kind.job}#${kind.attempt}`
  return kind === "user" ? `${who}@${host}` : `${who}@${host}:${pid ?? 0}`
}
