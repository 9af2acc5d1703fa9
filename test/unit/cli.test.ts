/** The command line parsed: values as typed, on/off flags, and the original's defaults. */
import { expect, test } from "bun:test";
import { parseArgs } from "../../src/cli/parse.ts";
import { buildConfig } from "../../src/config/build-config.ts";
import { resolveGeometry } from "../../src/config/geometry.ts";

const [blocks, mnt] = ["blocks", "mnt"];
const ok = ["--test", "--size=1M", blocks, mnt];

test("values keep their exact text (no number conversion), and -o carries flags and mount options", () => {
  const c = buildConfig(
    parseArgs(["--test", "--prefix=007", "-o", "size=64k,blockSize=4k,allow_other,uid=1000,noexec,fileMode=644", blocks, mnt]),
    { uid: 0, gid: 0 },
  );
  expect(c.prefix).toBe("007");
  expect(c.fileSize).toBe(65536);
  expect(c.blockSize).toBe(4096);
  expect(c.fileMode).toBe(0o644);
  expect(c.fuse.allowOther).toBe(true);
  expect(c.fuse.uid).toBe(1000);
  expect(c.fuse.mountFlags).toEqual(["nodev", "nosuid", "noexec"]);
});

test("on/off flags never swallow the next word, whatever their spelling", () => {
  for (const flag of ["--reset-mounted-flag", "--debug-http", "--readOnly", "-f", "--foreground"]) {
    const args = parseArgs([flag, "bucket", "mnt"]);
    expect(args.positionals).toEqual(["bucket", "mnt"]);
  }
});

test("defaults follow the original: 4k blocks, 'file' and 'stats', mode 0600 (0400 read-only)", () => {
  const c = buildConfig(parseArgs(ok), { uid: 5, gid: 6 });
  expect([c.filename, c.statsFilename, c.fileMode, c.readOnly]).toEqual(["file", "stats", 0o600, false]);
  expect(resolveGeometry(c, undefined, false)).toEqual({ blockSize: 4096, fileSize: 2 ** 20, numBlocks: 256 });
  expect([c.fuse.uid, c.fuse.gid, c.foreground]).toEqual([5, 6, false]);
  const ro = buildConfig(parseArgs(["--readOnly", "-d", ...ok]), { uid: 0, gid: 0 });
  expect([ro.fileMode, ro.readOnly, ro.foreground, ro.debug]).toEqual([0o400, true, true, true]);
  const bg = buildConfig(parseArgs(["--debug", ...ok]), { uid: 0, gid: 0 });
  expect([bg.foreground, bg.debug]).toEqual([false, true]);
  expect(ro.fuse.mountFlags).toContain("ro");
});
