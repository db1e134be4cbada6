/**
 * `concord`: a thin front end over src/doc, src/orchestrator and src/sync.
 * Exit codes: 0 ok, 2 usage or validation error, 1 other failure (3: `run` paused at a checkpoint).
 * Usage errors (unknown option or command, missing argument) are one line with a hint, never the help.
 */
import type { Command } from "commander"
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
import { buildWith, runProgram } from "./program.js"

export { usageLine } from "./program.js"

export function buildProgram(): Command {
  return buildWith((program, globals) => {
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
  })
}

export async function main(argv: string[]): Promise<number> {
  return runProgram(buildProgram(), argv)
}
