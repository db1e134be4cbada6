// A full disk without a tmpfs (for machines where the tests may not mount one): loaded into a `concord`
// process with NODE_OPTIONS="--import=<this file>" and CONCORD_TEST_ENOSPC=<dir>, it makes every write of
// a file under <dir> fail as a full disk does: the file is created, part of the data lands, then the write
// throws ENOSPC. Reads, renames and deletes work as before.
import fs from "node:fs"
import { syncBuiltinESMExports } from "node:module"
import path from "node:path"

const root = process.env.CONCORD_TEST_ENOSPC ? path.resolve(process.env.CONCORD_TEST_ENOSPC) : undefined
// With CONCORD_TEST_ENOSPC_ARMED=<file>, the disk is full only while that file exists (a long-lived
// process sees its disk fill up and free up again).
const armedFile = process.env.CONCORD_TEST_ENOSPC_ARMED

function enospc(syscall) {
  return Object.assign(new Error(`ENOSPC: no space left on device, ${syscall}`), { code: "ENOSPC", errno: -28, syscall })
}

const inside = p => {
  if (!root || (armedFile && !fs.existsSync(armedFile))) return false
  const rel = path.relative(root, path.resolve(String(p)))
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel))
}

if (root) {
  const fsp = fs.promises
  const handles = new WeakSet()
  const open = fsp.open
  fsp.open = async function (file, flags, ...rest) {
    const fh = await open.call(this, file, flags, ...rest)
    if (inside(file) && /[wa+]/.test(String(flags ?? "r"))) handles.add(fh)
    return fh
  }
  const probe = await open(process.execPath, "r")
  const proto = Object.getPrototypeOf(probe)
  await probe.close()
  for (const name of ["writeFile", "write", "appendFile", "writev"]) {
    const orig = proto[name]
    if (typeof orig !== "function") continue
    proto[name] = async function (data, ...rest) {
      if (!handles.has(this)) return orig.call(this, data, ...rest)
      const bytes =
        typeof data === "string" ? Buffer.from(data) : ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : undefined
      if (bytes && bytes.length > 1) await orig.call(this, bytes.subarray(0, bytes.length >> 1))
      throw enospc("write")
    }
  }
  const writeFile = fsp.writeFile
  fsp.writeFile = async function (file, data, ...rest) {
    if (!inside(file)) return writeFile.call(this, file, data, ...rest)
    await writeFile.call(this, file, "")
    throw enospc("write")
  }
  // blocking calls too (a long-lived `concord mcp` writes its chunks with them): descriptors opened for
  // writing under <dir> take half the data, then fail
  const fds = new Set()
  const openSync = fs.openSync
  fs.openSync = function (file, flags, ...rest) {
    const fd = openSync.call(this, file, flags, ...rest)
    if (inside(file) && /[wa+]/.test(String(flags ?? "r"))) fds.add(fd)
    return fd
  }
  const closeSync = fs.closeSync
  fs.closeSync = function (fd, ...rest) {
    fds.delete(fd)
    return closeSync.call(this, fd, ...rest)
  }
  const writeSync = fs.writeSync
  const halfThenFull = (fd, data) => {
    const bytes = typeof data === "string" ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength)
    if (bytes.length > 1) writeSync.call(fs, fd, bytes.subarray(0, bytes.length >> 1))
    throw enospc("write")
  }
  fs.writeSync = function (fd, data, ...rest) {
    if (!fds.has(fd)) return writeSync.call(this, fd, data, ...rest)
    return halfThenFull(fd, data)
  }
  const writeFileSync = fs.writeFileSync
  fs.writeFileSync = function (file, data, ...rest) {
    if (typeof file === "number") return fds.has(file) ? halfThenFull(file, data) : writeFileSync.call(this, file, data, ...rest)
    if (typeof file !== "string" || !inside(file)) return writeFileSync.call(this, file, data, ...rest)
    writeFileSync.call(this, file, "")
    throw enospc("write")
  }
  // `import { writeFileSync } from "node:fs"` sees the replacements
  syncBuiltinESMExports()
}
