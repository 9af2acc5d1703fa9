/** The consistency guard over objects in memory that lag or swap on the test's word: each case one exact situation. */
import { expect, test } from "bun:test";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectToStore, StoredObject } from "../../src/object/object-store.ts";
import type { ConsistencyGuardOptions } from "../../src/store/consistency-guard/consistency-guard.ts";
import { pattern } from "../helpers/data.ts";
import { testStack } from "../helpers/stack.ts";
import { statOf } from "../helpers/stores.ts";

const BS = 4096;

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

function lagged(objects: LaggingObjects, options: Partial<ConsistencyGuardOptions> = {}) {
  return testStack(objects, { guard: { cacheTimeMs: 150, initialRetryPauseMs: 10, maxRetryPauseMs: 1500, ...options } }).guard;
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
