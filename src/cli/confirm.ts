/** Asking before a dangerous default: on a terminal a y/N question, elsewhere `--yes` is required. */
import { createInterface } from "node:readline/promises"
import { InputError } from "../doc/errors.js"
import { neutralize } from "./output.js"

export async function confirm(question: string, opts: { yes?: boolean; flagHint: string }): Promise<void> {
  if (opts.yes) return
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new InputError(`${question.replace(/\?$/, "")}: not confirmed (no terminal to ask on); ${opts.flagHint}`, "not_confirmed")
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    const answer = (await rl.question(`${neutralize(question, { multiline: false })} [y/N] `)).trim().toLowerCase()
    if (answer !== "y" && answer !== "yes") throw new InputError("not confirmed: nothing was changed", "not_confirmed")
  } finally {
    rl.close()
  }
}
