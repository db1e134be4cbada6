/**
 * Whether a document contains changes, cheaply. Automerge.hasHeads looks each hash up with
 * getChangeByHash, which rebuilds the whole change (about 0.1 ms a hash on a report log); getMissingDeps
 * answers from the change index. Its one blind spot is a change waiting in the document's queue for
 * dependencies (it counts as present there), so a document with such changes is asked the slow way.
 */
import * as A from "@automerge/automerge"

export function containsHeads(doc: A.Doc<unknown>, heads: readonly string[]): boolean {
  if (heads.length === 0) return true
  if (A.getMissingDeps(doc, []).length > 0) return A.hasHeads(doc, heads as A.Heads)
  const missing = A.getMissingDeps(doc, heads as A.Heads)
  return missing.length === 0 || !heads.some(h => missing.includes(h))
}

/** Whether two sets of heads are the same (in any order). */
export function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const s = new Set(a)
  return b.every(h => s.has(h))
}
