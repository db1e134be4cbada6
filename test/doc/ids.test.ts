// Document ids are automerge-repo DocumentIds: each side accepts the other's, and a damaged id is refused.
import { documentIdToBinary, generateAutomergeUrl, isValidDocumentId, parseAutomergeUrl, stringifyAutomergeUrl } from "@automerge/automerge-repo/slim"
import { describe, expect, it } from "vitest"
import { isDocId, newDocId, parseDocRef, reportDocId } from "../../src/doc/ids.js"

describe("document ids", () => {
  it("are automerge-repo's: each side accepts and decodes the other's ids to the same 16 bytes", () => {
    for (let i = 0; i < 200; i++) {
      const ours = newDocId()
      expect(isValidDocumentId(ours)).toBe(true)
      expect(documentIdToBinary(ours as never)).toHaveLength(16)
      const theirs = parseAutomergeUrl(generateAutomergeUrl()).documentId
      expect(isDocId(theirs)).toBe(true)
      expect(parseDocRef(`automerge:${theirs}`)).toBe(theirs)
      // the same bytes encode to the same id both ways
      expect(parseAutomergeUrl(stringifyAutomergeUrl(documentIdToBinary(ours as never)!)).documentId).toBe(ours)
    }
    const log = reportDocId(newDocId(), "api")
    expect(isValidDocumentId(log)).toBe(true)
  })

  it("refuses an id with a changed character, a wrong length, or characters outside base58", () => {
    const id = newDocId()
    const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    for (let at = 0; at < id.length; at++) {
      const other = alphabet[(alphabet.indexOf(id[at]) + 1) % alphabet.length]
      const changed = id.slice(0, at) + other + id.slice(at + 1)
      expect(isDocId(changed)).toBe(isValidDocumentId(changed))
    }
    for (const bad of ["", "0", "abc", `${id}1`, id.slice(1), "O0Il", `${id.slice(0, -1)}0`, "../../etc/passwd"]) {
      expect(isDocId(bad), bad).toBe(false)
    }
  })
})
