/** Typed errors of the plan document layer. `exitCode` follows the CLI convention: 2 for bad input. */
export class ConcordError extends Error {
  readonly exitCode: number
  constructor(message: string, exitCode = 1) {
    super(message)
    this.name = "ConcordError"
    this.exitCode = exitCode
  }
}

/** Bad input: a usage or validation problem. Nothing was written. */
export class InputError extends ConcordError {
  constructor(message: string) {
    super(message, 2)
    this.name = "InputError"
  }
}

export class NotFoundError extends InputError {
  constructor(message: string) {
    super(message)
    this.name = "NotFoundError"
  }
}

/** A status change the state machine does not allow. Nothing was written. */
export class InvalidTransitionError extends InputError {
  readonly subject: string
  readonly from: string
  readonly to: string
  constructor(subject: string, from: string, to: string, hint?: string) {
    super(`${subject}: cannot go from ${from} to ${to}${hint ? ` (${hint})` : ""}`)
    this.name = "InvalidTransitionError"
    this.subject = subject
    this.from = from
    this.to = to
  }
}
