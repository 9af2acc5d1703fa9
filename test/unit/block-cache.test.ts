/** The block cache over objects in memory: the wire's counters tell what went to storage. */
import { afterAll, beforeEach, expect, test } from "bun:test";
import { FsError } from "../../src/errors.ts";
import type { BlockCache, BlockCacheOptions } from "../../src/store/block-cache/block-cache.ts";
import { isAllZero } from "../../src/store/block-store.ts";
import { delay } from "../../src/util/delay.ts";
import { pattern, waitFor } from "../helpers/data.ts";
import { testStack } from "../helpers/stack.ts";
import { MemoryWire, statOf } from "../helpers/stores.ts";

const wire = new MemoryWire();
beforeEach(() => wire.reset());

const BS = 4096;
const caches: BlockCache[] = [];
afterAll(async () => {
  wire.reset();
  for (const c of caches) await c.close().catch(() => {});
});

function stack(options: Partial<BlockCacheOptions> = {}, blocks = 256) {
  const { codec: s3, zero, cache } = testStack(wire.objects(BS, blocks), { zeroCache: true, cache: options });
  caches.push(cache);
  return { cache, s3, zero };
}

test("--blockCacheNumProtected: the first blocks stay while others come and go, and go last", async () => {
  const { cache, s3 } = stack({ size: 4, numProtected: 2, writeDelayMs: 60_000 }); // dirty blocks wait for the flush
  for (let b = 0; b < 8; b++) await s3.writeBlock(b, pattern(BS, b + 1));
  wire.counters.reset();
  for (const b of [0, 1, 2, 3, 4, 5, 6, 7]) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
  expect(wire.counters.requests.GET).toBe(8);
  for (const b of [0, 1]) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1)); // still cached
  expect(wire.counters.requests.GET).toBe(8);
  // With every unprotected block dirty, a protected one is the one to go.
  for (const b of [6, 7]) await cache.writeBlock(b, pattern(BS, 50 + b));
  await cache.readBlock(2);
  expect(wire.counters.requests.GET).toBe(9);
  // Uploads take room too (the store holds the bytes meanwhile): the flush pushes out 2, then 1.
  await cache.flush();
  for (const b of [0, 1, 3, 4, 5]) await cache.readBlock(b);
  wire.counters.reset();
  for (const b of [0, 1]) await cache.readBlock(b); // 3, 4, 5 came and went around them
  expect(wire.counters.requests.GET).toBe(0);
});

test("reads: a miss fetches once, hits cost nothing; LRU evicts clean blocks beyond the size", async () => {
  const { cache, s3 } = stack({ size: 4 });
  for (let b = 0; b < 6; b++) await s3.writeBlock(b, pattern(BS, b + 1));
  wire.counters.reset();
  for (const b of [0, 1, 2, 3, 0, 1, 2, 3]) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
  expect(wire.counters.requests.GET).toBe(4);
  await cache.readBlock(4); // evicts 0, the least recently used
  await cache.readBlock(1);
  expect(wire.counters.requests.GET).toBe(5);
  await cache.readBlock(0);
  expect(wire.counters.requests.GET).toBe(6);
  expect(statOf(cache, "evictions")).toBe(2);
  expect([statOf(cache, "read hits"), statOf(cache, "read misses")]).toEqual([5, 6]);
});

test("blocks being uploaded count against the size: the upload's copy of the bytes is memory too", async () => {
  const { cache, s3 } = stack({ size: 4, threads: 2 });
  for (let b = 0; b < 2; b++) await s3.writeBlock(b, pattern(BS, b + 1));
  for (let b = 0; b < 2; b++) await cache.readBlock(b); // two clean blocks
  wire.counters.reset();
  wire.setFaults({ latencyMs: 300 });
  await cache.writeBlock(2, pattern(BS, 3));
  await cache.writeBlock(3, pattern(BS, 4));
  await waitFor("two uploads in flight", () => wire.counters.requests.PUT === 2, 2000);
  // 4 blocks held and 2 in flight: the least recently used clean blocks make room.
  expect(statOf(cache, "blocks cached")).toBe(2);
  expect(statOf(cache, "evictions")).toBe(2);
  await cache.flush();
  wire.setFaults({});
  for (let b = 0; b < 2; b++) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
  expect(statOf(cache, "blocks cached")).toBe(4); // the whole size again once the uploads are done
});

