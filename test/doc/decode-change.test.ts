// The JavaScript reader of a change's ops (decode-change.ts) against Automerge's own decodeChange: on the
// changes concord makes (report logs by both write paths, plan documents) it reads them all, and reads them
// exactly as decodeChange does; on any other change (random documents, damaged bytes) it either reads it
// exactly as decodeChange does or leaves it to Automerge (undefined), and never throws.
import { deflateRawSync } from "node:zlib"
import { createHash } from "node:crypto"
import * as A from "@automerge/automerge"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { decodeChangeOps } from "../../src/doc/decode-change.js"
import { createPlan, updateAttempt } from "../../src/doc/plan.js"
import { appendReports, appendReportsToBackend, type NewReport, reportsGenesis, type ReportsDocument, reportsInChanges } from "../../src/doc/reports.js"
import { ctx, spec } from "./helpers.js"

const ACTOR = "abcdefabcdefabcdefabcdefabcdef01" as A.ActorId
const log = () => A.clone(reportsGenesis("plan-x", "job-a"), { actor: ACTOR })

/** decodeChange's fields that decodeChangeOps gives: all but the hash, ops without their pred. */
function automergeView(bytes: Uint8Array) {
  const { hash: _hash, ops, ...rest } = A.decodeChange(bytes) as unknown as { hash: string; ops: Record<string, unknown>[] }
  return { ...rest, ops: ops.map(({ pred: _pred, ...op }) => op) }
}

/** decodeChangeOps's reading of a change: undefined (left to Automerge), or exactly decodeChange's. */
function check(bytes: Uint8Array): boolean {
  const mine = decodeChangeOps(bytes)
  if (mine) expect(mine).toEqual(automergeView(bytes))
  return mine !== undefined
}

const reportArb: fc.Arbitrary<NewReport> = fc.record(
  {
    status: fc.constantFrom("working", "progress", "blocked", "needs_review", "completed", "failed"),
    message: fc.oneof(fc.constant(""), fc.string({ maxLength: 40 }), fc.string({ unit: "grapheme", maxLength: 40 })),
    progress: fc.oneof(fc.constant(null), fc.integer({ min: 0, max: 100 }), fc.double({ min: 0, max: 100, noNaN: true })),
    attempt: fc.integer({ min: 1, max: 1000 }),
    rid: fc.stringMatching(/^[A-Za-z0-9_-]{8,20}$/),
  },
  { requiredKeys: ["status", "attempt"] }
)
const batchArb = fc.array(fc.record({ report: reportArb, ctx: fc.record({ by: fc.string({ maxLength: 30 }), now: fc.integer({ min: 0, max: 2 ** 50 }) }) }), {
  minLength: 1,
  maxLength: 5,
})

/** The changes one batch of reports makes, by A.change (appendReports) and on the backend (as a live store). */
function reportChanges(batch: { report: NewReport; ctx: { by: string; now: number } }[]): Uint8Array[] {
  const viaChange = appendReports(log(), batch, () => false)
  const backend = A.getBackend(log())
  appendReportsToBackend(backend, batch, () => false)
  const heads = A.getHeads(log())
  return [...A.getChangesSince(viaChange, heads), ...backend.getChanges(heads)]
}

