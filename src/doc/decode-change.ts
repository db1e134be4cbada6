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
 * numbers, invalid UTF-8, indexes past the actor table, columns that do not agree on the number of ops). It is stricter
 * than Automerge, never looser: what it reads, Automerge reads the same; what it is unsure of, it leaves.
 * Like decodeChange it does not check the chunk's checksum.
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

/** A cursor over bytes[pos, end): LEB128 reads that refuse what Automerge refuses (and a little more). */
class Reader {
  constructor(
    readonly b: Uint8Array,
    public pos: number,
    readonly end: number
  ) {}

  get done(): boolean {
    return this.pos >= this.end
  }

  /** An unsigned LEB128 up to 2^53 - 1; overlong encodings refused (Automerge never writes them). */
  uleb(): number {
    const { b, end } = this
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
    const { b, end } = this
    let pos = this.pos
    // the value if it is positive, and one less than its magnitude if negative (the bits inverted): each
    // sum only grows towards its result, so it is exact whenever the result is a safe integer
    let pos7 = 0
    let neg7 = 0
    let scale = 1
    let prev = 0
    for (;;) {
      if (pos >= end) no()
      const byte = b[pos++]
      pos7 += (byte & 0x7f) * scale
      neg7 += (0x7f - (byte & 0x7f)) * scale
      scale *= 128
      if (byte < 0x80) {
        if (scale > 128 && ((byte === 0 && (prev & 0x40) === 0) || (byte === 0x7f && (prev & 0x40) !== 0))) no()
        const value = byte & 0x40 ? -neg7 - 1 : pos7
        if (!Number.isSafeInteger(value)) no()
        this.pos = pos
        return value
      }
      if (scale > 2 ** 56) no()
      prev = byte
    }
  }

  take(n: number): number {
    const start = this.pos
    if (n > this.end - start) no()
    this.pos = start + n
    return start
  }
}

/** Sentinels of the column readers: a null, and the end of the column. */
const NULL = -1
const END = -2