test("an evicted block's buffer takes a later write, from the next turn of the event loop on", async () => {
  const { cache, s3 } = stack({ size: 2, writeDelayMs: 60_000 });
  for (let b = 0; b < 2; b++) await s3.writeBlock(b, pattern(BS, b + 1));
  const views = [await cache.readBlock(0), await cache.readBlock(1)]; // the cached bytes themselves
  // In this turn two writes evict blocks 0 and 1; neither may take their bytes yet.
  void cache.writeBlock(2, pattern(BS, 3));
  void cache.writeBlock(3, pattern(BS, 4));
  expect(statOf(cache, "evictions")).toBe(2);
  expect(views).toEqual([pattern(BS, 1), pattern(BS, 2)]);
  await new Promise((resolve) => setTimeout(resolve, 5));
  await cache.flush();
  await cache.writeBlock(4, pattern(BS, 5)); // a later turn: a spare buffer, the old block 0 or 1
  expect(views.filter((v) => Buffer.compare(v, pattern(BS, 5)) === 0).length).toBe(1);
  for (const [b, p] of [[2, 3], [3, 4], [4, 5]] as const) expect(await cache.readBlock(b)).toEqual(pattern(BS, p));
  await cache.flush();
});

test("write-back: writes return at once, repeated writes to a block coalesce into one PUT after the delay", async () => {
  const { cache } = stack({ writeDelayMs: 1000 });
  for (let i = 0; i < 10; i++) await cache.writeBlock(7, pattern(BS, 100 + i));
  expect(wire.counters.requests.PUT).toBe(0);
  expect(cache.dirtyCount).toBe(1);
  await waitFor("write-back", () => cache.dirtyCount === 0, 5000);
  expect(wire.counters.requests.PUT).toBe(1);
  expect(statOf(cache, "coalesced writes")).toBe(9);
  expect(await cache.readBlock(7)).toEqual(pattern(BS, 109));
});

test("a block kept busy is uploaded once it rests for the delay, and at the latest 120 delays after it became dirty", async () => {
  const busy = async (cache: BlockCache, block: number, ms: number) => {
    const started = performance.now();
    for (let i = 0; performance.now() - started < ms; i++) {
      await cache.writeBlockPart(block, (i % 8) * 16, pattern(16, i));
      await delay(10);
    }
  };
  // Written every 10 ms for 1.5 s: never 1 s at rest (unless the test itself stalls that long on
  // a loaded machine), and 120 delays (2 min) are not up.
  const slow = stack({ writeDelayMs: 1000 }).cache;
  await busy(slow, 4, 1500);
  expect(wire.counters.requests.PUT).toBe(0);
  await waitFor("the upload after the rest", () => slow.dirtyCount === 0, 5000);
  expect(wire.counters.requests.PUT).toBe(1);
  // With a 20 ms delay, written every 10 ms for 5.5 s: uploaded at least every 2.4 s meanwhile
  // (each stall of the test over 20 ms may add one more, so no upper bound here).
  wire.counters.reset();
  const fast = stack({ writeDelayMs: 20 }).cache;
  await busy(fast, 5, 5500);
  expect(wire.counters.requests.PUT).toBeGreaterThanOrEqual(2);
  await fast.flush(); // nothing left to upload during the next test
}, 20_000);

test("flush returns only when every block dirtied before it is stored, writing several at once", async () => {
  const { cache, s3 } = stack({ writeDelayMs: 60_000, threads: 8 });
  for (let b = 0; b < 8; b++) await cache.writeBlock(b, pattern(BS, b + 50));
  expect(wire.counters.requests.PUT).toBe(0); // the delay is a minute
  wire.hold(); // no PUT answers until all 8 are under way: one at a time would never get there
  let flushed = false;
  const flush = cache.flush().then(() => (flushed = true));
  await waitFor("8 PUTs under way at once", () => wire.counters.requests.PUT === 8);
  expect(flushed).toBe(false);
  wire.release();
  await flush;
  expect(wire.counters.requests.PUT).toBe(8);
  wire.reset();
  for (let b = 0; b < 8; b++) expect(await s3.readBlock(b)).toEqual(pattern(BS, b + 50));
});

