// The worker protocol, process side: one JSON request per stdin line ({id, op, args}), one JSON answer
// per stdout line ({id, ok, result | error}); id 0 announces readiness. Used by worker.mjs,
// net-watcher.mjs and gen-scale.mjs.
import readline from "node:readline"

export function serveOps(ops) {
  const send = obj => process.stdout.write(`${JSON.stringify(obj)}\n`)
  readline.createInterface({ input: process.stdin }).on("line", line => {
    let msg
    try {
      msg = JSON.parse(line)
    } catch {
      return
    }
    const fn = ops[msg.op]
    if (!fn) return send({ id: msg.id, ok: false, error: `unknown op ${msg.op}` })
    Promise.resolve(fn(msg.args ?? {})).then(
      result => send({ id: msg.id, ok: true, result }),
      e => send({ id: msg.id, ok: false, error: String(e?.stack ?? e) })
    )
  })
  send({ id: 0, ok: true, result: { ready: true, pid: process.pid } })
}