describe("decodeChangeOps", () => {
  it("reads every report change, by either write path, as decodeChange does", () => {
    fc.assert(
      fc.property(batchArb, batch => {
        const changes = reportChanges(batch)
        expect(changes).toHaveLength(2)
        for (const c of changes) expect(check(c)).toBe(true)
      }),
      { numRuns: 60 }
    )
  })

  it("reads reports with empty, unicode and 4000-character (12 KB) messages, float, int and no progress", () => {
    const messages = ["", "é ✓ \u{1F600} \uFEFFbom first", "\uFEFF", "x".repeat(4000), "€".repeat(4000)]
    const batch = messages.map((message, i) => ({
      report: { status: "progress", message, progress: [null, 0, 100, 12.5, 99.999][i], attempt: 1 + i },
      ctx: { by: `job:a#1@host:${i}`, now: 1_700_000_000_000 + i },
    }))
    for (const one of batch) for (const c of reportChanges([one])) expect(check(c)).toBe(true)
    const [big] = reportChanges(batch)
    expect(big.length).toBeGreaterThan(15_000)
    expect(check(big)).toBe(true)
  })

  it("reads the genesis change and plan changes (creation, heartbeats)", () => {
    expect(check(A.getAllChanges(reportsGenesis("plan-x", "job-a"))[0])).toBe(true)
    let plan = createPlan(spec([{ name: "A" }, { name: "B", dependsOn: ["A"] }]), { baseDir: "/tmp" }, ctx())
    const heads = A.getHeads(plan)
    for (let i = 0; i < 3; i++) plan = updateAttempt(plan, "A", 1, { heartbeatAt: 1_700_000_000_000 + i, pid: 4242 }, ctx())
    const all = A.getAllChanges(plan)
    expect(check(all[0])).toBe(true)
    for (const c of A.getChangesSince(plan, heads)) expect(check(c)).toBe(true)
  })

  it("reads runs of equal steps in delta columns, backwards too (deleting a list from its end)", () => {
    let doc = A.change(A.init<{ list: number[] }>(), d => {
      d.list = [1, 2, 3, 4, 5, 6]
    })
    doc = A.change(doc, d => {
      for (let i = 5; i >= 1; i--) d.list.splice(i, 1)
    })
    const last = A.getLastLocalChange(doc)!
    expect(check(last)).toBe(true)
    expect(decodeChangeOps(last)!.ops.map(op => op.elemId?.split("@")[0])).toEqual(["7", "6", "5", "4", "3"])
  })

  it("reads random documents' changes exactly as decodeChange does, or leaves them to Automerge", () => {
    type Edit =
      | { k: "put"; key: string; v: unknown }
      | { k: "text"; key: string; s: string }
      | { k: "splice"; at: number; del: number; s: string }
      | { k: "push"; v: unknown }
      | { k: "insert"; at: number; v: unknown }
      | { k: "delList"; at: number }
      | { k: "delKey"; key: string }
      | { k: "nested"; key: string; v: unknown }
      | { k: "inc"; by: number }
    // scalars this reader takes, and (rarer) ones it leaves to Automerge: counters, timestamps, bytes
    const scalar = fc.oneof(
      { weight: 3, arbitrary: fc.constant(null) },
      { weight: 3, arbitrary: fc.boolean() },
      { weight: 3, arbitrary: fc.integer() },
      { weight: 3, arbitrary: fc.maxSafeInteger() },
      { weight: 3, arbitrary: fc.double() },
      { weight: 3, arbitrary: fc.string({ maxLength: 8 }).map(s => new A.ImmutableString(s)) },
      { weight: 3, arbitrary: fc.nat().map(n => new A.Uint(n)) },
      { weight: 1, arbitrary: fc.integer().map(n => new A.Counter(n)) },
      { weight: 1, arbitrary: fc.date({ noInvalidDate: true }) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 4 }) }
    )
    const key = fc.constantFrom("a", "b", "c", "", "ключ")
    const edit: fc.Arbitrary<Edit> = fc.oneof(
      fc.record({ k: fc.constant("put" as const), key, v: scalar }),
      fc.record({ k: fc.constant("text" as const), key, s: fc.string({ maxLength: 6 }) }),
      fc.record({ k: fc.constant("splice" as const), at: fc.nat(5), del: fc.nat(2), s: fc.string({ maxLength: 4 }) }),
      fc.record({ k: fc.constant("push" as const), v: scalar }),
      fc.record({ k: fc.constant("insert" as const), at: fc.nat(5), v: scalar }),
      fc.record({ k: fc.constant("delList" as const), at: fc.nat(5) }),
      fc.record({ k: fc.constant("delKey" as const), key }),
      fc.record({ k: fc.constant("nested" as const), key, v: scalar }),
      fc.record({ k: fc.constant("inc" as const), by: fc.integer({ min: -5, max: 5 }) })
    )
    let read = 0
    let left = 0
    fc.assert(
      fc.property(fc.array(fc.array(edit, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 4 }), changes => {
        // two replicas, so later changes refer to the other's ops (actor table, preds)
        let doc = A.init<Record<string, unknown>>()
        doc = A.change(doc, d => {
          d.list = []
          d.txt = "hello"
        })
        let other = A.clone(doc)
        for (const [i, edits] of changes.entries()) {
          const apply = (d: Record<string, unknown>) => {
            const list = d.list as unknown[]
            for (const e of edits) {
              if (e.k === "put") d[e.key] = e.v
              else if (e.k === "text") d[`t${e.key}`] = e.s
              else if (e.k === "splice") A.splice(d, ["txt"], Math.min(e.at, (d.txt as string).length), e.del, e.s)
              else if (e.k === "push") list.push(e.v)
              else if (e.k === "insert") list.splice(Math.min(e.at, list.length), 0, e.v)
              else if (e.k === "delList" && list.length > 0) list.splice(e.at % list.length, 1)
              else if (e.k === "delKey") delete d[e.key]
              else if (e.k === "nested") d[`m${e.key}`] = { x: e.v, y: [e.v] }
              else if (e.k === "inc" && d.n instanceof A.Counter) d.n.increment(e.by)
              else if (e.k === "inc") d.n = new A.Counter(e.by)
            }
          }
          if (i % 2 === 0) doc = A.change(doc, apply)
          else other = A.change(other, apply)
          if (i % 3 === 2) doc = A.merge(doc, other)
        }
        doc = A.merge(doc, other)
        for (const c of A.getAllChanges(doc)) {
          if (check(c)) read++
          else left++
        }
      }),
      { numRuns: 80 }
    )
    // both ways taken: most changes read here, those with counters, timestamps or bytes left to Automerge
    expect(read).toBeGreaterThan(left)
    expect(left).toBeGreaterThan(0)
  })

  it("never throws on damaged or truncated bytes, and reads nothing Automerge would read differently", () => {
    const batch = [0, 1, 2].map(i => ({
      report: { status: "progress", message: `step ${i} ✓`, progress: i === 1 ? 33.5 : i, attempt: 1, rid: `rid-0000000${i}` },
      ctx: { by: "job:a#1@host", now: 1_700_000_000_000 + i },
    }))
    const good = reportChanges(batch)[1]
    let read = 0
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ k: fc.constant("flip" as const), at: fc.nat(good.length - 1), xor: fc.integer({ min: 1, max: 255 }) }),
          fc.record({ k: fc.constant("cut" as const), at: fc.nat(good.length - 1) }),
          fc.record({ k: fc.constant("add" as const), bytes: fc.uint8Array({ minLength: 1, maxLength: 4 }) })
        ),
        fc.array(fc.record({ at: fc.nat(good.length - 1), xor: fc.integer({ min: 1, max: 255 }) }), { maxLength: 2 }),
        (damage, more) => {
          let bad = good.slice()
          if (damage.k === "flip") bad[damage.at] ^= damage.xor
          else if (damage.k === "cut") bad = bad.subarray(0, damage.at)
          else bad = Uint8Array.from([...bad, ...damage.bytes])
          for (const m of more) if (m.at < bad.length) bad[m.at] ^= m.xor
          let mine: ReturnType<typeof decodeChangeOps>
          expect(() => {
            mine = decodeChangeOps(bad)
          }).not.toThrow()
          if (!mine) return
          // what it reads, Automerge reads the same way
          expect(mine).toEqual(automergeView(bad))
          read++
        }
      ),
      { numRuns: 400 }
    )
    // some damage still reads (a changed character, a changed number): then the same as Automerge
    expect(read).toBeGreaterThan(0)
  })

  it("reads a change written by hand; leaves to Automerge one with an overlong number or billions of ops in a few bytes", () => {
    // deletes of root key "a": key string, insert, action, value metadata and pred columns, each one run
    const change = (ops: number, seq: number[] = [1]) => {
      const run = (value: number[]) => [...sleb(ops), ...value]
      const cols: [number, number[]][] = [
        [0x15, run([1, 0x61])],
        [0x34, uleb(ops)],
        [0x42, run([3])],
        [0x56, run([0])],
        [0x70, run([0])],
      ]
      const data = [0, 16, ...new Array(16).fill(7), ...seq, 1, 0, 0, 0, cols.length]
      for (const [spec, bytes] of cols) data.push(spec, ...uleb(bytes.length))
      for (const [, bytes] of cols) data.push(...bytes)
      const body = Uint8Array.from(data)
      const sum = createHash("sha256")
        .update(Uint8Array.of(1, ...uleb(body.length)))
        .update(body)
        .digest()
      return Uint8Array.from([0x85, 0x6f, 0x4a, 0x83, ...sum.subarray(0, 4), 1, ...uleb(body.length), ...body])
    }
    expect(check(change(3))).toBe(true)
    expect(decodeChangeOps(change(3))!.ops).toEqual(new Array(3).fill({ action: "del", obj: "_root", key: "a" }))
    // seq 1 written in two bytes: Automerge refuses it, and so does this reader
    expect(() => A.decodeChange(change(3, [0x81, 0]))).toThrow()
    expect(decodeChangeOps(change(3, [0x81, 0]))).toBeUndefined()
    expect(decodeChangeOps(change(50_000))?.ops).toHaveLength(50_000)
    const started = performance.now()
    expect(decodeChangeOps(change(2 ** 40))).toBeUndefined()
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it("leaves a compressed change chunk to Automerge, and reportsInChanges still reads its reports", () => {
    const batch = [{ report: { status: "progress", message: "z".repeat(3000), progress: 7, attempt: 2 }, ctx: { by: "b", now: 5 } }]
    const [plain] = reportChanges(batch)
    const compressed = compress(plain)
    expect(compressed[8]).toBe(2)
    expect(A.decodeChange(compressed).hash).toBe(A.decodeChange(plain).hash)
    expect(decodeChangeOps(compressed)).toBeUndefined()
    expect(reportsInChanges([compressed])).toEqual(reportsInChanges([plain]))
    expect(reportsInChanges([compressed])).toHaveLength(1)
  })
})

