// Child process for the multi-process DocStore tests. Run with: node --import tsx docstore-worker.mjs <mode> ...
// Imports the TypeScript sources directly (tsx), so no build is needed.
import * as A from "@automerge/automerge"
import { createInterface } from "node:readline"

const { DocStore } = await import(new URL("../../../src/sync/store/DocStore.ts", import.meta.url).href)
const [mode, dir, docId, ...rest] = process.argv.slice(2)
const now = () => performance.timeOrigin + performance.now()
const warnings = []
const store = new DocStore(dir, {
  onWarning: m => {
    warnings.push(m)
    process.stderr.write(`warning: ${m}\n`)
  },
})

async function write(mutate) {
  let doc = (await store.load(docId)) ?? A.init()
  doc = A.change(doc, mutate)
  await store.save(docId, doc)
}

if (mode === "writer") {
  // set this process's own key `count` times: load -> change -> save each time
  const [name, count] = [rest[0], Number(rest[1])]
  for (let i = 0; i < count; i++) {
    await write(d => {
      if (!d[name]) d[name] = {}
      d[name][String(i)] = true
    })
  }
  process.stdout.write(`done ${warnings.length}\n`)
} else if (mode === "crash") {
  // save forever, acknowledging each write once save() resolved
  const run = rest[0]
  for (let i = 0; ; i++) {
    await write(d => {
      d[`${run}:${i}`] = i
      d.filler = (d.filler ?? 0) + 1
    })
    process.stdout.write(`ack ${run}:${i}\n`)
  }
} else if (mode === "serve") {
  // one write per stdin line "write <n>", answered by "saved <n> <timestamp ms>"
  process.stdout.write("ready\n")
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, n] = line.trim().split(" ")
    if (cmd === "write") {
      await write(d => {
        d[`w${n}`] = Number(n)
      })
      process.stdout.write(`saved ${n} ${now()}\n`)
    } else if (cmd === "exit") break
  }
  process.exit(0)
} else {
  throw new Error(`unknown mode ${mode}`)
}
