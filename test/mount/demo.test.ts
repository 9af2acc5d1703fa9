/** The README's quick start: `npm run demo` runs the main job from start to end and cleans up. */
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { run } from "../helpers/disk.ts";

test("the demo mounts a disk in the bundled S3 server, verifies every file, and leaves nothing behind", () => {
  const before = readdirSync(tmpdir()).filter((n) => n.startsWith("s3backer-demo-"));
  const r = run(["node_modules/.bin/bun", "scripts/demo.ts"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(r.stdout).toContain("e2fsck -fn: clean");
  expect(r.stdout).toMatch(/(\d+) of \1 files match their checksums/);
  expect(r.stdout).toContain("Done: everything verified and cleaned up.");
  // After 32 MiB of files the bucket holds some blocks, never all: zero blocks are not stored.
  const [, stored, blocks] = /objects in the bucket: (\d+) of (\d+) blocks/.exec(r.stdout) ?? [];
  expect(Number(stored)).toBeGreaterThan(0);
  expect(Number(stored)).toBeLessThan(Number(blocks));
  const after = readdirSync(tmpdir()).filter((n) => n.startsWith("s3backer-demo-"));
  expect(after).toEqual(before);
  expect(readFileSync("/proc/self/mountinfo", "utf8")).not.toContain("s3backer-demo-");
  expect(run(["losetup", "-a"]).stdout).not.toContain("s3backer-demo-");
});
