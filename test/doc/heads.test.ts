// containsHeads: Automerge.hasHeads's answer, without rebuilding changes.
import * as A from "@automerge/automerge"
import { describe, expect, it } from "vitest"
import { containsHeads } from "../../src/doc/heads.js"

type D = { n?: number; m?: number }

describe("containsHeads", () => {
  it("answers as Automerge.hasHeads does, for present, absent and queued changes", () => {
    const base = A.from<D>({ n: 0 }, { actor: "aaaa" as A.ActorId })
    const a1 = A.change(base, d => void (d.n = 1))
    const a2 = A.change(a1, d => void (d.n = 2))
    const b = A.change(A.clone(base, { actor: "bbbb" as A.ActorId }), d => void (d.m = 1))
    const cases: [A.Doc<D>, string[]][] = [
      [a2, A.getHeads(a2)],
      [a2, A.getHeads(a1)],
      [a2, A.getHeads(base)],
      [a2, A.getHeads(b)],
      [a2, [...A.getHeads(a1), ...A.getHeads(b)]],
      [a2, []],
      [A.merge(A.clone(a2), b), [...A.getHeads(a2), ...A.getHeads(b)]],
    ]
    for (const [doc, heads] of cases) expect(containsHeads(doc, heads)).toBe(A.hasHeads(doc, heads))
    // a change waiting in the document for a dependency it lacks is not in the document
    const last = A.getLastLocalChange(a2)!
    const waiting = A.applyChanges(A.clone(base), [last])[0]
    expect(A.getMissingDeps(waiting, []).length).toBeGreaterThan(0)
    expect(containsHeads(waiting, A.getHeads(a2))).toBe(false)
    expect(containsHeads(waiting, A.getHeads(a2))).toBe(A.hasHeads(waiting, A.getHeads(a2)))
    expect(containsHeads(waiting, A.getHeads(base))).toBe(true)
  })
})
