/**
 * Automerge documents whose JavaScript view lags behind their backend: a long-lived writer makes its
 * changes on the backend (`A.getBackend(doc)`) and brings the view up to date only when someone reads it.
 */
import * as A from "@automerge/automerge"

const NOTHING = new Uint8Array(0)

/**
 * `doc` (not outdated) with its JavaScript view brought up to date with its backend, in one batch for
 * every change made on the backend since the view was made (Automerge diffs from the state the view last
 * showed, not from the change it was given; loading no bytes adds nothing). Returns the new document;
 * `doc` becomes an outdated one, as after any change. With no such change, the new document shares all
 * of `doc`'s view (a cheap way to give `doc` up to whoever holds it and go on with a copy of one's own).
 */
export function viewCatchesUp<T>(doc: A.Doc<T>): A.Doc<T> {
  return A.loadIncremental(doc, NOTHING)
}
