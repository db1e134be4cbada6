/**
 * The one error base of concord. `exitCode` follows the CLI convention (2 bad input, nothing written; 1
 * other failure); `code` is a stable machine-readable name front ends may switch on (MCP, JSON output).
 */
export class ConcordError extends Error {
  readonly exitCode: number
  readonly code: string
  constructor(message: string, exitCode = 1, code = "failed") {
    super(message)
    this.name = "ConcordError"
    this.exitCode = exitCode
    this.code = code
  }
}

/** Bad input: a usage or validation problem. Nothing was written. */
export class InputError extends ConcordError {
  constructor(message: string, code = "invalid_input") {
    super(message, 2, code)
    this.name = "InputError"
  }
}

export class NotFoundError extends InputError {
  constructor(message: string) {
    super(message, "not_found")
    this.name = "NotFoundError"
  }
}

/** A status change the state machine does not allow. Nothing was written. */
export class InvalidTransitionError extends InputError {
  readonly subject: string
  readonly from: string
  readonly to: string
  constructor(subject: string, from: string, to: string, hint?: string) {
    super(`${subject}: cannot go from ${from} to ${to}${hint ? ` (${hint})` : ""}`, "invalid_transition")
    this.name = "InvalidTransitionError"
    this.subject = subject
    this.from = from
    this.to = to
  }
}

/** Stored data that should be there cannot be read (a damaged document, a quarantined chunk). */
export class DamagedError extends ConcordError {
  constructor(message: string) {
    super(message, 1, "damaged")
    this.name = "DamagedError"
  }
}
