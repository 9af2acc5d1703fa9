/**
 * The mounted flag against a server that loses answers: a PUT it stored whose answer never came
 * back, and a crash while the flag is being set. Both must leave the disk mountable and any
 * unsaved blocks of a cache file recoverable.
 */
import { expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BINARY, isMounted, killHard, mountWith, pattern, runAsync, waitFor } from "../helpers/disk.ts";
import { freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, peer, workDir } = embeddedSuite();

const FLAG = /s3backer-mounted$/;
const tokenOf = async (bucket: string) => (await rawClient(peer)("HEAD", `${bucket}/s3backer-mounted`)).headers.get("x-amz-meta-s3backer-mount-token");

test("a flag PUT stored but whose answer was lost: the retry's 412 is recognised as our own flag", async () => {
  const bucket = await freshBucket(peer, "lost");
  const dir = workDir("lost");
  server.setFaults({ keyPattern: FLAG, lostPutAnswers: 1 });
  const disk = await mountWith([...peerArgs(peer), "--size=1M", "--timeout=1", "--initialRetryPause=50", bucket], dir, true);
  expect(server.counters.droppedConnections).toBe(1);
  expect(server.counters.conditionalFailures).toBeGreaterThan(0); // the retry met the flag it had stored
  await disk.unmount();
  expect((await rawClient(peer)("GET", `${bucket}/s3backer-mounted`)).status).toBe(404);
  const again = await mountWith([...peerArgs(peer), bucket], join(dir, "again"), true);
  await again.unmount();
});

test("a crash while the flag is being set leaves the cache file's unsaved blocks recoverable", async () => {
  const bucket = await freshBucket(peer, "startcrash");
  const dir = workDir("startcrash");
  const cache = join(dir, "cache");
  const args = [...peerArgs(peer), "--blockSize=64k", "--size=4M", `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=600000", "--timeout=1", "--initialRetryPause=5000"];
  const data = pattern(65536, 71);
  const source = join(dir, "data");
  await Bun.write(source, data);

  // A first crash leaves block 3 unsaved in the cache file.
  const first = await mountWith([...args, bucket], join(dir, "a"), true);
  const writer = Bun.spawn(["python3", "-c", `import os,sys,time\nfd=os.open(sys.argv[1],os.O_WRONLY)\nos.pwrite(fd,open(sys.argv[2],"rb").read(),3*65536)\nprint("written",flush=True)\ntime.sleep(60)`, first.file, source], { stdout: "pipe" });
  const reader = writer.stdout.getReader();
  await reader.read(); // "written": in the cache only (no fsync, no close)
  // Saved to the cache file in the background: the kill must come after, or there is nothing to recover.
  await waitFor("block 3 in the cache file", async () => /blocks not yet in the file\s+0\n/.test(await readFile(first.stats, "utf8")));
  await killHard(first.pid);
  writer.kill();
  await runAsync(["umount", "-l", first.mnt]);
  const crashed = await tokenOf(bucket);

  // The recovering mount stores its new flag, waits for an answer that never comes, and is killed.
  server.setFaults({ keyPattern: FLAG, lostPutAnswers: 1 });
  const mnt = join(dir, "b");
  await runAsync(["mkdir", "-p", mnt]);
  const second = Bun.spawn([BINARY, "-f", ...args, "--blockCacheRecoverDirtyBlocks", bucket, mnt], { stdout: "ignore", stderr: "pipe" });
  try {
    await waitFor("the new flag", () => server.counters.droppedConnections === 1);
    expect(await tokenOf(bucket)).not.toBe(crashed);
  } finally {
    await killHard(second.pid);
    if (isMounted(mnt)) await runAsync(["umount", "-l", mnt]);
  }
  server.reset();

  const third = await mountWith([...args, "--blockCacheRecoverDirtyBlocks", bucket], join(dir, "c"), true);
  expect(new Uint8Array(await readFile(third.file)).subarray(3 * 65536, 4 * 65536)).toEqual(data);
  await third.unmount();
});

test("servers that refuse or ignore If-None-Match: the mount goes ahead with a warning; a 409 is another mount", async () => {
  const dir = workDir("odd");
  for (const [mode, warning] of [["refuse", /does not support conditional PUT/], ["ignore", /ignores If-None-Match/]] as const) {
    const bucket = await freshBucket(peer, mode);
    server.setFaults({ conditionalPut: mode });
    const disk = await mountWith([...peerArgs(peer), "--size=1M", bucket], join(dir, mode), true);
    expect(disk.startup).toMatch(warning);
    expect(disk.startup).toMatch(/not kept apart/);
    expect(await tokenOf(bucket)).toMatch(/^[0-9a-f]{8}$/);
    await disk.unmount();
    // Where conditional PUT works, the probe finds the flag set and nothing is said.
    server.reset();
    const quiet = await mountWith([...peerArgs(peer), bucket], join(dir, `${mode}-ok`), true);
    expect(quiet.startup).not.toMatch(/If-None-Match|conditional/);
    await quiet.unmount();
  }
  const bucket = await freshBucket(peer, "conflict");
  server.setFaults({ conditionalPut: "conflict" });
  const mnt = join(dir, "conflict");
  mkdirSync(mnt);
  const r = await runAsync([BINARY, ...peerArgs(peer), "--size=1M", bucket, mnt]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/looks mounted elsewhere .*another mount setting the flag at this moment/);
});

test("--sharedDiskMode: shared mounts side by side see each other's writes; a normal mount is kept out, and they out of it", async () => {
  const bucket = await freshBucket(peer, "shared");
  const dir = workDir("shared");
  const args = [...peerArgs(peer), "--blockSize=4k", "--size=1M", "--sharedDiskMode"];
  const a = await mountWith([...args, bucket], join(dir, "a"), true);
  const b = await mountWith([...args, bucket], join(dir, "b"), true);
  expect(await tokenOf(bucket)).toBe("7fffffff");
  const data = pattern(8192, 5);
  const source = join(dir, "data");
  await Bun.write(source, data);
  expect((await runAsync(["dd", `if=${source}`, `of=${a.file}`, "bs=8192", "conv=notrunc", "status=none"])).code).toBe(0);
  // No cache anywhere (the file is opened for direct I/O): b reads what a wrote, at once.
  const copy = join(dir, "copy");
  expect((await runAsync(["dd", `if=${b.file}`, `of=${copy}`, "bs=8192", "count=1", "status=none"])).code).toBe(0);
  expect(new Uint8Array(await readFile(copy))).toEqual(data);
  mkdirSync(join(dir, "n"));
  mkdirSync(join(dir, "s2"));
  const normal = await runAsync([BINARY, ...peerArgs(peer), "--size=1M", bucket, join(dir, "n")]);
  expect(normal.code).toBe(1);
  expect(normal.stderr).toMatch(/mounted in shared disk mode.*--sharedDiskMode/);
  await a.unmount();
  await b.unmount();
  expect(await tokenOf(bucket)).toBe("7fffffff"); // left for the other shared mounts, as the original does

  const other = await freshBucket(peer, "notshared");
  const n = await mountWith([...peerArgs(peer), "--size=1M", other], join(dir, "n2"), true);
  const refused = await runAsync([BINARY, ...args, other, join(dir, "s2")]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/looks mounted elsewhere/);
  await n.unmount();
});
