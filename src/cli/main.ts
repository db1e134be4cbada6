/**
 * `concord`: a thin front end over src/doc, src/orchestrator and src/sync.
 * Exit codes: 0 ok, 2 usage or validation error, 1 other failure (3: `run` paused at a checkpoint).
 * Usage errors (unknown option or command, missing argument) are one line with a hint, never the help.
 */
import { Command } from "commander"
import { registerCleanup } from "./commands/cleanup.js"
import { registerControl } from "./commands/control.js"
import { registerDashboard } from "./commands/dashboard.js"
import { registerDoctor } from "./commands/doctor.js"
import { registerGit } from "./commands/git.js"
import { registerHistory } from "./commands/history.js"
import { registerLogs } from "./commands/logs.js"
import { registerMcp } from "./commands/mcp.js"
import { registerPlan } from "./commands/plan.js"
import { registerReport } from "./commands/report.js"
import { registerStatus } from "./commands/status.js"
import { registerSync } from "./commands/sync.js"
import type { GlobalOptions } from "./context.js"
import { reportError } from "./errors.js"
import { neutralize, say } from "./output.js"
import { packageVersion } from "./version.js"

/** `concord plan create`: the words that run `cmd`. */
function commandPath(cmd: Command): string {
  const names: string[] = []
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name())
  return names.join(" ")
}

/**
 * Commander's usage error as one line: "unknown option '--jsno' (did you mean --json?); see
 * concord status --help". Whatever the user typed is neutralised before it is echoed.
 */
export function usageLine(commanderMessage: string, cmd: Command): string {
  const text = commanderMessage
    .trim()
    .replace(/^error: /, "")
    .replace(/\s*\n\(Did you mean (.*)\?\)$/s, " (did you mean $1?)")
    .replace(/\s*\n\s*/g, " ")
  return `${neutralize(text, { multiline: false })}; see ${commandPath(cmd)} --help`
}

export function buildProgram(): Command {
  const program = new Command()
  program
    .name("concord")
    .description("Plan state for fleets of AI coding agents: concurrent updates merge instead of getting lost.")
    .version(packageVersion(), "-V, --version", "print concord's version")
    .option("--store <dir>", "store directory (default $CONCORD_STORE, else the nearest .concord/, else ./.concord)")
    .exitOverride()
    .configureOutput({ writeErr: s => process.stderr.write(s) })
  const globals = () => program.opts<GlobalOptions>()
  registerPlan(program, globals)
  registerStatus(program, globals)
  registerReport(program, globals)
  registerHistory(program, globals)
  registerControl(program, globals)
  registerSync(program, globals)
  registerDoctor(program, globals)
  registerCleanup(program, globals)
  registerGit(program, globals)
  registerDashboard(program, globals)
  registerMcp(program, globals)
  registerLogs(program, globals)
  const configure = (c: Command) => {
    c.exitOverride()
    c.configureOutput({ outputError: str => say(usageLine(str, c)) })
    c.commands.forEach(configure)
  }
  configure(program)
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
