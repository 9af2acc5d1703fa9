/**
 * The consistency guard against a server that lies on purpose: after each PUT or DELETE it keeps
 * serving the previous version (or 404) for 300 ms.
 */
import { afterAll, afterEach, beforeEach, expect, test } from "bun:test";
import { readFile, writeFile } from "node:fs/promises";
import { mkdirSync, rmSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { Logger } from "../src/log.ts";
import { isAllZero, type BlockStore } from "../src/store/block-store.ts";
import { ConsistencyGuard, type ConsistencyGuardOptions } from "../src/store/consistency-guard/consistency-guard.ts";
import { S3Client } from "../src/object/s3/s3-client.ts";
import { S3Store } from "../src/object/s3/s3-store.ts";
import { cleanupDisks, isMounted, mountWith, pattern, runAsync, tempDir } from "./helpers/disk.ts";
import { ACCESS, SECRET, embeddedPeer, freshBucket, peerArgs, startEmbedded } from "./helpers/s3.ts";
import { plainCodec, statOf } from "./helpers/stores.ts";
import { MemoryObjects } from "../src/object/memory-objects.ts";
import type { ObjectToStore, StoredObject } from "../src/object/object-store.ts";

const server = startEmbedded(["ec"]);
const STALE_MS = 300;
beforeEach(() => {
  server.reset();
  server.setFaults({ staleMs: STALE_MS });
});
afterEach(() => server.reset());
afterAll(() => server.stop());

const BS = 4096;

function s3store(): S3Store {
  const client = new S3Client({
    baseURL: server.url, bucket: "ec", vhost: false, region: "us-east-1",
    credentials: { origin: "test", get: async () => ({ accessKeyId: ACCESS, secretAccessKey: SECRET }) },
    timeoutMs: 5000, initialRetryPauseMs: 10, maxRetryPauseMs: 1000, insecure: false, caFile: undefined,
    maxUploadBps: 0, maxDownloadBps: 0, debugHttp: false, keepAlive: true, log: new Logger(),
  });
  return new S3Store(client, { prefix: `${Math.random().toString(36).slice(2)}/`, hashPrefix: false, blockSize: BS, numBlocks: 64, putHeaders: {}, listThreads: 4 });
}

function guarded(options: Partial<ConsistencyGuardOptions> = {}): ConsistencyGuard {
  return new ConsistencyGuard(plainCodec(s3store()), { cacheSize: 64, cacheTimeMs: 2000, minWriteDelayMs: 50, initialRetryPauseMs: 20, maxRetryPauseMs: 3000, ...options });
}


/** Overwrites and deletes a few hot blocks, reading each back right away; returns the wrong reads. */
async function hammer(store: BlockStore, rounds: number): Promise<number> {
  let wrong = 0;
  await Promise.all(
    [0, 1, 2, 3].map(async (block) => {
      for (let round = 0; round < rounds; round++) {
        const data = round % 3 === 2 ? null : pattern(BS, block * 100 + round + 1);
        await store.writeBlock(block, data);
        const back = await store.readBlock(block);
        if (data ? !Buffer.from(back).equals(Buffer.from(data)) : !isAllZero(back)) wrong++;
      }
    }),
  );
  return wrong;
}

test("guard on: every read right after a write or delete returns exactly what was written", async () => {
  const guard = guarded();
  expect(await hammer(guard, 6)).toBe(0);
  expect(server.counters.staleAnswers).toBeGreaterThan(0); // the server did lie...
  expect(statOf(guard, "stale answers")).toBeGreaterThan(0); // ...and the guard saw it and asked again
  expect(statOf(guard, "stale retries")).toBeGreaterThan(0);
});

test("guard off: the same test reads wrong data (so the test above can fail)", async () => {
  expect(await hammer(plainCodec(s3store()), 6)).toBeGreaterThan(0);
});

test("a server that stays stale longer than --maxRetryPause gives EIO, not old data", async () => {
  const guard = guarded({ maxRetryPauseMs: 100 });
  await guard.writeBlock(5, pattern(BS, 1));
  await new Promise((r) => setTimeout(r, STALE_MS + 50));
  server.setFaults({ staleMs: 5000 });
  await guard.writeBlock(5, pattern(BS, 2));
  const err = await guard.readBlock(5).catch((e) => e);
  expect((err as { errno?: number }).errno).toBe(5);
  expect((err as Error).message).toMatch(/older version/);
});

test("a server stale for longer than --md5CacheTime and the retry budget gets EIO, read after read, never the old bytes", async () => {
  // The retry budget outlasts the MD5 cache's memory: a read must not forget what it expects under it.
  const guard = guarded({ cacheTimeMs: 200, initialRetryPauseMs: 20, maxRetryPauseMs: 600 });
  server.setFaults({ staleMs: 0 });
  await guard.writeBlock(6, pattern(BS, 1));
  server.setFaults({ staleMs: 20_000 });
  await guard.writeBlock(6, pattern(BS, 2));
  for (let read = 0; read < 2; read++) {
    const got = await guard.readBlock(6).catch((e) => e);
    expect(got).not.toEqual(pattern(BS, 1));
    expect((got as { errno?: number }).errno).toBe(5);
  }
  expect(server.counters.staleAnswers).toBeGreaterThan(0);
});

/**
 * Objects in memory with a lag switched on and off by the test: while lagging, a read of a block
 * written since sees the version from before; `swap` makes a read answer another block's object
 * (with that object's own MD5, as a proxy that swapped whole responses would).
 */
class LaggingObjects extends MemoryObjects {
  private readonly before = new Map<number, StoredObject | null>();
  lagging = false;
  swap: ((block: number) => number) | undefined;
  override async get(block: number): Promise<StoredObject | null> {
    const b = this.swap ? this.swap(block) : block;
    return this.before.has(b) ? this.before.get(b)! : super.get(b);
  }
  override async put(block: number, object: ObjectToStore): Promise<undefined> {
    if (this.lagging && !this.before.has(block)) this.before.set(block, await super.get(block));
    return super.put(block, object);
  }
  catchUp(): void {
    this.lagging = false;
    this.before.clear();
  }
}

function lagged(objects: LaggingObjects, options: Partial<ConsistencyGuardOptions> = {}): ConsistencyGuard {
  return new ConsistencyGuard(plainCodec(objects), { cacheSize: 64, cacheTimeMs: 150, minWriteDelayMs: 0, initialRetryPauseMs: 10, maxRetryPauseMs: 1500, ...options });
}

test("a read that outlives --md5CacheTime while a newer write lands returns the newest bytes, never the old", async () => {
  const objects = new LaggingObjects(BS, 64);
  const guard = lagged(objects);
  await guard.writeBlock(2, pattern(BS, 1));
  objects.lagging = true;
  await guard.writeBlock(2, pattern(BS, 2));
  const read = guard.readBlock(2);
  await new Promise((r) => setTimeout(r, 250)); // past --md5CacheTime, the read still retrying
  await guard.writeBlock(2, pattern(BS, 3)); // lands while the server still answers version 1
  await new Promise((r) => setTimeout(r, 250));
  objects.catchUp();
  expect(await read).toEqual(pattern(BS, 3));
  expect(statOf(guard, "stale answers")).toBeGreaterThan(0);
});

test("another block's body, with its own MD5, is EIO for as long as the block is remembered", async () => {
  const objects = new LaggingObjects(BS, 64);
  const guard = lagged(objects, { maxRetryPauseMs: 400 });
  for (let b = 0; b < 16; b++) await guard.writeBlock(b, pattern(BS, 100 + b));
  objects.swap = (b) => b ^ 1;
  const got = await Promise.all(Array.from({ length: 16 }, (_, b) => guard.readBlock(b).catch((e) => e)));
  expect(got.filter((g) => g instanceof Uint8Array)).toEqual([]);
  expect(got.every((g) => (g as { errno?: number }).errno === 5)).toBe(true);
});

test("a full MD5 cache waits while a read holds its only entry, past its expiry", async () => {
  const objects = new LaggingObjects(BS, 64);
  const guard = lagged(objects, { cacheSize: 1, cacheTimeMs: 100, maxRetryPauseMs: 400 });
  await guard.writeBlock(1, pattern(BS, 1));
  objects.lagging = true;
  await guard.writeBlock(1, pattern(BS, 2));
  let readDone = 0;
  const read = guard.readBlock(1).catch((e) => e).finally(() => (readDone = performance.now()));
  await new Promise((r) => setTimeout(r, 150)); // the entry's own time is up; the read holds it
  await guard.writeBlock(9, pattern(BS, 9));
  const wrote = performance.now();
  expect((await read as { errno?: number }).errno).toBe(5);
  expect(readDone).toBeGreaterThan(0);
  expect(wrote).toBeGreaterThan(readDone);
  expect(statOf(guard, "cache full waits")).toBe(1);
});

test("expired entries are forgotten as new ones come: the MD5 cache holds --md5CacheTime of writes, not --md5CacheSize", async () => {
  const guard = lagged(new LaggingObjects(BS, 64), { cacheTimeMs: 100 });
  for (let b = 0; b < 20; b++) await guard.writeBlock(b, pattern(BS, b + 1));
  expect(statOf(guard, "blocks remembered")).toBe(20);
  await new Promise((r) => setTimeout(r, 150));
  await guard.writeBlock(30, pattern(BS, 30));
  expect(statOf(guard, "blocks remembered")).toBe(1);
});

test("writes to one block stay in order and coalesce while they wait; the last one wins", async () => {
  server.setFaults({ staleMs: 0, latencyMs: [0, 60] }); // requests overtake each other
  const guard = guarded({ minWriteDelayMs: 100 });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 10; i++) {
    writes.push(guard.writeBlock(9, pattern(BS, 1000 + i)));
    await new Promise((r) => setTimeout(r, 15)); // some writes find a PUT under way, some a write waiting
  }
  await Promise.all(writes);
  server.setFaults({ latencyMs: 0 });
  expect(await guard.readBlock(9)).toEqual(pattern(BS, 1009));
  expect(statOf(guard, "writes coalesced")).toBeGreaterThan(0);
  expect(server.counters.requests.PUT).toBeGreaterThanOrEqual(2);
  expect(server.counters.requests.PUT).toBeLessThan(10);
});

test("--minWriteDelay spaces two PUTs of one block", async () => {
  server.setFaults({ staleMs: 0 });
  const guard = guarded({ minWriteDelayMs: 250 });
  await guard.writeBlock(3, pattern(BS, 1));
  const started = performance.now();
  await guard.writeBlock(3, pattern(BS, 2));
  expect(performance.now() - started).toBeGreaterThanOrEqual(200);
  expect(statOf(guard, "writes delayed")).toBe(1);
  await guard.writeBlock(4, pattern(BS, 3)); // another block does not wait
  expect(statOf(guard, "writes delayed")).toBe(1);
});

test("a full MD5 cache makes a write wait until the oldest entry expires", async () => {
  server.setFaults({ staleMs: 0 });
  const guard = guarded({ cacheSize: 2, cacheTimeMs: 300, minWriteDelayMs: 0 });
  await guard.writeBlock(1, pattern(BS, 1));
  await guard.writeBlock(2, pattern(BS, 2));
  const started = performance.now();
  await guard.writeBlock(3, pattern(BS, 3));
  expect(performance.now() - started).toBeGreaterThanOrEqual(200);
  expect(statOf(guard, "cache full waits")).toBe(1);
});

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