describe("reportsInChanges", () => {
  it("gives the same records with the JavaScript reader as with Automerge's decodeChange", () => {
    const byAutomerge = (bytes: Uint8Array) => A.decodeChange(bytes) as unknown as ReturnType<typeof decodeChangeOps> & object
    fc.assert(
      fc.property(fc.array(batchArb, { minLength: 1, maxLength: 4 }), batches => {
        let doc: ReportsDocument = log()
        const backend = A.getBackend(A.clone(reportsGenesis("plan-x", "job-a"), { actor: "abcdefabcdefabcdefabcdefabcdef02" as A.ActorId }))
        for (const b of batches) {
          doc = appendReports(doc, b, () => false)
          appendReportsToBackend(backend, b, () => false)
        }
        const changes = [...A.getAllChanges(doc), ...backend.getChanges([])]
        const fast = reportsInChanges(changes)
        expect(fast).toBeDefined()
        expect(fast).toEqual(reportsInChanges(changes, byAutomerge))
        expect(fast).toHaveLength(2 * batches.reduce((n, b) => n + b.length, 0))
      }),
      { numRuns: 40 }
    )
    // a change of another shape: undefined either way
    const other = A.change(log(), d => {
      ;(d as unknown as Record<string, unknown>).extra = 1
    })
    const changes = A.getAllChanges(other)
    expect(reportsInChanges(changes)).toBeUndefined()
    expect(reportsInChanges(changes, byAutomerge)).toBeUndefined()
  })

  it("on a damaged change does what Automerge's reading does: the same records, or the same error", () => {
    const [good] = reportChanges([{ report: { status: "completed", message: "ok", progress: 100, attempt: 1 }, ctx: { by: "x", now: 9 } }])
    const outcome = (f: () => unknown) => {
      try {
        return { ok: f() }
      } catch (e) {
        return { threw: (e as Error).message }
      }
    }
    const byAutomerge = (bytes: Uint8Array) => A.decodeChange(bytes) as unknown as ReturnType<typeof decodeChangeOps> & object
    for (let at = 0; at < good.length; at++) {
      for (const bad of [good.subarray(0, at), flip(good, at)]) {
        expect(outcome(() => reportsInChanges([bad]))).toEqual(outcome(() => reportsInChanges([bad], byAutomerge)))
      }
    }
  })
})

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const out = bytes.slice()
  out[at] ^= 0x41
  return out
}

