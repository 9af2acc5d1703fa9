/**
 * The files a mount writes beside its work, --logFile and --pidFile: each is opened before anything
 * is mounted or the mounted flag is set, so that one that cannot be written is a one-line error
 * naming its flag, with nothing left behind. What a path flag may name is decided in
 * util/flag-paths.ts, which opens them.
 */
import { closeSync, ftruncateSync, rmSync, writeSync } from "node:fs";
import { openWritableFile } from "../util/flag-paths.ts";

/** Checks that the log file can be appended to (creating it, 0600, if it is new). `typed`: the flag as the user gave it. */
export function checkLogFile(typed: string, path: string): void {
  closeSync(openWritableFile(typed, path, "append")!);
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

  static open(typed: string, path: string): PidFile {
    const existing = openWritableFile(typed, path, "update");
    if (existing !== undefined) return new PidFile(path, existing, false);
    return new PidFile(path, openWritableFile(typed, path, "append", 0o644)!, true);
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
