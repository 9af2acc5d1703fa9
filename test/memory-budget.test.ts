/** The memory budget: over it, the process collects garbage; under it, it leaves the collector alone. */
import { expect, test } from "bun:test";
import { MemoryBudget } from "../src/memory-budget.ts";

const value = (b: MemoryBudget, name: string) => Number(b.stats().values.find(([n]) => n === name)![1]);

test("over the budget a full collection runs, at most every 100 ms, while memory grows; under it none does", async () => {
  const over = new MemoryBudget(1); // any process is over one byte
  const under = new MemoryBudget(2 ** 50);
  over.start();
  under.start();
  const garbage: Uint8Array[] = [];
  for (let i = 0; i < 7; i++) {
    garbage.push(new Uint8Array(16 * 2 ** 20).fill(1)); // resident, growing
    await Bun.sleep(100);
  }
  over.stop();
  under.stop();
  expect(garbage.length).toBe(7);
  expect(value(over, "forced collections")).toBeGreaterThanOrEqual(1);
  expect(value(over, "forced collections")).toBeLessThanOrEqual(8);
  expect(value(under, "forced collections")).toBe(0);
  expect(value(under, "resident MiB")).toBeGreaterThan(10);
  expect(value(under, "peak resident MiB")).toBeGreaterThanOrEqual(value(under, "resident MiB") - 1);
});

test("an idle process over its budget is collected once, not every check", async () => {
  const idle = new MemoryBudget(1);
  idle.start();
  await Bun.sleep(1100); // eleven checks
  idle.stop();
  expect(value(idle, "forced collections")).toBeLessThanOrEqual(2);
});
