/**
 * The error types of the program.
 *
 * `FsError` carries an errno from wherever a store fails up to the FUSE reply; `UsageError` and
 * `ConfigError` end the program with one line on stderr and exit codes 2 and 1.
 */

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENOSYS: 38,
  ENODATA: 61,
  EPROTO: 71,
  EOPNOTSUPP: 95,
  ENETUNREACH: 101,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EHOSTUNREACH: 113,
} as const;

/** A filesystem-level failure with the errno the kernel should see. */
export class FsError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
    this.name = "FsError";
  }
}

/**
 * EIO because the bytes themselves were refused (a checksum, signature or decoding failed), not
 * because storage could not be reached: what a scrub reports as damage.
 */
export class DataError extends FsError {
  constructor(message: string) {
    super(Errno.EIO, message);
    this.name = "DataError";
  }
}

/** Bad command line: exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** Valid syntax but an impossible or unsafe configuration, or a failure to start: exit code 1. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/** The errno for any thrown value: FsError keeps its own, Node-style errors map their code, the rest is EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code in Errno) return Errno[code as keyof typeof Errno];
  return Errno.EIO;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
