/**
 * The memory budget: over it, the process collects garbage; under it, it leaves the collector
 * alone. The collector is the test's own (Deno's runtime cannot force one).
 */
import { expect, test } from "bun:test";
import { MemoryBudget } from "../../src/memory/memory-budget.ts";
import { delay } from "../../src/util/delay.ts";

const rss = () => process.memoryUsage.rss();
const collect = () => true;

const value = (b: MemoryBudget, name: string) => Number(b.stats().values.find(([n]) => n === name)![1]);

test("over the budget a full collection runs, at most once per check, while memory grows; under it none does", async () => {
  const over = new MemoryBudget(1, rss, collect); // any process is over one byte
  const under = new MemoryBudget(2 ** 50, rss, collect);
  over.start();
  under.start();
  const garbage: Uint8Array[] = [];
  for (let i = 0; i < 7; i++) {
    garbage.push(new Uint8Array(16 * 2 ** 20).fill(1)); // resident, growing
    await delay(100);
  }
  over.stop();
  under.stop();
  garbage.length = 0; // resident until here
  expect(value(over, "forced collections")).toBeGreaterThanOrEqual(1);
  expect(value(over, "forced collections")).toBeLessThanOrEqual(8);
  expect(value(under, "forced collections")).toBe(0);
  expect(value(under, "resident MiB")).toBeGreaterThan(10);
  expect(value(under, "peak resident MiB")).toBeGreaterThanOrEqual(value(under, "resident MiB") - 1);
});

test("an idle process over its budget is collected once, not every check", async () => {
  const idle = new MemoryBudget(1, rss, collect);
  idle.start();
  await delay(1100); // over forty checks
  idle.stop();
  expect(value(idle, "forced collections")).toBeGreaterThanOrEqual(1);
  expect(value(idle, "forced collections")).toBeLessThanOrEqual(2);
});

test("an idle process is looked at less and less often (at most every 200 ms); one whose memory moves, every 25 ms", async () => {
  let looks = 0;
  const still = new MemoryBudget(2 ** 50, () => (looks++, 100 * 2 ** 20), collect);
  let moving = 0;
  let size = 100 * 2 ** 20;
  const busy = new MemoryBudget(2 ** 50, () => (moving++, (size += 4 * 2 ** 20)), collect);
  still.start();
  busy.start();
  await delay(1000); // forty checks at 25 ms
  still.stop();
  busy.stop();
  expect(looks).toBeLessThanOrEqual(12); // 25, 50, 100, 200, 200, ... ms
  expect(moving).toBeGreaterThanOrEqual(25);
});

test("near the budget, every 16 MiB of block buffers the cache lets go are collected at once; far from it, none", () => {
  const near = new MemoryBudget(1, rss, collect);
  const far = new MemoryBudget(2 ** 50, rss, collect);
  near.start();
  far.start();
  const MIB = 2 ** 20;
  for (let i = 0; i < 15; i++) near.droppedBlock(MIB);
  expect(value(near, "forced collections")).toBe(0);
  near.droppedBlock(MIB); // the 16th MiB
  expect(value(near, "forced collections")).toBe(1);
  for (let i = 0; i < 48; i++) near.droppedBlock(MIB);
  expect(value(near, "forced collections")).toBe(4);
  for (let i = 0; i < 64; i++) far.droppedBlock(MIB);
  expect(value(far, "forced collections")).toBe(0);
  near.stop();
  far.stop();
  near.droppedBlock(64 * MIB); // stopped: left alone
  expect(value(near, "forced collections")).toBe(4);
});

test("with room below the budget it collects after growing by half that room; close to it, after 2 MiB", async () => {
  const MIB = 2 ** 20;
  let resident = 1040 * MIB;
  const budget = new MemoryBudget(1100 * MIB, () => resident, collect);
  const collections = () => value(budget, "forced collections");
  const settle = () => delay(70); // a few checks (every 25 ms)
  budget.start();
  await settle();
  expect(collections()).toBe(1); // within 64 MiB of the budget: collected, at 1040
  resident = 1065 * MIB; // grew 25 MiB: under half the 60 that were left
  await settle();
  expect(collections()).toBe(1);
  resident = 1071 * MIB; // grew 31
  await settle();
  expect(collections()).toBe(2);
  resident = 1085 * MIB; // grew 14: under half the 29 left
  await settle();
  expect(collections()).toBe(2);
  resident = 1097 * MIB; // grew 26
  await settle();
  expect(collections()).toBe(3);
  resident = 1099.5 * MIB; // 3 MiB left: 2 MiB of growth is enough
  await settle();
  expect(collections()).toBe(4);
  budget.stop();
});

test("a runtime that cannot collect (Deno): the budget stops checking at the first try, and counts none", async () => {
  let tries = 0;
  const budget = new MemoryBudget(1, rss, () => (tries++, false));
  budget.start();
  await delay(200); // eight checks' time
  budget.droppedBlock(64 * 2 ** 20);
  budget.stop();
  expect(tries).toBe(1);
  expect(value(budget, "forced collections")).toBe(0);
});

test("the stats show the main thread's heap: at least the buffers it holds", () => {
  const budget = new MemoryBudget(2 ** 50, rss, collect);
  const held = Array.from({ length: 8 }, () => new Uint8Array(8 * 2 ** 20));
  expect(value(budget, "heap buffers MiB")).toBeGreaterThanOrEqual(64);
  expect(value(budget, "heap objects MiB")).toBeGreaterThan(0);
  expect(held.length).toBe(8);
});
