// Network faults between sync peers: a TCP proxy on 127.0.0.1 in front of `concord serve` that delays,
// drops, duplicates and reorders chunks and cuts connections mid-message; three peers write reports
// locally while `concord sync --watch` runs through the proxy. Then the proxy turns clean: every store
// must converge, with every acknowledged report everywhere. Plus a soak of `status --remote --watch`
// across server restarts (no MaxListenersExceededWarning, still live afterwards).
import { spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import net from "node:net"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..")
const BIN = path.join(ROOT, "bin/concord.js")
const { PlanStore, readReports, reportDocId } = await import(path.join(ROOT, "dist/src/index.js"))
const { startServerProcess } = await import(path.join(ROOT, "test/helpers/processes.mjs"))
const A = await import("@automerge/automerge")

const sleep = ms => new Promise(r => setTimeout(r, ms))
const rand = (a, b) => a + Math.floor(Math.random() * (b - a))
const JOBS = ["A", "B", "C"]

/** Always async: the proxy lives in this process, so a blocking spawnSync would stall it. */
function cli(store, args, env = {}) {
  return new Promise(resolve => {
    const c = spawn(process.execPath, [BIN, ...args], {
      cwd: store,
      env: { ...clean(process.env), CONCORD_STORE: store, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    })
    let stdout = ""
    let stderr = ""
    c.stdout.on("data", d => (stdout += d))
    c.stderr.on("data", d => (stderr += d))
    c.on("close", code => resolve({ code, stdout, stderr }))
  })
}
function clean(env) {
  const e = { ...env }
  for (const k of Object.keys(e)) if (k.startsWith("CONCORD_")) delete e[k]
  return e
}

/** A faulty TCP proxy. `faulty` can be switched off; counts the faults it injected. */
export function faultyProxy(targetPort) {
  const faults = { delayed: 0, dropped: 0, duplicated: 0, reordered: 0, cut: 0, connections: 0 }
  const sockets = new Set()
  let faulty = true
  const server = net.createServer(client => {
    faults.connections++
    const upstream = net.connect(targetPort, "127.0.0.1")
    sockets.add(client)
    sockets.add(upstream)
    const kill = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on("error", kill)
    upstream.on("error", kill)
    client.on("close", kill)
    upstream.on("close", kill)
    // a faulty connection lives a random while, then is cut (also unsticks a stream a drop left waiting)
    const life = setTimeout(
      () => {
        if (faulty) {
          faults.cut++
          kill()
        }
      },
      rand(1500, 6000)
    )
    client.on("close", () => clearTimeout(life))
    const pipe = (from, to) => {
      let chain = Promise.resolve()
      let held
      from.on("data", chunk => {
        chain = chain.then(async () => {
          if (!faulty) {
            if (held) to.write(held), (held = undefined)
            to.write(chunk)
            return
          }
          const roll = Math.random()
          if (roll < 0.02) {
            // cut in the middle of this message
            faults.cut++
            to.write(chunk.subarray(0, Math.floor(chunk.length / 2)))
            kill()
            return
          }
          if (roll < 0.035) {
            faults.dropped++
            return
          }
          if (roll < 0.05) {
            faults.duplicated++
            to.write(chunk)
            to.write(chunk)
            return
          }
          if (roll < 0.065 && !held) {
            faults.reordered++
            held = chunk // goes out after the next chunk
            return
          }
          if (roll < 0.5) {
            faults.delayed++
            await sleep(rand(1, 120))
          }
          if (!to.destroyed) to.write(chunk)
          if (held && !to.destroyed) to.write(held), (held = undefined)
        })
      })
    }
    pipe(client, upstream)
    pipe(upstream, client)
  })
  return new Promise(resolve =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        port: server.address().port,
        faults,
        setFaulty(v) {
          faulty = v
        },
        close() {
          for (const s of sockets) s.destroy()
          server.close()
        },
      })
    )
  )
}

