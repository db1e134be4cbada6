/** A sync server's URL as the user gives it (no I/O: the CLI checks it before loading any client code). */
import { InputError } from "../../doc/errors.js"

/** Normalise a server URL: ws(s):// or http(s)://, no token in it. */
export function parseServerUrl(url: string): { ws: URL; http: URL } {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new InputError(`invalid server URL "${url}": expected ws://HOST:PORT or wss://HOST:PORT`)
  }
  const proto = u.protocol
  if (!["ws:", "wss:", "http:", "https:"].includes(proto)) {
    throw new InputError(`invalid server URL "${url}": expected ws://, wss://, http:// or https://`)
  }
  if (u.searchParams.has("token")) throw new InputError("put the token in --token (or $CONCORD_TOKEN), not in the URL")
  const secure = proto === "wss:" || proto === "https:"
  const ws = new URL(u.toString())
  ws.protocol = secure ? "wss:" : "ws:"
  const h = new URL(u.toString())
  h.protocol = secure ? "https:" : "http:"
  return { ws, http: h }
}
