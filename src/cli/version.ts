/** concord's version, from the package.json above this module (compiled or bundled, it lives under dist/). */
import { existsSync, readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

export function packageVersion(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const file = path.join(dir, "package.json")
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, "utf8")) as { version?: string; bin?: Record<string, string> }
      if (pkg.bin?.concord) return pkg.version ?? "unknown"
    }
    const parent = path.dirname(dir)
    if (parent === dir) return "unknown"
    dir = parent
  }
}
