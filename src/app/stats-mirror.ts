/**
 * --statsFileMirror: the stats text written to a plain file every interval, for NBD mode (no
 * directory to hold a stats file) or for a monitor that should not read through FUSE. Deleting
 * the file resets the counters, as deleting the stats file does (noticed at the next interval).
 */
import { closeSync, existsSync, renameSync, writeSync } from "node:fs";
import { log } from "../log.ts";
import { messageOf } from "../errors.ts";
import { openWritableFile } from "../util/flag-paths.ts";

export class StatsMirror {
  private readonly timer: ReturnType<typeof setInterval>;
  private written = false;
  private failing = false;

  constructor(
    private readonly path: string,
    /** The flag as typed, for messages. */
    private readonly label: string,
    intervalMs: number,
    private readonly text: () => string,
    private readonly reset: () => void,
  ) {
    this.write();
    this.timer = setInterval(() => this.write(), intervalMs);
    this.timer.unref?.();
  }

  private write(): void {
    try {
      if (this.written && !existsSync(this.path)) this.reset();
      // Whole or not at all: a reader never sees half a file. The temporary file is made afresh,
      // never written through whatever is at its name.
      const temporary = `${this.path}.tmp`;
      const fd = openWritableFile(`${this.label} (its temporary file ${temporary})`, temporary, "new", 0o644)!;
      try {
        writeSync(fd, this.text());
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, this.path);
      this.written = true;
      this.failing = false;
    } catch (err) {
      if (!this.failing) log.warn(`${this.label}: ${messageOf(err)}`);
      this.failing = true;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.write();
  }
}
