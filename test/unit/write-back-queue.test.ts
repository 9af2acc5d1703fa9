/** The write-back order on its own: rested blocks first, hurried ones at once, failed ones after their backoff. */
import { expect, test } from "bun:test";
import { WriteBackQueue, type Queued } from "../../src/store/block-cache/write-back-queue.ts";

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
