/**
 * The entry point of `concord sync` (and `serve`, `token`): the same commands as in the full CLI
 * (main.ts), registered alone, so that a one-shot sync loads none of the other commands' code
 * (bin/concord.js routes to it; help always goes to the full CLI).
 */
import { registerSync } from "./commands/sync.js"
import { buildWith, runProgram } from "./program.js"

export async function main(argv: string[]): Promise<number> {
  return runProgram(buildWith(registerSync), argv)
}
