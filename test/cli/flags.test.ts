// bin/flags.js: which V8 WebAssembly tier and checks each command runs with.
import { describe, expect, it } from "vitest"
import { v8Flags } from "../../bin/flags.js"

const flags = (cmd: string) => v8Flags(cmd.split(" ")) as string[]

describe("v8Flags", () => {
  it("short commands: baseline compiler only, functions validated on first use", () => {
    for (const cmd of ["report progress halfway --job a", "status", "plan create p.yaml", "history PLAN", "approve", "sync ws://h:1 --token t"]) {
      expect(flags(cmd)).toEqual(["--liftoff-only", "--wasm-lazy-validation"])
    }
  })
  it("long-lived processes making small changes: baseline compiler only (no background optimizing)", () => {
    for (const cmd of ["run p.yaml", "mcp --plan P --job j --attempt 1", "dashboard", "status --watch"]) {
      expect(flags(cmd)).toEqual(["--liftoff-only"])
    }
  })
  it("bulk Automerge work for a long time (sync server, sync --watch) keeps the optimizing tier", () => {
    for (const cmd of ["serve --port 0", "sync --watch ws://h:1 --token t"]) {
      expect(flags(cmd)).toEqual([])
    }
  })
})
