/**
 * A pure JavaScript reader of one Automerge change chunk's operations: what `A.decodeChange` gives, for
 * the changes it can read, without Automerge's wasm (which decodes the whole change and builds a JS
 * object of every op through serde: ~45 us a report change, against a few here).
 *
 * It reads a plain change chunk (type 1) whose ops use the map, list and text actions (makeMap, set,
 * makeList, del, makeText) with scalar values (null, boolean, uint, int, f64, str). Anything else gives
 * undefined, "not read here", and the caller asks Automerge: a compressed chunk (type 2), a counter,
 * timestamp, bytes or unknown value, an increment or a mark, a column it does not know (or a deflated
 * one), extra bytes after the columns, and every kind of damage (truncated, overlong or out-of-range
 * numbers, invalid UTF-8, indexes past the actor table, columns that do not agree on the number of ops).
 * It is stricter than Automerge, never looser: what it reads, Automerge reads the same; what it is unsure
 * of, it leaves. Like decodeChange it does not check the chunk's checksum.
 *
 * The format: https://alexjg.github.io/automerge-storage-docs/ and automerge's Rust source
 * (rust/automerge/src/storage/change.rs, storage/change/change_op_columns.rs, columnar/encoding/).
 */

/** One op as `A.decodeChange` writes it (its `pred` left out: not read here beyond checking it). */
export interface DecodedOp {
  action: "makeMap" | "set" | "makeList" | "del" | "makeText"
  /** "_root" or "<counter>@<actor hex>" */
  obj: string
  /** a map key */
  key?: string
  /** a list position: "_head" or "<counter>@<actor hex>" */
  elemId?: string
  /** present (true) only for an insert, as decodeChange writes it */
  insert?: true
  /** for numbers, as decodeChange names them */
  datatype?: "int" | "uint" | "float64"
  /** a set's value; absent for the other actions */
  value?: null | boolean | number | string
}

/** A change's header and ops, as `A.decodeChange` gives them (its hash left out: not computed here). */
export interface DecodedChange {
  actor: string
  seq: number
  startOp: number
  time: number
  message: string | null
  deps: string[]
  ops: DecodedOp[]
}

const ACTIONS = ["makeMap", "set", "makeList", "del", "makeText"] as const

