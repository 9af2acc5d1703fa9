/**
 * The consistency guard through FUSE against a server that lies on purpose: after each PUT or
 * DELETE it keeps serving the previous version (or 404) for 300 ms.
 */
import { afterAll, afterEach, beforeEach, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { mkdirSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { cleanupDisks, isMounted, mountWith, pattern, runAsync, tempDir } from "../helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../helpers/s3.ts";

const server = startEmbedded();
beforeEach(() => {
  server.reset();
  server.setFaults({ staleMs: 300 });
});
afterEach(() => server.reset());
afterAll(() => server.stop());

test("through FUSE: ext4 written and read back while the server lies: checksums equal, e2fsck clean", async () => {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "ec-ext4");
  const dir = tempDir("ec-ext4");
  const fs = join(dir, "fs");
  mkdirSync(fs);
  let loop = "";
  try {
    // A tiny block cache, so that most reads go to the lying server.
    const disk = await mountWith([...peerArgs(peer), "--size=32M", "--blockSize=64k", "--blockCacheSize=4", "--minWriteDelay=50", "--md5CacheTime=5000", "--initialRetryPause=20", bucket], dir, true);
    loop = (await runAsync(["losetup", "-f", "--show", disk.file])).stdout.trim();
    expect((await runAsync(["mkfs.ext4", "-q", "-F", loop])).code).toBe(0);
    expect((await runAsync(["mount", loop, fs])).code).toBe(0);
    const files = Array.from({ length: 6 }, (_, i) => pattern(700_000 + i * 10_000, 500 + i));
    for (const [i, data] of files.entries()) await writeFile(join(fs, `f${i}`), data);
    await runAsync(["umount", fs]);
    await runAsync(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"]);
    const fsck = await runAsync(["e2fsck", "-fn", loop]);
    expect(fsck.code).toBe(0);
    expect((await runAsync(["mount", "-o", "ro", loop, fs])).code).toBe(0);
    for (const [i, data] of files.entries()) {
      const back = await readFile(join(fs, `f${i}`));
      expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
    }
    await runAsync(["umount", fs]);
    await runAsync(["losetup", "-d", loop]);
    loop = "";
    expect(server.counters.staleAnswers).toBeGreaterThan(0);
    expect(await readFile(disk.stats, "utf8")).toMatch(/stale answers\s+[1-9]/);
    await disk.unmount();
  } finally {
    if (isMounted(fs)) await runAsync(["umount", fs]);
    if (loop) await runAsync(["losetup", "-d", loop]);
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("through FUSE: a server stale for longer than --md5CacheTime: O_DIRECT reads get EIO, never the old bytes, then the new ones", async () => {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "ec-long");
  const dir = tempDir("ec-long");
  const BLOCK = 65536;
  try {
    server.setFaults({ staleMs: 0 });
    const disk = await mountWith([...peerArgs(peer), "--size=4M", "--blockSize=64k", "--blockCacheSize=0", "--minWriteDelay=50", "--md5CacheTime=2000", "--initialRetryPause=50", "--maxRetryPause=4000", bucket], dir, true);
    const [a, b] = [join(dir, "a"), join(dir, "b")];
    await writeFile(a, new Uint8Array(8 * BLOCK).fill(0x41));
    await writeFile(b, new Uint8Array(8 * BLOCK).fill(0x42));
    const write = (from: string) => runAsync(["dd", `if=${from}`, `of=${disk.file}`, "bs=64k", "seek=1", "count=8", "oflag=direct", "conv=fsync,notrunc"]);
    expect((await write(a)).code).toBe(0);
    server.setFaults({ staleMs: 60_000 });
    expect((await write(b)).code).toBe(0);
    // The read: the 8 blocks in one O_DIRECT request, so all 8 block reads start together.
    const read = async () => {
      const out = join(dir, "out");
      const r = await runAsync(["dd", `if=${disk.file}`, `of=${out}`, "bs=512k", "count=1", "skip=65536", "iflag=direct,skip_bytes"]);
      return { code: r.code, stderr: r.stderr, data: await readFile(out) };
    };
    const stale = await read();
    expect(stale.data.includes(0x41)).toBe(false); // never A
    expect(stale.code).not.toBe(0);
    expect(stale.stderr).toMatch(/Input\/output error/);
    expect(server.counters.staleAnswers).toBeGreaterThan(0);
    server.reset(); // the server catches up
    const fresh = await read();
    expect(fresh.code).toBe(0);
    expect(fresh.data).toEqual(Buffer.alloc(8 * BLOCK, 0x42));
    await disk.unmount();
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});
