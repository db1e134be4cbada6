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

/**
 * A point in time: an ISO date/time (`2026-12-01T10:00:00Z`, `2026-12-01`), epoch milliseconds, or a
 * duration before now (`90s`, `10m`, `2h`, `7d`).
 */
export function parseTime(flag: string, v: string | undefined, now = Date.now()): number | undefined {
  if (v === undefined) return undefined
  const rel = /^(\d+)(s|m|h|d)$/.exec(v.trim())
  if (rel) return now - Number(rel[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as "s" | "m" | "h" | "d"]
  if (/^\d{10,}$/.test(v.trim())) return Number(v.trim())
  if (/^\d{4}-\d{2}-\d{2}/.test(v.trim())) {
    const t = Date.parse(v.trim())
    if (Number.isFinite(t)) return t
  }
  throw new InputError(`invalid ${flag} "${v}": expected an ISO time (2026-12-01T10:00:00Z), epoch ms, or a duration ago (10m, 2h, 7d)`)
}