/** Thrown inside the reader when the change is not one it reads; never escapes it. */
const UNSUPPORTED = new Error("unsupported change")
function no(): never {
  throw UNSUPPORTED
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"))

function hex(b: Uint8Array, start: number, end: number): string {
  let s = ""
  for (let i = start; i < end; i++) s += HEX[b[i]]
  return s
}

/** UTF-8 text, checked as Rust's from_utf8 checks it (a byte-order mark is kept, as Rust keeps it). */
function text(b: Uint8Array, start: number, end: number): string {
  // ASCII, the usual case, without TextDecoder's call cost
  if (end - start <= 64) {
    let s = ""
    for (let i = start; i < end; i++) {
      const c = b[i]
      if (c >= 0x80) return utf8.decode(b.subarray(start, end))
      s += String.fromCharCode(c)
    }
    return s
  }
  return utf8.decode(b.subarray(start, end))
}

/**
 * A cursor over bytes[pos, end) and the decoder of one column there: LEB128 reads that refuse what
 * Automerge refuses (and a little more), and the column encodings (run-length, delta, boolean). One
 * object of one shape for every column, made once and reset for each change: no allocation per change.
 */
class Column {
  b: Uint8Array = new Uint8Array(0)
  pos = 0
  end = 0
  /** values left in the current run */
  count = 0
  literal = false
  /** in a null run */
  nulls = false
  /** a run's value (uint and delta columns) */
  num = 0
  /** the last absolute value (delta columns) */
  abs = 0
  str: string | null = null
  bool = true

  reset(b: Uint8Array, pos: number, end: number): this {
    this.b = b
    this.pos = pos
    this.end = end
    this.count = 0
    this.literal = false
    this.nulls = false
    this.num = 0
    this.abs = 0
    this.str = null
    this.bool = true
    return this
  }

  /** every value read, and every byte */
  get done(): boolean {
    return this.count === 0 && this.pos >= this.end
  }

  /** An unsigned LEB128 up to 2^53 - 1; overlong encodings refused (Automerge never writes them). */
  uleb(): number {
    const b = this.b
    const end = this.end
    let pos = this.pos
    if (pos >= end) no()
    let byte = b[pos++]
    if (byte < 0x80) {
      this.pos = pos
      return byte
    }
    let value = byte & 0x7f
    let scale = 128
    for (;;) {
      if (pos >= end) no()
      byte = b[pos++]
      value += (byte & 0x7f) * scale
      if (byte < 0x80) {
        if (byte === 0 || value > Number.MAX_SAFE_INTEGER) no()
        this.pos = pos
        return value
      }
      scale *= 128
      if (scale > 2 ** 56) no()
    }
  }

  /** A signed LEB128 within ±(2^53 - 1); overlong encodings refused. */
  sleb(): number {
    const b = this.b
    const end = this.end
    let pos = this.pos
    if (pos >= end) no()
    let byte = b[pos++]
    if (byte < 0x80) {
      this.pos = pos
      return byte & 0x40 ? byte - 128 : byte
    }
    // the value if it is positive, and one less than its magnitude if negative (the bits inverted): each
    // sum only grows towards its result, so it is exact whenever the result is a safe integer
    let pos7 = byte & 0x7f
    let neg7 = 0x7f - (byte & 0x7f)
    let scale = 128
    let prev = byte
    for (;;) {
      if (pos >= end) no()
      byte = b[pos++]
      pos7 += (byte & 0x7f) * scale
      neg7 += (0x7f - (byte & 0x7f)) * scale
      scale *= 128
      if (byte < 0x80) {
        if ((byte === 0 && (prev & 0x40) === 0) || (byte === 0x7f && (prev & 0x40) !== 0)) no()
        const value = byte & 0x40 ? -neg7 - 1 : pos7
        if (!Number.isSafeInteger(value)) no()
        this.pos = pos
        return value
      }
      if (scale > 2 ** 56) no()
      prev = byte
    }
  }

  /** Skip n bytes; returns where they start. */
  take(n: number): number {
    const at = this.pos
    if (n > this.end - at) no()
    this.pos = at + n
    return at
  }

  /**
   * The start of the next run of a run-length column: run (n > 0, one value follows: read by `value`),
   * literal (n < 0, -n values, each read when used), nulls (0, then their count). False at the column's end.
   */
  #run(value: (c: Column) => void): boolean {
    if (this.pos >= this.end) return false
    const n = this.sleb()
    this.literal = n < 0
    this.nulls = n === 0
    if (n > 0) {
      this.count = n
      value(this)
    } else if (n < 0) {
      this.count = -n
    } else {
      this.count = this.uleb()
      if (this.count === 0) no()
    }
    return true
  }

  /** The next unsigned integer of a run-length column: NULL for a null, END past the column's end. */
  uint(): number {
    if (this.count === 0 && !this.#run(readUint)) return END
    this.count--
    return this.literal ? this.uleb() : this.nulls ? NULL : this.num
  }

  /** The next absolute value of a delta column (run-length differences; a null leaves it as is): NULL or END as uint. */
  delta(): number {
    if (this.count === 0 && !this.#run(readSint)) return END
    this.count--
    if (this.nulls) return NULL
    this.abs += this.literal ? this.sleb() : this.num
    if (!Number.isSafeInteger(this.abs) || this.abs < 0) no()
    return this.abs
  }

  /** The next string of a run-length column; null for a null or past the column's end. */
  string(): string | null {
    if (this.count === 0 && !this.#run(readString)) return null
    this.count--
    return this.literal ? this.text() : this.nulls ? null : this.str
  }

  /** The next boolean of a boolean column (alternating run lengths, starting with false). */
  boolean(): boolean {
    while (this.count === 0) {
      if (this.pos >= this.end) no()
      this.count = this.uleb()
      this.bool = !this.bool
    }
    this.count--
    return this.bool
  }

  /** A length-prefixed UTF-8 string. */
  text(): string {
    const len = this.uleb()
    const at = this.take(len)
    return text(this.b, at, at + len)
  }
}

const readUint = (c: Column) => {
  c.num = c.uleb()
}
const readSint = (c: Column) => {
  c.num = c.sleb()
}
const readString = (c: Column) => {
  c.str = c.text()
}

/** The most ops read here in one change (a report change has 8 a report). */
const MAX_OPS = 100_000

/** Sentinels of uint and delta columns: a null, and the end of the column (counters are never negative). */
const NULL = -1
const END = -2

// column specs (id << 4 | type) of a change's ops, in the order a chunk lists them
const SPECS = [0x01, 0x02, 0x11, 0x13, 0x15, 0x34, 0x42, 0x56, 0x57, 0x70, 0x71, 0x73]
const [OBJ_ACTOR, OBJ_CTR, KEY_ACTOR, KEY_CTR, KEY_STR, INSERT, ACTION, VAL_META, VAL_RAW, PRED_GROUP, PRED_ACTOR, PRED_CTR] = SPECS.map((_, i) => i)
/** a spec's index in SPECS; -1 for any other */
const SPEC_INDEX = new Int8Array(256).fill(-1)
for (const [i, spec] of SPECS.entries()) SPEC_INDEX[spec] = i

// the reader's state, reused: decode runs to its end without yielding, and is not re-entered
/** a cursor over the change's header, then over one value at a time */
const cursor = new Column()
const cols = SPECS.map(() => new Column())
const colStart = new Float64Array(SPECS.length)
const colLen = new Float64Array(SPECS.length)
const actors: string[] = []

/**
 * The change in `bytes` (one change chunk, nothing after it), as `A.decodeChange` would give it; undefined
 * when this reader does not read it (see the module's comment): ask Automerge then. Never throws.
 */
export function decodeChangeOps(bytes: Uint8Array): DecodedChange | undefined {
  try {
    return decode(bytes)
  } catch {
    // UNSUPPORTED, or a TypeError of TextDecoder on invalid UTF-8: not read here either way
    return undefined
  }
}

function checkOpId(ctr: number, actor: number): void {
  if (ctr < 1 || actor < 0 || actor >= actors.length) no()
}

function opId(ctr: number, actor: number): string {
  checkOpId(ctr, actor)
  return `${ctr}@${actors[actor]}`
}

function decode(b: Uint8Array): DecodedChange {
  // chunk header: magic, checksum (not checked, as decodeChange does not), type, length
  if (b.length < 10 || b[0] !== 0x85 || b[1] !== 0x6f || b[2] !== 0x4a || b[3] !== 0x83 || b[8] !== 1) no()
  const r = cursor.reset(b, 9, b.length)
  const len = r.uleb()
  if (r.pos + len !== b.length) no()

  const depCount = r.uleb()
  const deps: string[] = []
  for (let i = 0; i < depCount; i++) {
    const at = r.take(32)
    deps.push(hex(b, at, at + 32))
  }
  const actorLen = r.uleb()
  const actorAt = r.take(actorLen)
  actors.length = 0
  actors.push(hex(b, actorAt, actorAt + actorLen))
  const seq = r.uleb()
  const startOp = r.uleb()
  if (startOp === 0 || startOp > 0xffffffff) no()
  const time = r.sleb()
  const messageLen = r.uleb()
  const messageAt = r.take(messageLen)
  const message = messageLen === 0 ? null : text(b, messageAt, messageAt + messageLen)
  const otherCount = r.uleb()
  for (let i = 0; i < otherCount; i++) {
    const n = r.uleb()
    const at = r.take(n)
    actors.push(hex(b, at, at + n))
  }

  // column metadata: (spec, length) pairs, specs known and ascending; then the columns' data, and
  // nothing after it (Automerge keeps "extra bytes" there, and never writes any)
  colLen.fill(0)
  const colCount = r.uleb()
  let last = -1
  for (let i = 0; i < colCount; i++) {
    const spec = r.uleb()
    const at = spec < 256 ? SPEC_INDEX[spec] : -1
    if (at <= last) no()
    last = at
    colLen[at] = r.uleb()
  }
  for (let i = 0; i < SPECS.length; i++) colStart[i] = r.take(colLen[i])
  if (r.pos !== r.end) no()
  for (let i = 0; i < SPECS.length; i++) cols[i].reset(b, colStart[i], colStart[i] + colLen[i])

  // an object id needs both its columns (Automerge reads every op's object as the root otherwise)
  if (cols[OBJ_ACTOR].done !== cols[OBJ_CTR].done) no()
  const ops: DecodedOp[] = []
  const action = cols[ACTION]
  while (!action.done) {
    // runs can claim any number of ops in a few bytes: past this many, leave the change to Automerge
    if (ops.length === MAX_OPS) no()
    ops.push(readOp(b))
  }
  // every column used up by the ops, none longer
  for (const c of cols) if (!c.done) no()
  return { actor: actors[0], seq, startOp, time, message, deps, ops }
}

/** The next op of the change whose columns `cols` hold (`b`: the change's bytes). */
function readOp(b: Uint8Array): DecodedOp {
  // object: both null (or past both columns' end): the root
  const oa = cols[OBJ_ACTOR].uint()
  const oc = cols[OBJ_CTR].uint()
  let obj: string
  if (oa < 0 && oc < 0) obj = "_root"
  else if (oa >= 0 && oc >= 0) obj = opId(oc, oa)
  else no()

  // key: a string (a map key), or counter 0 without actor (the list's head), or an element's op id
  const ka = cols[KEY_ACTOR].uint()
  const kc = cols[KEY_CTR].delta()
  const ks = cols[KEY_STR].string()
  let op: DecodedOp
  const act = cols[ACTION].uint()
  if (act < 0 || act >= ACTIONS.length) no()
  if (ks !== null) {
    if (ka >= 0 || kc >= 0) no()
    op = { action: ACTIONS[act], obj, key: ks }
  } else if (ka < 0 && kc === 0) op = { action: ACTIONS[act], obj, elemId: "_head" }
  else if (ka >= 0 && kc >= 0) op = { action: ACTIONS[act], obj, elemId: opId(kc, ka) }
  else no()
  if (cols[INSERT].boolean()) op.insert = true

  // value: metadata (length << 4 | type), its bytes in the raw column
  const meta = cols[VAL_META].uint()
  if (meta < 0) no()
  const type = meta % 16
  const vlen = (meta - type) / 16
  if (type === 0) {
    if (vlen !== 0) no()
    if (act === 1) op.value = null
  } else if (act !== 1) no()
  else if (type <= 2) {
    if (vlen !== 0) no()
    op.value = type === 2
  } else if (type === 3 || type === 4) {
    const at = cols[VAL_RAW].take(vlen)
    const v = cursor.reset(b, at, at + vlen)
    op.datatype = type === 3 ? "uint" : "int"
    op.value = type === 3 ? v.uleb() : v.sleb()
    if (v.pos !== v.end) no()
  } else if (type === 5) {
    if (vlen !== 8) no()
    const at = cols[VAL_RAW].take(8)
    const f = new DataView(b.buffer, b.byteOffset + at, 8).getFloat64(0, true)
    if (!Number.isFinite(f)) no()
    op.datatype = "float64"
    op.value = f
  } else if (type === 6) {
    const at = cols[VAL_RAW].take(vlen)
    op.value = text(b, at, at + vlen)
  } else no()

  // predecessors: checked (a count, then each an actor index and a counter), not returned
  const preds = cols[PRED_GROUP].uint()
  if (preds < 0) no()
  for (let i = 0; i < preds; i++) checkOpId(cols[PRED_CTR].delta(), cols[PRED_ACTOR].uint())
  return op
}