async function heads(store, id) {
  const s = new PlanStore(store, { onWarning: () => {} })
  const out = []
  for (const docId of [id, ...JOBS.map(j => reportDocId(id, j))]) {
    const d = await s.docs.load(docId)
    out.push(d ? A.getHeads(d).sort().join(",") : "none")
  }
  return out.join("|")
}

export async function networkChaos({ reportsPerPeer = 6, log = () => {} } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-netchaos-"))
  const violations = []
  const S = path.join(root, "server")
  const peers = ["p1", "p2", "p3"].map(p => path.join(root, p))
  for (const d of [S, ...peers]) mkdirSync(d)
  writeFileSync(path.join(root, "plan.yaml"), `name: net\njobs:\n${JOBS.map(j => `  - { name: ${j}, run: "true" }`).join("\n")}\n`)
  const created = await cli(S, ["plan", "create", path.join(root, "plan.yaml"), "--json"])
  if (created.code !== 0) throw new Error(created.stderr)
  const id = JSON.parse(created.stdout).id
  const tok = await cli(S, ["token", "add", "--plan", id, "--role", "writer", "--json"])
  const token = JSON.parse(tok.stdout).token
  const server = await startServerProcess(S)
  const proxy = await faultyProxy(server.port)
  const url = `ws://127.0.0.1:${proxy.port}`
  proxy.setFaulty(false)
  for (const p of peers) {
    const r = await cli(p, ["sync", url, "--token", token, "--quiet"])
    if (r.code !== 0) throw new Error(`initial sync: ${r.stderr}`)
  }
  proxy.setFaulty(true)
  const watchers = peers.map(p => {
    const child = spawn(process.execPath, [BIN, "sync", url, "--token", token, "--watch"], {
      cwd: p,
      env: { ...clean(process.env), CONCORD_STORE: p },
      stdio: ["ignore", "pipe", "pipe"],
    })
    let err = ""
    child.stderr.on("data", d => (err += d))
    child.stdout.on("data", () => {})
    return { child, err: () => err, done: new Promise(r => child.on("close", (code, signal) => r({ code, signal }))) }
  })
  // three peers write concurrently while the network misbehaves
  const acked = []
  await Promise.all(
    peers.map(async (p, i) => {
      for (let k = 0; k < reportsPerPeer; k++) {
        const msg = `p${i + 1}-${k}`
        const r = await new Promise(resolve => {
          const c = spawn(process.execPath, [BIN, "report", "progress", msg, "--job", JOBS[k % 3], "--plan", id], {
            cwd: p,
            env: { ...clean(process.env), CONCORD_STORE: p },
            stdio: "ignore",
          })
          c.on("close", code => resolve(code))
        })
        if (r === 0) acked.push(msg)
        await sleep(rand(100, 700))
      }
    })
  )
  await sleep(2000)
  // heal the network: everything must converge
  proxy.setFaulty(false)
  const t0 = Date.now()
  let converged = false
  while (Date.now() - t0 < 90_000) {
    const hs = await Promise.all([S, ...peers].map(d => heads(d, id)))
    if (hs.every(h => h === hs[0])) {
      converged = true
      break
    }
    await sleep(1000)
  }
  if (!converged) {
    const hs = await Promise.all([S, ...peers].map(d => heads(d, id)))
    const behind = peers.filter((_, i) => hs[i + 1] !== hs[0]).map(p => path.basename(p))
    violations.push(
      `the peers and the server did not converge within 90 s of the network healing (differing from the server: ${behind.join(", ")}; ` +
        `their sync --watch was still running)`
    )
    watchers.forEach((w, i) => {
      if (behind.includes(`p${i + 1}`)) log(`p${i + 1} sync --watch stderr (last lines): ${w.err().split("\n").slice(-8).join(" / ")}`)
    })
  }
  for (const w of watchers) w.child.kill("SIGTERM")
  const ends = await Promise.all(watchers.map(w => w.done))
  watchers.forEach((w, i) => {
    if (/\n\s+at |TypeError|RangeError|Unhandled/.test(w.err()))
      violations.push(`sync --watch of peer ${i + 1} printed a stack trace: ${w.err().slice(0, 300)}`)
    if (ends[i].code !== 0 && ends[i].signal !== "SIGTERM") violations.push(`sync --watch of peer ${i + 1} exited ${ends[i].code ?? ends[i].signal}`)
  })
  for (const d of [S, ...peers]) {
    const ps = new PlanStore(d, { onWarning: () => {} })
    const have = new Set()
    for (const j of JOBS) for (const r of readReports(await ps.loadReports(id, j))) have.add(r.message)
    for (const m of acked) if (!have.has(m)) violations.push(`acknowledged report ${m} is missing from ${path.basename(d)}`)
  }
  proxy.close()
  await server.stop("SIGTERM")
  const faults = { ...proxy.faults }
  if (violations.length === 0) rmSync(root, { recursive: true, force: true })
  else {
    // the evidence stays with the stores: the server's log and every peer's sync --watch stderr
    writeFileSync(path.join(root, "server.log"), server.logs())
    watchers.forEach((w, i) => writeFileSync(path.join(root, `p${i + 1}-sync-watch.log`), w.err()))
    log(`kept ${root} (server.log, p*-sync-watch.log)`)
  }
  return { violations, faults, acked: acked.length, attempted: reportsPerPeer * 3 }
}

