/**
 * Everything the CLI prints for humans goes through this module.
 *
 * Text from a plan, a report, a sync server or an error message is untrusted: any job (even through a
 * remote `job:NAME` token) can write a report message with terminal escapes in it. So the writers here
 * (`out`, `say`, `redraw`, `table`) neutralise control characters themselves with `neutralize`, and
 * no caller can forget to. Colour is never put into strings by callers: they mark intent with `paint`,
 * and `out` adds the escape codes only if `richOutput()` says so. JSON output (`printJson`,
 * `printJsonLine`) keeps the exact text (JSON escapes instead of dropping anything).
 */

// C0 controls (ESC, CR, BEL, BS ...), DEL, C1 controls (U+0080-U+009F: U+009B is a one-character CSI
// on some terminals), and the invisible characters that reorder or break what is shown: bidi marks,
// embeddings, overrides and isolates, and Unicode line/paragraph separators. Tab and newline are
// handled per call (see `neutralize`).
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g
// eslint-disable-next-line no-control-regex
const UNSAFE_ONE_LINE = /[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g

function visibleEscape(c: string): string {
  const n = c.charCodeAt(0)
  if (c === "\n") return "\\n"
  if (c === "\t") return "\\t"
  if (c === "\r") return "\\r"
  return n < 0x100 ? `\\x${n.toString(16).padStart(2, "0")}` : `\\u${n.toString(16).padStart(4, "0")}`
}

/**
 * `text` made safe to print on a terminal: every control character (C0, C1, DEL, ESC sequences'
 * introducers), bidi override and line separator becomes visible escape notation (`\x1b`, `\u202e`),
 * so it can neither act on the terminal nor be hidden. Newlines and tabs are kept only when
 * `multiline` (the default); a table cell or one-line message passes `multiline: false`.
 */
export function neutralize(text: string, opts: { multiline?: boolean } = {}): string {
  return text.replace(opts.multiline === false ? UNSAFE_ONE_LINE : UNSAFE, visibleEscape)
}

/**
 * Whether human output to `stream` gets colour and Unicode glyphs (progress bars): only on a TTY,
 * without `NO_COLOR`, with `TERM` other than `dumb`. `FORCE_COLOR` (any value but `0`/`false`) forces
 * them on, `FORCE_COLOR=0` off, as in Node itself. The one place this is decided.
 */
export function richOutput(stream: { isTTY?: boolean } = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  const force = env.FORCE_COLOR
  if (force !== undefined) return force !== "0" && force.toLowerCase() !== "false"
  if (env.NO_COLOR) return false
  if (env.TERM === "dumb") return false
  return stream.isTTY === true
}

/** A piece of text with an optional SGR colour code, coloured (or not) only when written. */
interface Segment {
  text: string
  sgr?: number
}

/** Text built from segments; `String(styled)` is its neutralised plain text. */
export class Styled {
  constructor(readonly segments: readonly Segment[]) {}
  toString(): string {
    return render(this, false)
  }
}

export type Text = string | Styled

/** `text` marked to be shown in colour `sgr` (e.g. 31 red) when the output is rich. */
export function paint(sgr: number, text: string): Styled {
  return new Styled([{ text, sgr: sgr || undefined }])
}

/** Text pieces joined into one. */
export function concat(...parts: Text[]): Styled {
  return new Styled(parts.flatMap(p => (typeof p === "string" ? [{ text: p }] : p.segments)))
}

/** The one conversion of human text to what is written: neutralised, coloured only when `rich`. */
function render(t: Text, rich: boolean, multiline = true): string {
  if (typeof t === "string") return neutralize(t, { multiline })
  return t.segments
    .map(s => {
      const text = neutralize(s.text, { multiline })
      return rich && s.sgr ? `\x1b[${s.sgr}m${text}\x1b[0m` : text
    })
    .join("")
}

function lines(t: Text | readonly Text[], rich: boolean): string {
  return `${(Array.isArray(t) ? t : [t as Text]).map(l => render(l, rich)).join("\n")}\n`
}

/** Print human text (one line, several lines, or a list of lines) on stdout, neutralised. */
export function out(t: Text | readonly Text[] = ""): void {
  process.stdout.write(lines(t, richOutput(process.stdout)))
}

/** Print a human message on stderr (`concord: ...`), neutralised. */
export function say(message: string): void {
  process.stderr.write(`concord: ${neutralize(message)}\n`)
}

/**
 * Replace the screen's content with `t` in one write: clear the screen on a terminal that can (a TTY
 * with TERM other than `dumb`), else print a `---` separator before it.
 */
export function redraw(t: Text | readonly Text[]): void {
  const clear = process.stdout.isTTY === true && process.env.TERM !== "dumb"
  process.stdout.write((clear ? "\x1b[2J\x1b[H" : "---\n") + lines(t, richOutput(process.stdout)))
}

/** Pretty JSON: exact text (JSON.stringify escapes C0; C1 and bidi characters are escaped too). */
export function printJson(v: unknown): void {
  process.stdout.write(`${jsonText(v, 2)}\n`)
}

/** One JSON object per line (for --watch --json). */
export function printJsonLine(v: unknown): void {
  process.stdout.write(`${jsonText(v)}\n`)
}

// eslint-disable-next-line no-control-regex
const JSON_UNSAFE = /[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/g

/** JSON.stringify, with the characters that it leaves raw but a terminal acts on written as \uXXXX. */
export function jsonText(v: unknown, indent?: number): string {
  return JSON.stringify(v, null, indent).replace(JSON_UNSAFE, c => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
}

export function ago(ms: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - ms) / 1000))
  if (s < 60) return `${s}s ago`
  if (s < 3600) return `${Math.floor(s / 60)}m ago`
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`
  return `${Math.floor(s / 86400)}d ago`
}

export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

/** Width on screen of a cell once neutralised (colour codes take none). */
function width(t: Text): number {
  return [...render(t, false, false)].length
}

/**
 * Rows of cells as aligned lines. Each cell is one line: its newlines, tabs and control characters
 * are shown as escapes, so a cell can never break the table or act on the terminal.
 */
export function table(rows: readonly (readonly Text[])[]): Styled[] {
  const widths: number[] = []
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, width(c))))
  return rows.map(r => {
    const parts: Text[] = []
    r.forEach((c, i) => {
      parts.push(oneLine(c))
      if (i < r.length - 1) parts.push(`${" ".repeat(widths[i] - width(c))}  `)
    })
    return trimEnd(concat(...parts))
  })
}

/** A cell with its line breaks made visible, so `render` (multiline) keeps it on one line. */
function oneLine(t: Text): Text {
  const esc = (s: string) => s.replace(/[\n\t\r]/g, visibleEscape)
  return typeof t === "string" ? esc(t) : new Styled(t.segments.map(s => ({ ...s, text: esc(s.text) })))
}

function trimEnd(s: Styled): Styled {
  const segs = [...s.segments]
  while (segs.length && !segs[segs.length - 1].sgr && segs[segs.length - 1].text.trimEnd() === "") segs.pop()
  if (segs.length && !segs[segs.length - 1].sgr) segs[segs.length - 1] = { text: segs[segs.length - 1].text.trimEnd() }
  return new Styled(segs)
}

/** `s` on one line (runs of whitespace become one space), cut to `n` characters with an ellipsis. */
export function truncate(s: string, n: number): string {
  const one = [...s.replace(/\s+/g, " ").trim()]
  return one.length > n ? `${one.slice(0, n - 1).join("")}…` : one.join("")
}
