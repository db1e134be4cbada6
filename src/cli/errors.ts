/** How a command's failure ends the process: the exit code, and the one line that says why. */
import { CommanderError } from "commander"
import { say } from "./output.js"

/** Exit code for `e` (0 help/version, 2 usage, else the error's own code or 1), its message said on stderr. */
export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0) return 0
    return 2
  }
  const err = e as Error & { exitCode?: number; code?: string }
  say(err?.message ?? String(e))
  if (typeof err?.exitCode === "number") return err.exitCode
  return 1
}