/** `status --remote --watch` for `seconds`, with the server SIGKILLed and restarted `restarts` times. */
export async function remoteWatchSoak({ seconds = 24, restarts = 2, log = () => {} } = {}) {
  const root = mkdtempSync(path.join(os.tmpdir(), "concord-soak-"))
  const violations = []
  const S = path.join(root, "server")
  mkdirSync(S)
  writeFileSync(path.join(root, "plan.yaml"), `name: soak\njobs:\n  - { name: A, run: "true" }\n`)
  const id = JSON.parse((await cli(S, ["plan", "create", path.join(root, "plan.yaml"), "--json"])).stdout).id
  const token = JSON.parse((await cli(S, ["token", "add", "--plan", id, "--role", "admin", "--json"])).stdout).token
  let server = await startServerProcess(S)
  const port = server.port
  const child = spawn(process.execPath, [BIN, "status", id, "--remote", `ws://127.0.0.1:${port}`, "--token", token, "--watch", "--json"], {
    cwd: root,
    env: clean(process.env),
    stdio: ["ignore", "pipe", "pipe"],
  })
  let out = ""
  let err = ""
  child.stdout.on("data", d => (out += d))
  child.stderr.on("data", d => (err += d))
  const closed = new Promise(r => child.on("close", r))
  const t0 = Date.now()
  for (let i = 0; i < restarts; i++) {
    await sleep((seconds * 1000) / (restarts + 1))
    await server.stop("SIGKILL")
    await sleep(500)
    server = await startServerProcess(S, [], { port })
  }
  await sleep(Math.max(0, seconds * 1000 - (Date.now() - t0) - 4000))
  // still live after the restarts: a report written on the server shows up
  const marker = `after-restarts-${Date.now()}`
  await cli(S, ["report", "progress", marker, "--job", "A", "--plan", id])
  const seen = await (async () => {
    for (let t = 0; t < 40; t++) {
      if (out.includes(marker)) return true
      await sleep(250)
    }
    return false
  })()
  if (!seen) violations.push("status --remote --watch did not show a report made after the server restarts")
  if (child.exitCode !== null) violations.push(`status --remote --watch exited (${child.exitCode}) during the soak`)
  child.kill("SIGTERM")
  await closed
  if (/MaxListenersExceededWarning/.test(err)) violations.push("MaxListenersExceededWarning (a listener leak) during the soak")
  if (/\n\s+at |TypeError|Unhandled/.test(err)) violations.push(`stack trace on stderr: ${err.slice(0, 300)}`)
  await server.stop("SIGTERM")
  if (violations.length === 0) rmSync(root, { recursive: true, force: true })
  else log(`kept ${root}; stderr: ${err.slice(0, 500)}`)
  return { violations, seconds: Math.round((Date.now() - t0) / 1000), restarts }
}
