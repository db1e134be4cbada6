/**
 * A disk error turned into something a CLI can print: `cannot write /x/y: permission denied (EACCES)`.
 */

const DESCRIPTIONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  ENOTDIR: "not a directory",
  EISDIR: "is a directory",
  EROFS: "read-only file system",
  EEXIST: "file already exists",
  ENOENT: "no such file or directory",
  EMFILE: "too many open files",
  ENFILE: "too many open files in system",
  EIO: "input/output error",
  ENAMETOOLONG: "file name too long",
  ELOOP: "too many symbolic links",
  EBUSY: "resource busy",
  EXDEV: "cross-device rename",
  EINVAL: "invalid argument",
  ENOTEMPTY: "directory not empty",
}

export type StoreOperation = "read" | "write" | "remove" | "list" | "watch" | "create directory" | string

export class StoreError extends Error {
  /** errno code, e.g. "EACCES", "ENOSPC", "ENOTDIR", "EROFS" ("EUNKNOWN" if there was none) */
  readonly code: string
  /** the path the operation was about (the final file, not a temp file) */
  readonly path: string
  /** what was being done: "read", "write", "remove", "list", ... */
  readonly operation: StoreOperation

  constructor(operation: StoreOperation, path: string, code: string, detail?: string, cause?: unknown) {
    super(`cannot ${operation} ${path}: ${detail ?? DESCRIPTIONS[code] ?? code} (${code})`, { cause })
    this.name = "StoreError"
    this.code = code
    this.path = path
    this.operation = operation
  }

  /** Wrap any thrown value (normally a Node errno error) as a StoreError. */
  static from(operation: StoreOperation, path: string, err: unknown): StoreError {
    if (err instanceof StoreError) return err
    const e = err as NodeJS.ErrnoException | undefined
    const code = typeof e?.code === "string" ? e.code : "EUNKNOWN"
    const detail = DESCRIPTIONS[code] ?? (e?.message ? String(e.message) : String(err))
    const extra = e?.path && e.path !== path ? ` [at ${e.path}]` : ""
    return new StoreError(operation, path, code, detail + extra, err)
  }
}

export function errnoCode(err: unknown): string | undefined {
  const c = (err as NodeJS.ErrnoException | undefined)?.code
  return typeof c === "string" ? c : undefined
}

/**
 * The store's root directory does not exist (any more): deleted or moved away while a process used it.
 * Writers refuse instead of creating it again (see atomic.ts); the CLI prints the message, exit 1.
 */
export class StoreGoneError extends StoreError {
  /** the store's root directory */
  readonly store: string

  /** `consequence`: what it means for the caller, e.g. "the report was not stored" */
  constructor(store: string, consequence?: string) {
    super("write", store, "ENOENT")
    this.message = `store ${store} is gone: its directory does not exist (deleted or moved away?)${consequence ? `; ${consequence}` : ""}`
    this.name = "StoreGoneError"
    this.store = store
  }
}
