/** Strict parsing of numeric flags: `0x10`, `1e2`, ` 5` or `12abc` are refused, not read as numbers. */
import { InputError } from "../doc/errors.js"

export function parseDecimal(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^-?(\d+(\.\d+)?|\.\d+)$/.test(v)) throw new InputError(`invalid ${flag} "${v}": expected a decimal number`)
  return Number(v)
}

export function parseWholeNumber(flag: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new InputError(`invalid ${flag} "${v}": expected a whole number`)
  return Number(v)
}
