/** A cache file on a full disk (a small tmpfs): the error names the flag and the file, at start-up and when saving a block. */
import { afterAll, expect, test } from "bun:test";
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BINARY, cleanupDisks, isMounted, run, runAsync, sh, tempDir, waitFor } from "../helpers/disk.ts";

const dir = tempDir("flag-paths");
const at = (name: string) => join(dir, name);
const [blocks, mnt] = ["blocks", "mnt"].map(at) as [string, string];
mkdirSync(blocks);
mkdirSync(mnt);
afterAll(async () => {
  await cleanupDisks();
  rmSync(dir, { recursive: true, force: true });
});

const ok = ["--test", "--size=1M"];

test("a cache file on a full disk: the error names the flag and the file, at start-up and when saving a block", async () => {
  const full = at("full");
  mkdirSync(full);
  sh(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full]);
  try {
    // 100,000 slots (of a disk that has that many blocks) need a 4 MB directory, written at start-up.
    const cache = join(full, "cache");
    const r = run([BINARY, ...ok, "--size=1G", `--blockCacheFile=${cache}`, "--blockCacheSize=100000", blocks, mnt]);
    expect(r.stderr.trimEnd()).toBe(`s3backer: --blockCacheFile=${cache}: no space left on device`);
    expect(r.code).toBe(1);
    expect(isMounted(mnt)).toBe(false);
    expect(readdirSync(full)).toEqual([]); // the half-made file is not left behind

    // Room for the directory and a few blocks: the saves that find none are named in the log.
    const log = at("full.log");
    const pid = at("full.pid");
    const up = await runAsync([BINARY, ...ok, "--blockSize=64k", `--blockCacheFile=${cache}`, "--blockCacheSize=64", `--logFile=${log}`, `--pidFile=${pid}`, blocks, mnt]);
    expect(up.code).toBe(0);
    expect((await runAsync(["dd", "if=/dev/urandom", `of=${join(mnt, "file")}`, "bs=64k", "count=16", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
    expect(readFileSync(log, "utf8")).toContain(`saving block`);
    expect(readFileSync(log, "utf8")).toContain(`(--blockCacheFile=${cache}: no space left on device)`);
    sh(["umount", mnt]);
    await waitFor("s3backer to exit", () => !lstatExists(pid));
  } finally {
    if (isMounted(mnt)) run(["umount", "-l", mnt]);
    run(["umount", "-l", full]);
    rmSync(full, { recursive: true, force: true });
    for (const f of ["full.log", "full.pid"]) rmSync(at(f), { force: true });
  }
}, 60_000);

function lstatExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
