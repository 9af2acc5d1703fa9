/** The log file sink: what it creates is its owner's alone, and it never changes a file that exists. */
import { expect, test } from "bun:test";
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Logger } from "../../src/log.ts";
import { tempDir } from "../helpers/data.ts";

const modeOf = (path: string) => statSync(path).mode & 0o777;

test("a new log file is made 0600; one that exists keeps its mode and gets the lines appended", () => {
  const dir = tempDir("log-file");
  try {
    const fresh = join(dir, "new.log");
    new Logger({ kind: "file", path: fresh }).info("first");
    expect(modeOf(fresh)).toBe(0o600);
    expect(readFileSync(fresh, "utf8")).toMatch(/ INFO: first\n$/);

    // Someone's file given as the log (or /dev/null): appended to, its mode never narrowed.
    const theirs = join(dir, "theirs.log");
    writeFileSync(theirs, "kept\n");
    chmodSync(theirs, 0o644);
    const logger = new Logger({ kind: "file", path: theirs });
    logger.warn("one");
    logger.error("two");
    expect(modeOf(theirs)).toBe(0o644);
    expect(readFileSync(theirs, "utf8")).toMatch(/^kept\n.* WARN: one\n.* ERROR: two\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
