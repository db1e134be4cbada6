#!/usr/bin/env node
// What a user gets: `npm pack` the package, `npm install -g` the tarball into a throwaway prefix, and
// run the installed `concord` by name from PATH, outside this checkout (a temp directory as cwd, with a
// PATH of the prefix's bin directory and node's own). Exits 0 only if `concord --version`,
// `concord plan create`, `concord status` and `concord report` work there. `.ci/run` runs it; it takes a
// minute or so.
import { execFileSync, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const win = process.platform === "win32"
const npm = win ? "npm.cmd" : "npm"
const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8"))
const tmp = mkdtempSync(path.join(os.tmpdir(), "concord-pack-"))
const fail = msg => {
  process.stderr.write(`check-packed-install: ${msg}\n`)
  process.exit(1)
}

try {
  const packed = JSON.parse(execFileSync(npm, ["pack", "--json", "--pack-destination", tmp], { cwd: ROOT, encoding: "utf8", shell: win }))
  const tarball = path.join(tmp, packed[0].filename)
  const prefix = path.join(tmp, "prefix")
  execFileSync(npm, ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", tarball], { stdio: "inherit", shell: win })
  const bin = win ? prefix : path.join(prefix, "bin")
  const env = { ...process.env, PATH: [bin, path.dirname(process.execPath)].join(path.delimiter) }
  for (const k of ["CONCORD_STORE", "CONCORD_PLAN", "CONCORD_JOB", "CONCORD_ATTEMPT", "npm_config_prefix"]) delete env[k]
  const work = path.join(tmp, "work")
  execFileSync(process.execPath, ["-e", `require("fs").mkdirSync(${JSON.stringify(work)})`])
  const run = args => {
    const r = spawnSync("concord", args, { cwd: work, env, encoding: "utf8", shell: win })
    process.stdout.write(`$ concord ${args.join(" ")}  (exit ${r.status})\n${r.stdout}${r.stderr}`)
    if (r.status !== 0) fail(`concord ${args.join(" ")} exited ${r.status ?? r.signal}`)
    return r.stdout
  }
  const version = run(["--version"]).trim()
  if (version !== pkg.version) fail(`concord --version printed "${version}", expected ${pkg.version}`)
  writeFileSync(path.join(work, "plan.yaml"), "name: packed\njobs:\n  - name: hello\n    run: echo hello\n")
  const id = run(["plan", "create", "plan.yaml"]).trim()
  const status = run(["status", id])
  if (!status.includes("Plan packed")) fail("concord status does not show the created plan")
  // a report starts lean (dist/cli/lean.js, with its own copy of Automerge's JavaScript): it must be packed
  // and match the installed Automerge
  const report = run(["report", "progress", "packed", "--job", "hello", "--plan", id])
  if (!report.includes("reported progress for hello #1")) fail("concord report did not report")
  if (!run(["status", id]).includes("packed")) fail("concord status does not show the report")
  process.stdout.write(`check-packed-install: ${packed[0].filename} (${packed[0].entryCount} files) installs a working concord\n`)
} finally {
  rmSync(tmp, { recursive: true, force: true })
}