test("a failed write-back fails the flush with EIO and keeps the block dirty; a later flush stores it", async () => {
  const { cache, s3 } = stack();
  wire.setFaults({ errorRate: 1 });
  await cache.writeBlock(3, pattern(BS, 3));
  const err = await cache.flush().catch((e) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(5);
  expect(cache.dirtyCount).toBe(1);
  wire.reset();
  await cache.flush();
  expect(cache.dirtyCount).toBe(0);
  expect(await s3.readBlock(3)).toEqual(pattern(BS, 3));
});

test("--blockCacheMaxDirty: writers wait for room while the store is slow", async () => {
  const { cache } = stack({ maxDirty: 2, threads: 1 });
  wire.setFaults({ latencyMs: 150 });
  const started = performance.now();
  for (let b = 0; b < 4; b++) await cache.writeBlock(b, pattern(BS, b));
  expect(performance.now() - started).toBeGreaterThan(200); // the third and fourth write waited
  expect(statOf(cache, "writer waits")).toBeGreaterThan(0);
  await cache.flush();
});

test("partial writes: no read for a block in the cache or known zero; one read otherwise", async () => {
  const { cache, s3, zero } = stack();
  await s3.writeBlock(1, pattern(BS, 9));
  await zero.loadListing(); // block 1 exists, all others are known zero
  wire.counters.reset();
  await cache.writeBlockPart(5, 100, pattern(10, 1)); // known zero: no GET
  await cache.writeBlockPart(5, 200, pattern(10, 2)); // in the cache: no GET
  await cache.writeBlockPart(1, 0, pattern(10, 3)); // must read the old bytes once
  expect(wire.counters.requests.GET).toBe(1);
  await cache.flush();
  const five = await s3.readBlock(5);
  expect(five.subarray(100, 110)).toEqual(pattern(10, 1));
  expect(five.subarray(200, 210)).toEqual(pattern(10, 2));
  const one = await s3.readBlock(1);
  expect(one.subarray(0, 10)).toEqual(pattern(10, 3));
  expect(one.subarray(10)).toEqual(pattern(BS, 9).subarray(10));
});

test("answers at once: a cached block is read and a partial write lands without a promise; else the caller must wait", async () => {
  const { cache, s3 } = stack({ maxDirty: 1, writeDelayMs: 10_000 });
  await s3.writeBlock(1, pattern(BS, 1));
  // Not cached: nothing at once (no fetch started either); a partial write needs the old bytes first.
  expect(cache.readBlockPartNow(1, 0, 16)).toBeUndefined();
  expect(cache.writeBlockPartNow(1, 0, new Uint8Array([9]))).toBe(false);
  expect(wire.counters.requests.GET).toBe(0);
  await cache.readBlock(1);
  expect(cache.readBlockPartNow(1, 100, 16)).toEqual(pattern(BS, 1).subarray(100, 116));
  expect(cache.writeBlockPartNow(1, 100, new Uint8Array([1, 2, 3]))).toBe(true);
  expect(cache.readBlockPartNow(1, 99, 5)).toEqual(new Uint8Array([pattern(BS, 1)[99]!, 1, 2, 3, pattern(BS, 1)[103]!]));
  expect(statOf(cache, "writes")).toBe(1);
  // Block 1 is the one dirty block allowed: a second block's writer must wait for room.
  await cache.readBlock(2);
  expect(cache.writeBlockPartNow(2, 0, new Uint8Array([5]))).toBe(false);
  await cache.flush();
  expect([...(await s3.readBlock(1)).subarray(99, 104)]).toEqual([...cache.readBlockPartNow(1, 99, 5)!]);
  // --blockCacheSync: every write waits for the store.
  const sync = stack({ sync: true }).cache;
  await sync.readBlock(3);
  expect(sync.writeBlockPartNow(3, 0, new Uint8Array([5]))).toBe(false);
});

test("read-ahead starts after the trigger and serves the next reads from the cache", async () => {
  const { cache, s3 } = stack({ readAhead: 4, readAheadTrigger: 2, size: 32 });
  for (let b = 0; b < 20; b++) await s3.writeBlock(b, pattern(BS, b + 1));
  wire.counters.reset();
  await cache.readBlock(0);
  expect(wire.counters.requests.GET).toBe(1); // one read is not yet a sequence
  wire.faults.latencyMs = 30;
  const one = cache.readBlock(1);
  // While block 1 comes, four fetches go past it; as they land more follow, up to eight blocks
  // ahead of the reader (2..9).
  await delay(15);
  expect(wire.counters.requests.GET).toBe(6);
  await one;
  await waitFor("read-ahead", () => wire.counters.requests.GET === 10, 2000);
  await delay(80);
  expect(wire.counters.requests.GET).toBe(10);
  wire.faults.latencyMs = 0;
  for (let b = 2; b < 12; b++) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
  expect(statOf(cache, "read-ahead hits")).toBeGreaterThanOrEqual(8);
  await delay(50); // the last fetches ahead land
  await cache.readBlock(15); // a jump ends the sequence
  const before = wire.counters.requests.GET;
  await delay(50);
  expect(wire.counters.requests.GET).toBe(before);
});

test("zero writes: a zeroed block is deleted at write-back, and reads as zeros meanwhile", async () => {
  const { cache, s3 } = stack();
  await cache.writeBlock(2, pattern(BS, 2));
  await cache.flush();
  await cache.writeBlockPart(2, 0, new Uint8Array(BS));
  expect(isAllZero(await cache.readBlock(2))).toBe(true);
  await cache.flush();
  expect(wire.counters.requests.DELETE).toBe(1);
  expect(isAllZero(await s3.readBlock(2))).toBe(true);
});

test("--blockCacheSync: a write returns once the block is stored", async () => {
  const { cache } = stack({ sync: true });
  await cache.writeBlock(4, pattern(BS, 4));
  expect(wire.counters.requests.PUT).toBe(1);
  expect(cache.dirtyCount).toBe(0);
});

test("--blockCacheTimeout drops idle clean blocks", async () => {
  const { cache, s3 } = stack({ timeoutMs: 100 });
  await s3.writeBlock(6, pattern(BS, 6));
  await cache.readBlock(6);
  await delay(300);
  wire.counters.reset();
  await cache.readBlock(6);
  expect(wire.counters.requests.GET).toBe(1);
});
