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
