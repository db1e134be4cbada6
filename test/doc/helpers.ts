import * as A from "@automerge/automerge"
import { randomBytes } from "node:crypto"
import type { WriteContext } from "../../src/doc/actor.js"
import type { PlanSpec } from "../../src/doc/spec.js"

let clock = 1_700_000_000_000
export function ctx(by = "test@host:1"): WriteContext {
  clock += 1
  return { by, now: clock }
}

export function spec(jobs: { name: string; dependsOn?: string[] }[], extra: Partial<PlanSpec> = {}): PlanSpec {
  return {
    name: "p",
    mode: "autopilot",
    maxParallel: 3,
    graceMs: 5000,
    staleMs: 300000,
    ...extra,
    jobs: jobs.map(j => ({ name: j.name, run: `echo ${j.name}`, dependsOn: j.dependsOn ?? [], env: {} })),
  }
}

/** A copy of a document as another replica (its own actor id) would hold it. */
export function fork<T>(doc: A.Doc<T>): A.Doc<T> {
  return A.clone(doc, { actor: randomBytes(16).toString("hex") as A.ActorId })
}
