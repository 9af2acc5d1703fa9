/**
 * The consistency guard against a server that lies on purpose: after each PUT or DELETE it keeps
 * serving the previous version (or 404) for 300 ms. (Through FUSE: test/mount/consistency-guard.test.ts.)
 */
import { afterAll, afterEach, beforeEach, expect, test } from "bun:test";
import { isAllZero, type BlockStore } from "../../src/store/block-store.ts";
import type { ConsistencyGuard, ConsistencyGuardOptions } from "../../src/store/consistency-guard/consistency-guard.ts";
import { pattern } from "../helpers/data.ts";
import { startEmbedded } from "../helpers/s3.ts";
import { testClient, testS3Store, testStack } from "../helpers/stack.ts";
import { plainCodec, statOf } from "../helpers/stores.ts";

const server = startEmbedded(["ec"]);
const STALE_MS = 300;
beforeEach(() => {
  server.reset();
  server.setFaults({ staleMs: STALE_MS });
});
afterEach(() => server.reset());
afterAll(() => server.stop());

const BS = 4096;

function s3store() {
  return testS3Store(testClient({ baseURL: server.url, bucket: "ec" }), { blockSize: BS });
}

function guarded(options: Partial<ConsistencyGuardOptions> = {}): ConsistencyGuard {
  return testStack(s3store(), { guard: { cacheTimeMs: 2000, minWriteDelayMs: 50, initialRetryPauseMs: 20, maxRetryPauseMs: 3000, ...options } }).guard;
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
