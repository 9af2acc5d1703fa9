/**
 * Deletes go out as DeleteObjects requests of up to 1000 keys: fstrim of an ext4 on the disk and
 * --erase cost about one request per thousand blocks, and a server without DeleteObjects gets
 * single DELETEs instead, with one warning.
 */
import { expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BINARY, isMounted, mountWith, pattern, runAsync } from "../helpers/disk.ts";
import { freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";
import { FaultProxy } from "../helpers/fault-proxy.ts";

const { server, peer, workDir: work } = embeddedSuite();
const blocksIn = async (bucket: string) => {
  let n = 0;
  let after = "";
  for (;;) {
    const xml = new TextDecoder().decode((await rawClient(peer)("GET", `${bucket}?list-type=2&max-keys=1000&start-after=${after}`)).body);
    const keys = [...xml.matchAll(/<Key>([0-9a-f]{8})<\/Key>/g)].map((m) => m[1]!);
    n += keys.length;
    if (!xml.includes("<IsTruncated>true")) return n;
    after = keys[keys.length - 1]!;
  }
};

test("fstrim after deleting 40 MB of files on ext4: the freed 4k blocks go in DeleteObjects requests of up to 1000", async () => {
  const bucket = await freshBucket(peer, "fstrim");
  const dir = work("fstrim");
  const disk = await mountWith([...peerArgs(peer), "--size=64M", "--blockSize=4k", bucket], dir, true);
  const loop = (await runAsync(["losetup", "-f", "--show", "--direct-io=on", disk.file])).stdout.trim();
  const fs = join(dir, "fs");
  mkdirSync(fs);
  try {
    expect((await runAsync(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", loop])).code).toBe(0);
    expect((await runAsync(["mount", loop, fs])).code).toBe(0);
    for (let i = 0; i < 4; i++) await writeFile(join(fs, `f${i}`), pattern(10 << 20, 40 + i));
    await runAsync(["sync"]);
    await runAsync(["sh", "-c", `sync -f ${fs}/f0; echo 3 > /proc/sys/vm/drop_caches`]);
    for (let i = 0; i < 4; i++) await rm(join(fs, `f${i}`));
    await runAsync(["sync"]);
    server.counters.reset();
    expect((await runAsync(["fstrim", fs])).code).toBe(0);
    await runAsync(["umount", fs]);
    await runAsync(["losetup", "-d", loop]);
    await disk.unmount(); // every dirty (deleted) block is stored by now
    const { BULK_DELETE: bulk, DELETE: single } = server.counters.requests;
    const freed = server.counters.bulkDeletedKeys;
    console.log(`fstrim: ${freed} blocks freed in ${bulk} DeleteObjects requests and ${single} single DELETEs`);
    expect(freed).toBeGreaterThan(10_000); // 40 MB of 4k blocks
    // Batches are cut short by the block cache's size (1000 blocks by default): 2.5 to 3 per 1000
    // here, depending on timing; one per block is what this guards against.
    expect(bulk).toBeLessThanOrEqual(Math.ceil(freed / 1000) * 5);
    expect(single).toBeLessThan(50);
  } finally {
    if (isMounted(fs)) await runAsync(["umount", fs]);
    await runAsync(["losetup", "-d", loop]);
  }
});

test("--erase of 3000 blocks: 3 DeleteObjects requests; a server without DeleteObjects gets single DELETEs and one warning", async () => {
  for (const bulk of [true, false]) {
    const bucket = await freshBucket(peer, `erase${bulk}`);
    const dir = work("erase");
    const disk = await mountWith([...peerArgs(peer), "--size=16M", "--blockSize=4k", bucket], dir, true);
    expect((await runAsync(["dd", "if=/dev/urandom", `of=${disk.file}`, "bs=4k", "count=3000", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
    await disk.unmount();
    expect(await blocksIn(bucket)).toBe(3000);
    server.counters.reset();
    server.setFaults({ deleteObjects: bulk });
    const r = await runAsync([BINARY, ...peerArgs(peer), "--erase", "--force", "--quiet", bucket]);
    expect(r.code).toBe(0);
    expect(await blocksIn(bucket)).toBe(0);
    if (bulk) {
      expect(server.counters.requests.BULK_DELETE).toBe(3);
      expect(server.counters.requests.DELETE).toBeLessThanOrEqual(1); // the mounted flag
    } else {
      expect(server.counters.requests.DELETE).toBeGreaterThanOrEqual(3000);
      expect(r.stderr.match(/does not take DeleteObjects/g)?.length).toBe(1);
    }
    server.reset();
  }
});

test("a punched hole with no block cache: its blocks go in one DeleteObjects request", async () => {
  const bucket = await freshBucket(peer, "partial");
  const dir = work("partial");
  const disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockSize=4k", "--blockCacheSize=0", bucket], dir, true);
  expect((await runAsync(["dd", "if=/dev/urandom", `of=${disk.file}`, "bs=4k", "count=40", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  const before = await blocksIn(bucket);
  server.counters.reset();
  expect((await runAsync(["fallocate", "--punch-hole", "--offset=0", "--length=163840", disk.file])).code).toBe(0);
  expect(await blocksIn(bucket)).toBe(before - 39); // block 0 stays: it keeps the disk's sizes
  expect(server.counters.requests.BULK_DELETE).toBe(1);
  expect(server.counters.requests.DELETE).toBe(0);
  await disk.unmount();
  expect(await readFile(join(dir, "log"), "utf8")).not.toMatch(/DeleteObjects/);
});

test("DeleteObjects answers that fail some keys, or break off: every key is deleted in the end, none stays behind silently", async () => {
  const proxy = await FaultProxy.start({ upstream: peer.url, credentials: { accessKey: peer.accessKey, secretKey: peer.secretKey } });
  try {
    for (const faults of [{ deleteErrors: 0.3 }, { deleteErrors: 0.3, wrongLength: 1, limit: 4, keyPattern: undefined, targetPattern: /\?delete/ }]) {
      const bucket = await freshBucket(peer, "perkey");
      const disk = await mountWith([...peerArgs(peer), "--size=16M", "--blockSize=4k", bucket], work("perkey"), true);
      expect((await runAsync(["dd", "if=/dev/urandom", `of=${disk.file}`, "bs=4k", "count=2500", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
      await disk.unmount();
      expect(await blocksIn(bucket)).toBe(2500);
      proxy.reset();
      proxy.set({ keyPattern: /^[0-9a-f]{8}$/, ...faults });
      const r = await runAsync([BINARY, ...peerArgs({ ...peer, url: proxy.url }), "--erase", "--force", "--quiet", bucket]);
      const fired = { ...proxy.fired };
      proxy.reset();
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
      expect(await blocksIn(bucket)).toBe(0);
      expect(fired.deleteErrors).toBeGreaterThan(100);
      if (faults.wrongLength) expect(fired.wrongLength).toBeGreaterThan(0);
    }
  } finally {
    await proxy.stop();
  }
});
