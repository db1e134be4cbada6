// The sending half of the endpoint (src/ops/endpoint-client.ts): the report ids it gives every report it
// routes, so that a report resent to the store after a broken connection is kept once.
import { describe, expect, it } from "vitest"
import { RID_PATTERN } from "../../src/doc/reports.js"
import { newReportId } from "../../src/ops/endpoint-client.js"

describe("newReportId", () => {
  it("gives ids a report log accepts, never the same one twice in a process", () => {
    const ids = Array.from({ length: 20_000 }, () => newReportId())
    for (const id of ids) expect(id).toMatch(RID_PATTERN)
    expect(new Set(ids).size).toBe(ids.length)
    // one random part per process (drawn once), then a counter
    const prefix = ids[0].slice(0, 12)
    expect(ids.every(id => id.startsWith(prefix))).toBe(true)
    expect(prefix).toMatch(/^[A-Za-z0-9_-]{12}$/)
  })
})
