/**
 * The files a mount writes beside its work, --logFile and --pidFile: each is opened before anything
 * is mounted or the mounted flag is set, so that one that cannot be written is a one-line error
 * naming its flag, with nothing left behind. (Which paths a flag may name is checked with the
 * other flags, in src/config/.)
 */
import { appendFileSync, closeSync, ftruncateSync, openSync, rmSync, writeSync } from "node:fs";
import { ConfigError } from "../errors.ts";

/** Checks that the log file can be appended to (creating it, 0600, if it is new). */
export function checkLogFile(path: string): void {
  try {
    appendFileSync(path, "", { mode: 0o600 });
  } catch (err) {
    throw cannotWrite("logFile", path, err);
  }
}

/**
 * The pid file, opened at start (created 0644 if new, for anyone to signal or watch, but an existing
 * one left as it is), written once the mount is up, removed at exit or when the mount fails.
 */
export class PidFile {
  private written = false;

  private constructor(
    private readonly path: string,
    private fd: number | undefined,
    private readonly created: boolean,
  ) {}

  static open(path: string): PidFile {
    try {
      return new PidFile(path, openSync(path, "wx", 0o644), true);
    } catch (err) {
      if ((err as { code?: string }).code !== "EEXIST") throw cannotWrite("pidFile", path, err);
    }
    try {
      return new PidFile(path, openSync(path, "r+"), false);
    } catch (err) {
      throw cannotWrite("pidFile", path, err);
    }
  }

  /** Writes this process's ID (the file was opened at start: a failure now, say a full disk, is for the caller to log). */
  write(): void {
    const fd = this.fd!;
    this.written = true;
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    this.close();
  }

  /** At exit: the file goes if it is ours (this mount wrote or created it); one found there and never written stays as it was. */
  remove(): void {
    this.close();
    if (this.written || this.created) rmSync(this.path, { force: true });
  }

  private close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The error for a file a flag names that cannot be opened for writing: the flag as typed, and why in words. */
function cannotWrite(flag: string, path: string, err: unknown): ConfigError {
  const code = (err as { code?: string }).code;
  const why = code === undefined ? String(err) : (REASONS[code] ?? (err as Error).message);
  return new ConfigError(`--${flag}=${path}: cannot be written: ${why}`);
}

const REASONS: Record<string, string> = {
  EISDIR: "it is a directory",
  ENOENT: "its directory does not exist",
  ENOTDIR: "a part of its path is not a directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "the file system is read-only",
  ENOSPC: "no space left on the device",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "the name is too long",
  ETXTBSY: "it is a running program",
};
