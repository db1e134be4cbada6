// Processes: long-lived workers (worker.mjs) and one-shot timed commands.
import { spawn } from "node:child_process"
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs"
import os from "node:os"
import path from "node:path"
import { performance } from "node:perf_hooks"
import { fileURLToPath } from "node:url"
import readline from "node:readline"

const HERE = path.dirname(fileURLToPath(import.meta.url))
const WORKER = path.join(HERE, "worker.mjs")
const RSS_PRELOAD = path.join(HERE, "rss-preload.mjs")

/** Start a worker process for a backend and wait until it is ready. */
export function startWorker(backend, dir, opts) {
  return startProcess(WORKER, [backend, dir, ...(opts ? [JSON.stringify(opts)] : [])], backend)
}

/** Start a node script that speaks the worker protocol (JSON lines, ready message id 0). */
export async function startProcess(script, args, backend) {
  // BENCH_PROF=DIR: each worker writes a V8 CPU profile into DIR when it exits (where a workload's time goes)
  const prof = process.env.BENCH_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []
  const child = spawn(process.execPath, [...prof, script, ...args], {
    stdio: ["pipe", "pipe", "pipe"],
  })
  let stderr = ""
  child.stderr.on("data", d => {
    stderr += d
    if (stderr.length > 20000) stderr = stderr.slice(-20000)
  })
  const pending = new Map()
  let nextId = 1
  let readyResolve
  let readyReject
  const ready = new Promise((res, rej) => ((readyResolve = res), (readyReject = rej)))
  readline.createInterface({ input: child.stdout }).on("line", line => {
    let msg
    try {
      msg = JSON.parse(line)
    } catch {
      return
    }
    if (msg.id === 0) return readyResolve(msg.result)
    const p = pending.get(msg.id)
    if (!p) return
    pending.delete(msg.id)
    if (msg.ok) p.resolve(msg.result)
    else p.reject(new Error(`${backend} worker ${child.pid} ${p.op}: ${msg.error}`))
  })
  let exited = false
  const exit = new Promise(res =>
    child.on("exit", (code, signal) => {
      exited = true
      const err = new Error(`${backend} worker ${child.pid} exited (${code ?? signal}); stderr: ${stderr.slice(-2000)}`)
      readyReject(err)
      for (const p of pending.values()) p.reject(err)
      pending.clear()
      res({ code, signal })
    })
  )
  await ready
  return {
    pid: child.pid,
    get stderr() {
      return stderr
    },
    call(op, args) {
      if (exited) return Promise.reject(new Error(`${backend} worker ${child.pid} has exited; stderr: ${stderr.slice(-2000)}`))
      const id = nextId++
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject, op })
        child.stdin.write(`${JSON.stringify({ id, op, args })}\n`)
      })
    },
    async stop() {
      if (!exited) {
        try {
          await Promise.race([this.call("exit", {}), exit])
        } catch {
          // already gone
        }
        const t = setTimeout(() => child.kill("SIGKILL"), 5000)
        await exit
        clearTimeout(t)
      }
      return exit
    },
  }
}

export async function startWorkers(n, backend, dir, opts) {
  return Promise.all(Array.from({ length: n }, () => startWorker(backend, dir, opts)))
}

export async function stopAll(workers) {
  await Promise.all(workers.map(w => w.stop()))
}

/**
 * Run `node ARGS` once: wall time (spawn to exit, ms) and the process's own peak RSS (KiB, from
 * process.resourceUsage() at exit, through a tiny --import preload).
 */
export function timeNode(args, { env = {}, cwd, rss = false, stdoutFile } = {}) {
  const rssFile = rss ? path.join(os.tmpdir(), `concord-bench-rss-${process.pid}-${Math.random().toString(36).slice(2)}`) : undefined
  const fullArgs = rss ? ["--import", pathToImport(RSS_PRELOAD), ...args] : args
  return new Promise((resolve, reject) => {
    // stdout to a file: what the command prints does not flow through a pipe (see scale.mjs)
    const outFd = stdoutFile ? openSync(stdoutFile, "w") : undefined
    const t0 = performance.now()
    const child = spawn(process.execPath, fullArgs, {
      cwd,
      env: { ...process.env, ...env, ...(rssFile ? { CONCORD_BENCH_RSS_FILE: rssFile } : {}) },
      stdio: ["ignore", outFd ?? "pipe", "pipe"],
    })
    if (outFd !== undefined) closeSync(outFd)
    let stdout = ""
    let stderr = ""
    child.stdout?.on("data", d => (stdout += d))
    child.stderr.on("data", d => (stderr += d))
    child.on("error", reject)
    child.on("close", (code, signal) => {
      const ms = performance.now() - t0
      if (stdoutFile) stdout = readFileSync(stdoutFile, "utf8")
      let maxRssKiB = null
      if (rssFile) {
        try {
          maxRssKiB = Number(readFileSync(rssFile, "utf8"))
          rmSync(rssFile, { force: true })
        } catch {
          // the process died before its exit hook
        }
      }
      resolve({ code, signal, ms, maxRssKiB, stdout, stderr })
    })
  })
}

function pathToImport(p) {
  return new URL(`file://${p}`).href
}

export function tempDir(prefix = "concord-bench-") {
  return mkdtempSync(path.join(os.tmpdir(), prefix))
}

export const sleep = ms => new Promise(r => setTimeout(r, ms))
