// Baseline `json-naive`: the plan in one JSON file; every change is a read-modify-write of the whole
// file (temp file + fsync + rename), serialised by an in-process mutex only. Processes do not
// coordinate: two processes that read the same version each write back their own copy.
import { jsonOps, readJson, writeJsonDurable } from "./json-file.mjs"

export const name = "json-naive"
export const description = "one JSON file, read-modify-write with temp file + rename, in-process mutex only"

export async function available() {
  return { ok: true }
}

/** A promise-chain mutex per file, as a single-process tool would have. */
function mutex() {
  const tails = new Map()
  return async (key, fn) => {
    const prev = tails.get(key) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => {})
    tails.set(key, tail)
    try {
      return await run
    } finally {
      if (tails.get(key) === tail) tails.delete(key)
    }
  }
}

export function open(dir) {
  const lock = mutex()
  return {
    ...jsonOps(dir, {
      update: (file, fn) => lock(file, async () => writeJsonDurable(file, fn(await readJson(file)))),
      write: (file, value) => lock(file, () => writeJsonDurable(file, value)),
    }),
    async close() {},
  }
}
