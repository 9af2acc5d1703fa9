/** The write-back order on its own: rested blocks first, hurried ones at once, failed ones after their backoff. */
import { expect, test } from "bun:test";
import { WriteBackQueue, type Queued } from "../src/store/block-cache/write-back-queue.ts";
import { BufferPool } from "../src/store/block-cache/buffer-pool.ts";

const entry = (name: string): Queued & { name: string } => ({ name, dirtySince: 0, lastWrite: 0, retryAt: 0, failures: 0 });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a block is due once it rested for the delay; one written again waits again; pressed, all are due", async () => {
  const q = new WriteBackQueue<ReturnType<typeof entry>>(400); // wide margins: timers run late on a busy machine
  const a = entry("a");
  const b = entry("b");
  q.add(a);
  q.add(b);
  expect(typeof q.takeDue(false)).toBe("number"); // nothing rested yet: when the first will be
  await sleep(200);
  q.rewritten(a); // its delay starts again: b is now first
  await sleep(300);
  expect(q.takeDue(false)).toBe(b);
  expect(typeof q.takeDue(false)).toBe("number");
  expect(q.takeDue(true)).toBe(a); // writers wait for room: due now
  expect(q.takeDue(true)).toBe(Infinity);
});

test("hurried blocks go first; a failed one waits out a backoff that doubles, unless hurried", () => {
  const q = new WriteBackQueue<ReturnType<typeof entry>>(10_000);
  const a = entry("a");
  const b = entry("b");
  q.add(a);
  q.add(b);
  q.hurry(b);
  expect(q.queuesHolding(b)).toBe(1);
  expect(q.takeDue(false)).toBe(b);
  q.failedOnce(b);
  const first = b.retryAt - performance.now();
  expect(q.takeDue(false)).toBe(b.retryAt); // not due: the time it will be
  q.failedOnce(b);
  expect(b.retryAt - performance.now()).toBeGreaterThan(first * 1.5);
  q.hurry(b);
  expect(q.takeDue(false)).toBe(b);
  expect([...q.all()]).toEqual([a]);
});

test("buffer pool: a given-back buffer is reused from the next turn, as zeros or a copy; others are let go", async () => {
  const dropped: number[] = [];
  const pool = new BufferPool(16, (n) => dropped.push(n));
  const buf = new Uint8Array(16).fill(9);
  pool.give(buf);
  expect(pool.holds(buf.buffer)).toBe(true);
  expect(pool.take()).not.toBe(buf); // not this turn: a reader may still look at it
  await sleep(1);
  const again = pool.take();
  expect(again).toBe(buf);
  expect(again).toEqual(new Uint8Array(16));
  pool.give(new Uint8Array(32).subarray(0, 16)); // part of a bigger buffer: not reused
  expect(dropped).toEqual([16]);
});
