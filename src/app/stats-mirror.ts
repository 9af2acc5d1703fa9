/**
 * --statsFileMirror: the stats text written to a plain file every interval, for NBD mode (no
 * directory to hold a stats file) or for a monitor that should not read through FUSE. Deleting
 * the file resets the counters, as deleting the stats file does (noticed at the next interval).
 */
import { existsSync, renameSync, writeFileSync } from "node:fs";
import { log } from "../log.ts";
import { messageOf } from "../errors.ts";

export class StatsMirror {
  private readonly timer: ReturnType<typeof setInterval>;
  private written = false;
  private failing = false;

  constructor(
    private readonly path: string,
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
      // Whole or not at all: a reader never sees half a file.
      const temporary = `${this.path}.tmp`;
      writeFileSync(temporary, this.text(), { mode: 0o644 });
      renameSync(temporary, this.path);
      this.written = true;
      this.failing = false;
    } catch (err) {
      if (!this.failing) log.warn(`--statsFileMirror=${this.path}: ${messageOf(err)}`);
      this.failing = true;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.write();
  }
}