/** Run-length encoded unsigned integers (or nulls): run (n > 0, one value), literal (n < 0, -n values), nulls (0, count). */
class RleUint {
  #r: Reader
  #count = 0
  #literal = false
  #value = NULL
  constructor(r: Reader) {
    this.#r = r
  }
  get done(): boolean {
    return this.#count === 0 && this.#r.done
  }
  next(): number {
    const r = this.#r
    if (this.#count === 0) {
      if (r.done) return END
      const n = r.sleb()
      if (n > 0) {
        this.#count = n
        this.#literal = false
        this.#value = r.uleb()
      } else if (n < 0) {
        this.#count = -n
        this.#literal = true
      } else {
        this.#count = r.uleb()
        if (this.#count === 0) no()
        this.#literal = false
        this.#value = NULL
      }
    }
    this.#count--
    return this.#literal ? r.uleb() : this.#value
  }
}

/** Run-length encoded signed integers, each the difference from the last value (nulls leave it as is). */
class Delta {
  #r: Reader
  #count = 0
  #literal = false
  #delta: number | null = null
  #abs = 0
  constructor(r: Reader) {
    this.#r = r
  }
  get done(): boolean {
    return this.#count === 0 && this.#r.done
  }
  /** the next absolute value; null for a null, undefined at the end */
  next(): number | null | undefined {
    const r = this.#r
    if (this.#count === 0) {
      if (r.done) return undefined
      const n = r.sleb()
      if (n > 0) {
        this.#count = n
        this.#literal = false
        this.#delta = r.sleb()
      } else if (n < 0) {
        this.#count = -n
        this.#literal = true
      } else {
        this.#count = r.uleb()
        if (this.#count === 0) no()
        this.#literal = false
        this.#delta = null
      }
    }
    this.#count--
    const d = this.#literal ? r.sleb() : this.#delta
    if (d === null) return null
    this.#abs += d
    if (!Number.isSafeInteger(this.#abs)) no()
    return this.#abs
  }
}

/** Run-length encoded strings (or nulls). */
class RleString {
  #r: Reader
  #count = 0
  #literal = false
  #value: string | null = null
  constructor(r: Reader) {
    this.#r = r
  }
  get done(): boolean {
    return this.#count === 0 && this.#r.done
  }
  #read(): string {
    const r = this.#r
    const len = r.uleb()
    const start = r.take(len)
    return text(r.b, start, start + len)
  }
  /** the next string; null for a null, undefined at the end */
  next(): string | null | undefined {
    const r = this.#r
    if (this.#count === 0) {
      if (r.done) return undefined
      const n = r.sleb()
      if (n > 0) {
        this.#count = n
        this.#literal = false
        this.#value = this.#read()
      } else if (n < 0) {
        this.#count = -n
        this.#literal = true
      } else {
        this.#count = r.uleb()
        if (this.#count === 0) no()
        this.#literal = false
        this.#value = null
      }
    }
    this.#count--
    return this.#literal ? this.#read() : this.#value
  }
}

/** Booleans as alternating run lengths, starting with false. */
class Bools {
  #r: Reader
  #count = 0
  #value = true
  constructor(r: Reader) {
    this.#r = r
  }
  get done(): boolean {
    return this.#count === 0 && this.#r.done
  }
  next(): boolean {
    while (this.#count === 0) {
      if (this.#r.done) no()
      this.#count = this.#r.uleb()
      this.#value = !this.#value
    }
    this.#count--
    return this.#value
  }
}

// column specs (id << 4 | type) of a change's ops, in the order a chunk lists them
const OBJ_ACTOR = 0x01
const OBJ_CTR = 0x02
const KEY_ACTOR = 0x11
const KEY_CTR = 0x13
const KEY_STR = 0x15
const INSERT = 0x34
const ACTION = 0x42
const VAL_META = 0x56
const VAL_RAW = 0x57
const PRED_GROUP = 0x70
const PRED_ACTOR = 0x71
const PRED_CTR = 0x73
const KNOWN = new Set([OBJ_ACTOR, OBJ_CTR, KEY_ACTOR, KEY_CTR, KEY_STR, INSERT, ACTION, VAL_META, VAL_RAW, PRED_GROUP, PRED_ACTOR, PRED_CTR])

/**
 * The change in `bytes` (one change chunk, nothing after it), as `A.decodeChange` would give it; undefined
 * when this reader does not read it (see the module's comment): ask Automerge then. Never throws.
 */
export function decodeChangeOps(bytes: Uint8Array): DecodedChange | undefined {
  try {
    return decode(bytes)
  } catch (e) {
    if (e === UNSUPPORTED) return undefined
    // a RangeError or TypeError (e.g. TextDecoder on invalid UTF-8) is damage as well
    return undefined
  }
}

function decode(b: Uint8Array): DecodedChange {
  // chunk header: magic, checksum (not checked, as decodeChange does not), type, length
  if (b.length < 10 || b[0] !== 0x85 || b[1] !== 0x6f || b[2] !== 0x4a || b[3] !== 0x83 || b[8] !== 1) no()
  const head = new Reader(b, 9, b.length)
  const len = head.uleb()
  if (head.pos + len !== b.length) no()
  const r = new Reader(b, head.pos, b.length)

  const depCount = r.uleb()
  const deps: string[] = []
  for (let i = 0; i < depCount; i++) {
    const at = r.take(32)
    deps.push(hex(b, at, at + 32))
  }
  const actorLen = r.uleb()
  const actorAt = r.take(actorLen)
  const actors = [hex(b, actorAt, actorAt + actorLen)]
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
  const colCount = r.uleb()
  const cols = new Map<number, Reader>()
  const specs: [number, number][] = []
  let last = -1
  for (let i = 0; i < colCount; i++) {
    const spec = r.uleb()
    const n = r.uleb()
    if (!KNOWN.has(spec) || spec <= last) no()
    last = spec
    specs.push([spec, n])
  }
  for (const [spec, n] of specs) {
    const at = r.take(n)
    cols.set(spec, new Reader(b, at, at + n))
  }
  if (!r.done) no()
  const col = (spec: number) => cols.get(spec) ?? new Reader(b, 0, 0)

  // an object id needs both its columns (Automerge reads every op's object as the root otherwise)
  const objActorCol = col(OBJ_ACTOR)
  const objCtrCol = col(OBJ_CTR)
  if (objActorCol.done !== objCtrCol.done) no()
  const objActor = new RleUint(objActorCol)
  const objCtr = new RleUint(objCtrCol)
  const keyActor = new RleUint(col(KEY_ACTOR))
  const keyCtr = new Delta(col(KEY_CTR))
  const keyStr = new RleString(col(KEY_STR))
  const insert = new Bools(col(INSERT))
  const action = new RleUint(col(ACTION))
  const valMeta = new RleUint(col(VAL_META))
  const valRaw = col(VAL_RAW)
  const predGroup = new RleUint(col(PRED_GROUP))
  const predActor = new RleUint(col(PRED_ACTOR))
  const predCtr = new Delta(col(PRED_CTR))

  const opId = (ctr: number, actor: number) => {
    if (ctr < 1 || actor < 0 || actor >= actors.length) no()
    return `${ctr}@${actors[actor]}`
  }

  const ops: DecodedOp[] = []
  while (!action.done) {
    // object: both null (or both columns empty): the root
    const oa = objActor.next()
    const oc = objCtr.next()
    let obj: string
    if (oa < 0 && oc < 0) obj = "_root"
    else if (oa >= 0 && oc >= 0) obj = opId(oc, oa)
    else no()

    // key: a string (a map key), or counter 0 without actor (the list's head), or an element's op id
    const ka = keyActor.next()
    const kc = keyCtr.next()
    const ks = keyStr.next()
    let key: string | undefined
    let elemId: string | undefined
    if (typeof ks === "string") {
      if (ka >= 0 || typeof kc === "number") no()
      key = ks
    } else if (ka < 0 && kc === 0) elemId = "_head"
    else if (ka >= 0 && typeof kc === "number") elemId = opId(kc, ka)
    else no()

    const ins = insert.next()
    const act = action.next()
    if (act < 0 || act >= ACTIONS.length) no()

    // value: metadata (length << 4 | type), its bytes in the raw column
    const meta = valMeta.next()
    if (meta < 0) no()
    const type = meta % 16
    const vlen = Math.floor(meta / 16)
    let value: DecodedOp["value"]
    let datatype: DecodedOp["datatype"]
    if (type <= 2) {
      if (vlen !== 0) no()
      value = type === 0 ? null : type === 2
    } else if (type === 3 || type === 4) {
      const at = valRaw.take(vlen)
      const v = new Reader(b, at, at + vlen)
      value = type === 3 ? v.uleb() : v.sleb()
      if (!v.done) no()
      datatype = type === 3 ? "uint" : "int"
    } else if (type === 5) {
      if (vlen !== 8) no()
      const at = valRaw.take(8)
      value = new DataView(b.buffer, b.byteOffset + at, 8).getFloat64(0, true)
      if (!Number.isFinite(value)) no()
      datatype = "float64"
    } else if (type === 6) {
      const at = valRaw.take(vlen)
      value = text(b, at, at + vlen)
    } else no()

    // predecessors: checked (a count, then each an actor index and a counter), not returned
    const preds = predGroup.next()
    if (preds < 0) no()
    for (let i = 0; i < preds; i++) {
      const pa = predActor.next()
      const pc = predCtr.next()
      if (typeof pc !== "number") no()
      opId(pc, pa)
    }

    const op: DecodedOp = { action: ACTIONS[act], obj }
    if (key !== undefined) op.key = key
    else op.elemId = elemId
    if (ins) op.insert = true
    if (act === 1) {
      if (datatype) op.datatype = datatype
      op.value = value
    } else if (value !== null) no()
    ops.push(op)
  }
  // every column used up by the ops, none longer
  if (!(objActor.done && objCtr.done && keyActor.done && keyCtr.done && keyStr.done && insert.done && valMeta.done && valRaw.done)) no()
  if (!(predGroup.done && predActor.done && predCtr.done)) no()
  return { actor: actors[0], seq, startOp, time, message, deps, ops }
}
