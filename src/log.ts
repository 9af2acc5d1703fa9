/**
 * Logging: to stderr in the foreground, to a file or the system log in the background. One line
 * per message, as text or (--logFormat=json) as one JSON object.
 */
import { closeSync, constants, openSync, writeSync } from "node:fs";
import { runtime } from "./runtime/index.ts";

export type Level = "error" | "warn" | "info" | "debug";
const SYSLOG_PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6, debug: 7 };

export type Sink = { kind: "stderr" } | { kind: "file"; path: string } | { kind: "syslog" };

export class Logger {
  private json = false;
  private fileFailing = false;

  constructor(
    private sink: Sink = { kind: "stderr" },
    private debugEnabled = false,
  ) {}

  configure(sink: Sink, debug: boolean, format: "text" | "json" = this.json ? "json" : "text"): void {
    this.sink = sink;
    this.debugEnabled = debug;
    this.json = format === "json";
  }

  error(message: string): void {
    this.write("error", message);
  }
  warn(message: string): void {
    this.write("warn", message);
  }
  info(message: string): void {
    this.write("info", message);
  }
  debug(message: string): void {
    if (this.debugEnabled) this.write("debug", message);
  }

  private write(level: Level, message: string): void {
    if (this.sink.kind === "syslog") return runtime.libc.syslog(SYSLOG_PRIORITY[level], message);
    const time = new Date().toISOString();
    const line = this.json
      ? `${JSON.stringify({ time, level, pid: process.pid, msg: message })}\n`
      : `${time} s3backer[${process.pid}] ${level.toUpperCase()}: ${message}\n`;
    if (this.sink.kind === "file") this.toFile(this.sink.path, level, line, message);
    else process.stderr.write(line);
  }

  /**
   * A log line must never fail what it reports on: one the file cannot take (a full disk, the file
   * gone with its directory) goes to the system log instead, after a line there saying why.
   */
  private toFile(path: string, level: Level, line: string, message: string): void {
    try {
      // A new log file is its owner's alone (it names buckets, paths and errors). Opened by name at
      // each line, so that a rotated log is taken up; never through a link planted there since.
      // The mode is open(2)'s, for a file it creates: Deno's appendFileSync would chmod any file
      // it appends to (a /dev/null given as the log went 0600 and broke every other user).
      const fd = openSync(path, APPEND_NO_LINK, 0o600);
      try {
        writeSync(fd, line);
      } finally {
        closeSync(fd);
      }
      this.fileFailing = false;
    } catch (err) {
      if (!this.fileFailing) runtime.libc.syslog(SYSLOG_PRIORITY.error, `cannot write the log file ${path} (${(err as Error).message}): logging here until it can`);
      this.fileFailing = true;
      runtime.libc.syslog(SYSLOG_PRIORITY[level], message);
    }
  }
}

const APPEND_NO_LINK = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW;

export const log = new Logger();
