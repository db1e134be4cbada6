#!/usr/bin/env node
// Install the benchmark-only dependencies (bench/package.json: better-sqlite3, vega, vega-lite,
// proper-lockfile) into bench/node_modules, so a user of concord never downloads or builds them.
// `npm run bench` runs this first; it calls `npm ci` only when bench/node_modules does not match
// bench/package-lock.json (first run, or the lockfile changed), so repeated runs cost nothing.
import { spawnSync } from "node:child_process"
import { readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const HERE = path.dirname(fileURLToPath(import.meta.url))

/** `path@version` of each package a lockfile lists (optional ones left out when `required`). */
function packages(file, required) {
  try {
    const lock = JSON.parse(readFileSync(file, "utf8"))
    return new Set(
      Object.entries(lock.packages ?? {})
        .filter(([k, v]) => k.startsWith("node_modules/") && !(required && v.optional))
        .map(([k, v]) => `${k}@${v.version}`)
    )
  } catch {
    return null
  }
}

// Optional packages may be missing (better-sqlite3 on a machine that cannot build it): the sqlite
// baseline then reports itself skipped. Every other locked package must be installed at its version.
const want = packages(path.join(HERE, "package-lock.json"), true)
const have = packages(path.join(HERE, "node_modules", ".package-lock.json"), false)
const upToDate = want !== null && have !== null && [...want].every(p => have.has(p))
if (!upToDate) {
  process.stdout.write("bench: installing the benchmark dependencies (bench/package.json)\n")
  const npm = process.platform === "win32" ? "npm.cmd" : "npm"
  const r = spawnSync(npm, ["ci", "--no-audit", "--no-fund"], { cwd: HERE, stdio: "inherit", shell: process.platform === "win32" })
  if (r.status !== 0) {
    process.stderr.write(`bench: npm ci in bench/ failed (exit ${r.status ?? r.signal})\n`)
    process.exit(1)
  }
}
