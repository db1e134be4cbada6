/** SIGINT / SIGTERM abort a long-running command cleanly. Returns a function that stops listening. */
export function waitForStopSignal(ac: AbortController): () => void {
  const stop = () => ac.abort()
  process.once("SIGINT", stop)
  process.once("SIGTERM", stop)
  return () => {
    process.off("SIGINT", stop)
    process.off("SIGTERM", stop)
  }
}
