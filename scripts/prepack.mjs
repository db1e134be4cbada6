#!/usr/bin/env node
// `npm pack` / `npm publish` lifecycle (prepack, and postpack with --after).
//
// prepack: a clean build (no stale files in dist/), and the lockfile shipped as npm-shrinkwrap.json, so
// `npm install -g concord-plan` gets the same dependency tree CI tested, `overrides` included (npm
// ignores a dependency's package-lock.json and its overrides, but honours its npm-shrinkwrap.json).
// That keeps cbor-extract at 2.2.2, whose prebuilt platform packages exist (2.2.3 was published without
// them, so installing it compiles native code).
// postpack: remove the shrinkwrap again; in the checkout, package-lock.json stays the one lockfile.
import { spawnSync } from "node:child_process"
import { copyFileSync, rmSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..")
const shrinkwrap = path.join(ROOT, "npm-shrinkwrap.json")

if (process.argv.includes("--after")) {
  rmSync(shrinkwrap, { force: true })
} else {
  rmSync(path.join(ROOT, "dist"), { recursive: true, force: true })
  const win = process.platform === "win32"
  const r = spawnSync(win ? "npm.cmd" : "npm", ["run", "build"], { cwd: ROOT, stdio: "inherit", shell: win })
  if (r.status !== 0) process.exit(r.status ?? 1)
  copyFileSync(path.join(ROOT, "package-lock.json"), shrinkwrap)
}