/** A change chunk as a compressed change chunk (type 2): its data deflated, its checksum unchanged. */
function compress(chunk: Uint8Array): Uint8Array {
  let pos = 9
  let len = 0
  for (let scale = 1; ; scale *= 128) {
    const b = chunk[pos++]
    len += (b & 0x7f) * scale
    if (b < 0x80) break
  }
  const data = deflateRawSync(chunk.subarray(pos, pos + len))
  const leb = uleb(data.length)
  // the checksum is the uncompressed chunk's (the first 4 bytes of its hash)
  expect(createHash("sha256").update(chunk.subarray(8)).digest().subarray(0, 4)).toEqual(Buffer.from(chunk.subarray(4, 8)))
  return Uint8Array.from([...chunk.subarray(0, 8), 2, ...leb, ...data])
}

function uleb(n: number): number[] {
  const out: number[] = []
  for (;;) {
    const b = n % 128
    n = Math.floor(n / 128)
    out.push(n > 0 ? b | 0x80 : b)
    if (n === 0) return out
  }
}

function sleb(n: number): number[] {
  // non-negative only here: as uleb, with a zero sign bit
  const out = uleb(n)
  if (out[out.length - 1] & 0x40) {
    out[out.length - 1] |= 0x80
    out.push(0)
  }
  return out
}
