/**
 * The parts of the CLI's program every entry point shares: the root command with its global options,
 * and how usage errors are worded. main.ts registers every command on it; sync-main.ts only `sync`,
 * `serve` and `token` (a one-shot `concord sync` then loads none of the other commands).
 */
import { Command } from "commander"
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

/** The root command, with `register` adding the commands; usage errors are one line. */
export function buildWith(register: (program: Command, globals: () => GlobalOptions) => void): Command {
  const program = new Command()
  program
    .name("concord")
    .description("Plan state for fleets of AI coding agents: concurrent updates merge instead of getting lost.")
    .version(packageVersion(), "-V, --version", "print concord's version")
    .option("--store <dir>", "store directory (default $CONCORD_STORE, else the nearest .concord/, else ./.concord)")
    .exitOverride()
    .configureOutput({ writeErr: s => process.stderr.write(s) })
  register(program, () => program.opts<GlobalOptions>())
  const configure = (c: Command) => {
    c.exitOverride()
    c.configureOutput({ outputError: str => say(usageLine(str, c)) })
    c.commands.forEach(configure)
  }
  configure(program)
  return program
}

/** Parse and run; the exit code. */
export async function runProgram(program: Command, argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv)
    return typeof process.exitCode === "number" ? process.exitCode : 0
  } catch (e) {
    return reportError(e)
  }
}
