/**
 * Which store a command uses: `--store DIR`, else `$CONCORD_STORE`, else the nearest `.concord/` found
 * walking up from the current directory, else `./.concord` (created on first write).
 */
import { statSync } from "node:fs"
import path from "node:path"

const STORE_DIR_NAME = ".concord"

export interface LocateOptions {
  store?: string
  cwd?: string
  env?: NodeJS.ProcessEnv
}

export function locateStore(opts: LocateOptions = {}): { dir: string; source: "flag" | "env" | "found" | "default" } {
  const cwd = opts.cwd ?? process.cwd()
  const env = opts.env ?? process.env
  if (opts.store) return { dir: path.resolve(cwd, opts.store), source: "flag" }
  if (env.CONCORD_STORE) return { dir: path.resolve(cwd, env.CONCORD_STORE), source: "env" }
  let dir = path.resolve(cwd)
  for (;;) {
    const candidate = path.join(dir, STORE_DIR_NAME)
    try {
      if (statSync(candidate).isDirectory()) return { dir: candidate, source: "found" }
    } catch {
      // keep walking
    }
    const parent = path.dirname(dir)
    if (parent === dir) break
    dir = parent
  }
  return { dir: path.resolve(cwd, STORE_DIR_NAME), source: "default" }
}
