/** Reading an HTTP request body with a size bound (the sync server's API and the dashboard's actions). */
import type http from "node:http"
import { InputError } from "../doc/errors.js"

/** The body as UTF-8 text; rejects with an InputError, and drops the request, once it passes `maxBytes`. */
export async function readBody(req: http.IncomingMessage, maxBytes: number): Promise<string> {
  return (await readBodyBytes(req, maxBytes)).toString("utf8")
}

/** The body as bytes; rejects with an InputError, and drops the request, once it passes `maxBytes`. */
export function readBodyBytes(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let size = 0
    const chunks: Buffer[] = []
    req.on("data", (c: Buffer) => {
      size += c.length
      if (size > maxBytes) {
        reject(new InputError(`request body over ${maxBytes} bytes`))
        req.destroy()
        return
      }
      chunks.push(c)
    })
    req.on("end", () => resolve(Buffer.concat(chunks)))
    req.on("error", reject)
  })
}
