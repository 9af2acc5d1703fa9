/**
 * Deleting the stats file resets what it shows, not the layers' counters: totals (what /metrics
 * serves) never go down, so Prometheus' rate() never sees a reset that did not happen.
 */
import { expect, test } from "bun:test";
import { StatsView } from "../../src/app/stats-view.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import { pattern } from "../helpers/data.ts";

const BS = 4096;

function memoryView() {
  const objects = new MemoryObjects(BS, 64);
  const view = new StatsView();
  view.source = () => objects.stats();
  const value = (groups: ReturnType<StatsView["totals"]>, name: string) => groups[0]!.values.find(([n]) => n === name)![1];
  return { objects, view, shown: (name: string) => value(view.sinceReset(), name), total: (name: string) => value(view.totals(), name) };
}

test("a reset starts the shown counters from zero; the totals go on growing; levels are shown as they are", async () => {
  const { objects, view, shown, total } = memoryView();
  for (let b = 0; b < 5; b++) await objects.put(b, { body: pattern(BS, b + 1) });
  expect([shown("puts"), total("puts"), shown("objects stored")]).toEqual([5, 5, 5]);

  view.reset();
  expect([shown("puts"), total("puts"), shown("objects stored")]).toEqual([0, 5, 5]);

  for (let b = 5; b < 8; b++) await objects.put(b, { body: pattern(BS, b + 1) });
  await objects.delete(0);
  expect([shown("puts"), total("puts"), shown("deletes"), total("deletes"), shown("objects stored")]).toEqual([3, 8, 1, 1, 7]);

  view.reset();
  view.reset(); // twice in a row: still zero, not negative
  expect([shown("puts"), total("puts"), shown("deletes")]).toEqual([0, 8, 0]);
});

test("the view's counters are the layers' own numbers: nothing is counted twice", async () => {
  const { objects, view, total } = memoryView();
  await objects.put(1, { body: pattern(BS, 1) });
  expect(total("puts")).toBe(objects.stats()[0]!.values.find(([n]) => n === "puts")![1]);
  expect(view.totals()).toEqual(objects.stats());
});
