/** Read-ahead against a store whose fetches land when the test says: how many are kept in flight. */
import { expect, test } from "bun:test";
import { ReadAhead } from "../../src/store/block-cache/read-ahead.ts";

function setup(depth: number) {
  const landed = new Set<number>();
  const pending = new Map<number, () => void>();
  const fetched: number[] = [];
  const ahead = new ReadAhead(depth, 2, 10_000, {
    has: (block) => landed.has(block) || pending.has(block),
    hasRoom: () => true,
    fetch: (block) =>
      new Promise<void>((resolve) => {
        fetched.push(block);
        pending.set(block, () => {
          pending.delete(block);
          landed.add(block);
          resolve();
        });
      }),
  });
  /** Lands these fetches (all in flight if none named), and lets read-ahead start the next ones. */
  const land = async (...blocks: number[]) => {
    for (const block of blocks.length ? blocks : [...pending.keys()]) pending.get(block)!();
    await new Promise((resolve) => setTimeout(resolve, 0));
  };
  return { ahead, pending, land, fetched };
}

test("a reader that never waits keeps --readAhead fetches going, up to twice as many blocks ahead of it", async () => {
  const { ahead, pending, land, fetched } = setup(4);
  ahead.noteRead(0);
  expect(pending.size).toBe(0); // one read is not yet a sequence
  ahead.noteRead(1);
  expect([...pending.keys()]).toEqual([2, 3, 4, 5]);
  for (let b = 2; b < 40; b++) {
    await land(); // each block is there before the reader comes
    ahead.noteRead(b);
    expect(ahead.currentDepth).toBe(4);
    expect(Math.max(...fetched)).toBeLessThanOrEqual(b + 8);
    expect(Math.max(...fetched)).toBeGreaterThanOrEqual(b + 4);
    expect(pending.size).toBeLessThanOrEqual(4);
  }
  expect(fetched).toEqual([...new Set(fetched)]); // none twice
});

test("a reader that catches up with the fetches gets one more in flight per wait, up to four times --readAhead; a jump starts over", async () => {
  const { ahead, pending, land } = setup(4);
  ahead.noteRead(0);
  ahead.noteRead(1);
  // The reader comes to each block while it is still on its way, and waits for that one.
  for (let b = 2; b < 30; b++) {
    expect(pending.has(b)).toBe(true);
    ahead.noteRead(b);
    expect(ahead.currentDepth).toBe(Math.min(16, 4 + b - 1));
    await land(b);
  }
  expect(pending.size).toBe(16);
  ahead.noteRead(500);
  expect(ahead.currentDepth).toBe(4);
  await land();
  ahead.noteRead(501);
  expect(pending.size).toBe(4);
});

test("--readAhead=0 never fetches ahead", () => {
  const { ahead, pending } = setup(0);
  for (let b = 0; b < 10; b++) ahead.noteRead(b);
  expect(pending.size).toBe(0);
  expect(ahead.currentDepth).toBe(0);
});

test("a stream whose reads arrive a little out of order keeps read-ahead going and deepening; a real jump still starts over", async () => {
  const { ahead, pending, land } = setup(4);
  ahead.noteRead(0);
  ahead.noteRead(1);
  // The kernel's read-ahead has two requests in flight, and they reach the cache swapped: 3 before
  // 2, 5 before 4, ... Each waits for its block, which read-ahead is still fetching.
  for (let b = 2; b < 30; b += 2) {
    expect(pending.has(b) && pending.has(b + 1)).toBe(true);
    ahead.noteRead(b + 1);
    ahead.noteRead(b);
    await land(b, b + 1);
  }
  expect(ahead.currentDepth).toBe(16);
  expect(pending.size).toBe(16);
  ahead.noteRead(500); // far ahead: a jump
  expect(ahead.currentDepth).toBe(4);
});
