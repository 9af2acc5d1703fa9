/**
 * Reads that race writes, one layer at a time and with no HTTP: the consistency guard over a codec
 * whose answers can be held back or lost, the zero-block cache over a store whose reads can be held
 * back, and the block cache with a cache file over a store whose writes can be held back. Each case
 * is one interleaving that went wrong before.
 */
import { expect, test } from "bun:test";
import { Errno, FsError } from "../../src/errors.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectToStore } from "../../src/object/object-store.ts";
import type { ConsistencyGuard } from "../../src/store/consistency-guard/consistency-guard.ts";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { pattern, tempDir, waitFor } from "../helpers/data.ts";
import { testStack } from "../helpers/stack.ts";
import { cacheInFile, statOf } from "../helpers/stores.ts";

const BS = 4096;

/** Resolves when `open` is called: a held answer. */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** Objects in memory whose answers can be held back, and whose next write can lose its answer. */
class HeldObjects extends MemoryObjects {
  holdReads: Promise<void> | undefined;
  /** Writes are stored once this settles. */
  holdWrites: Promise<void> | undefined;
  /** The next write: "stored" stores and then fails (a lost answer), "refused" fails before storing. */
  failNext: "stored" | "refused" | undefined;

  constructor() {
    super(BS, 64);
  }

  override async get(block: number) {
    const held = this.holdReads;
    const object = await super.get(block);
    await held; // the answer was decided when the request arrived, and comes late
    return object;
  }

  override async put(block: number, object: ObjectToStore) {
    await this.holdWrites;
    return this.failing(() => super.put(block, object));
  }

  override delete(block: number) {
    return this.failing(() => super.delete(block));
  }

  private async failing<T>(write: () => Promise<T>): Promise<T> {
    const fail = this.failNext;
    this.failNext = undefined;
    if (fail === "refused") throw new FsError(Errno.EIO, "refused");
    const done = await write();
    if (fail) throw new FsError(Errno.EIO, "the answer was lost");
    return done;
  }
}

function guardOver(objects: HeldObjects, maxRetryPauseMs = 200) {
  return testStack(objects, { guard: { maxRetryPauseMs } }).guard;
}

const staleAnswers = (g: ConsistencyGuard) => statOf(g, "stale answers");

test("guard: an answer held back past a completed write is judged against that write, not taken as stale", async () => {
  const codec = new HeldObjects();
  const guard = guardOver(codec);
  await guard.writeBlock(3, pattern(BS, 1));
  const held = gate();
  // The GET arrives after the next write is stored, and its answer comes late.
  const write = guard.writeBlock(3, pattern(BS, 2));
  codec.holdReads = held.opened;
  const read = guard.readBlock(3);
  await write;
  held.open();
  expect(await read).toEqual(pattern(BS, 2));
  expect(staleAnswers(guard)).toBe(0);
});

test("guard: a read that began before a write and answers the old bytes returns them (it raced the write)", async () => {
  const codec = new HeldObjects();
  const guard = guardOver(codec);
  await guard.writeBlock(4, pattern(BS, 1));
  const held = gate();
  codec.holdReads = held.opened;
  const read = guard.readBlock(4); // decided now: version 1
  codec.holdReads = undefined;
  await guard.writeBlock(4, pattern(BS, 2));
  held.open();
  expect(await read).toEqual(pattern(BS, 1));
  expect(await guard.readBlock(4)).toEqual(pattern(BS, 2));
  expect(staleAnswers(guard)).toBe(0);
});

test("guard: a read of a block being written gets the bytes being written", async () => {
  const codec = new HeldObjects();
  const guard = guardOver(codec);
  await guard.writeBlock(5, pattern(BS, 1));
  const write = guard.writeBlock(5, pattern(BS, 2));
  expect(await guard.readBlock(5)).toEqual(pattern(BS, 2));
  await write;
});

test("guard: after a write whose answer was lost, the old or the sent version is accepted, nothing else", async () => {
  const codec = new HeldObjects();
  const guard = guardOver(codec);
  await guard.writeBlock(6, pattern(BS, 1));
  codec.failNext = "stored";
  expect(await guard.writeBlock(6, pattern(BS, 2)).catch((e: FsError) => e.errno)).toBe(Errno.EIO);
  expect(await guard.readBlock(6)).toEqual(pattern(BS, 2));

  await guard.writeBlock(7, pattern(BS, 1));
  codec.failNext = "refused";
  await guard.writeBlock(7, pattern(BS, 2)).catch(() => {});
  expect(await guard.readBlock(7)).toEqual(pattern(BS, 1));
  expect(staleAnswers(guard)).toBe(0);

  // A third version was never written: stale, then EIO.
  await guard.writeBlock(8, pattern(BS, 11));
  codec.failNext = "refused";
  await guard.writeBlock(8, pattern(BS, 21)).catch(() => {});
  await codec.put(8, { body: pattern(BS, 31) });
  const err = await guard.readBlock(8).catch((e: FsError) => e);
  expect((err as FsError).errno).toBe(Errno.EIO);
});

test("zero-block cache: a 404 that a write overtook does not make the block known zero", async () => {
  const store = new HeldObjects();
  const { zero } = testStack(store, { zeroCache: true });
  const held = gate();
  store.holdReads = held.opened;
  const read = zero.readBlock(7); // decided now: absent
  store.holdReads = undefined;
  await zero.writeBlock(7, pattern(BS, 9));
  held.open();
  expect(await read).toEqual(new Uint8Array(BS)); // it raced the write: the old state is fine
  expect(await zero.readBlock(7)).toEqual(pattern(BS, 9));
  // A partial write keeps the rest of the block.
  await zero.writeBlockPart(7, 0, pattern(512, 1));
  const expected = pattern(BS, 9);
  expected.set(pattern(512, 1), 0);
  expect(await zero.readBlock(7)).toEqual(expected);
});

test("block cache with a cache file: a read waiting for memory to bring a block back ends when a write brings it there first", async () => {
  const dir = tempDir("races");
  const objects = new HeldObjects();
  const { cache } = cacheInFile(objects, join(dir, "cache"), 8, { size: 4, memoryBlocks: 1, maxDirty: 4, threads: 1 });
  try {
    const inFile = () => statOf(cache, "blocks not yet in the file") === 0;
    await cache.writeBlock(0, pattern(BS, 1));
    await cache.flush();
    await waitFor("block 0 in the cache file", inFile);
    // Block 1 takes the one block of memory (block 0 is in the file alone) and keeps it while its upload is held.
    const held = gate();
    objects.holdWrites = held.opened;
    await cache.writeBlock(1, pattern(BS, 2));
    const write = cache.writeBlock(0, pattern(BS, 3)); // waits for memory first
    const read = cache.readBlock(0); // then this, to bring block 0 back from the file
    held.open();
    await write;
    const timeout = new Promise((r) => setTimeout(() => r("still waiting after 5 s"), 5000));
    expect(await Promise.race([read, timeout])).toEqual(pattern(BS, 3));
    cache.checkInvariants();
  } finally {
    await cache.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
