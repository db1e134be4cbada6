/**
 * `concord` (also `mc`): a thin front end over src/doc, src/orchestrator and src/sync.
 * Exit codes: 0 ok, 2 usage or validation error, 1 other failure (3: `run` paused at a checkpoint).
 */
import { Command, CommanderError } from "commander"
import { registerControl } from "./commands/control.js"
import { registerHistory } from "./commands/history.js"
import { registerMcp } from "./commands/mcp.js"
import { registerPlan } from "./commands/plan.js"
import { registerReport } from "./commands/report.js"
import { registerStatus } from "./commands/status.js"
import { registerSync } from "./commands/sync.js"
import type { GlobalOptions } from "./context.js"

export function buildProgram(): Command {
  const program = new Command()
  program
    .name("concord")
    .description("Plan state for fleets of AI coding agents: concurrent updates merge instead of getting lost.")
    .option("--store <dir>", "store directory (default $CONCORD_STORE, else the nearest .concord/, else ./.concord)")
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeErr: s => process.stderr.write(s) })
  const globals = () => program.opts<GlobalOptions>()
  registerPlan(program, globals)
  registerStatus(program, globals)
  registerReport(program, globals)
  registerHistory(program, globals)
  registerControl(program, globals)
  registerSync(program, globals)
  registerMcp(program, globals)
  for (const c of program.commands) {
    c.exitOverride()
    for (const sub of c.commands) sub.exitOverride()
  }
  return program
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === "number" ? process.exitCode : 0
  } catch (e) {
    return reportError(e)
  }
}

export function reportError(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === "commander.helpDisplayed" || e.code === "commander.version" || e.exitCode === 0) return 0
    return 2
  }
  const err = e as Error & { exitCode?: number; code?: string }
  process.stderr.write(`concord: ${err?.message ?? String(e)}\n`)
  if (typeof err?.exitCode === "number") return err.exitCode
  return 1
}
