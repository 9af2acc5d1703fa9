import { expect, test } from "bun:test";
import { HUGE_PAGE, pagesToAdvise } from "../../src/memory/huge-pages.ts";

const MiB = 2 ** 20;

test("the huge pages a buffer overlaps, whole, as one run", () => {
  expect(pagesToAdvise(0, 1, new Set())).toEqual([0, 0]);
  expect(pagesToAdvise(HUGE_PAGE - 1, 2, new Set())).toEqual([0, 1]);
  expect(pagesToAdvise(5 * HUGE_PAGE + MiB, MiB, new Set())).toEqual([5, 5]);
  expect(pagesToAdvise(5 * HUGE_PAGE + MiB, 4 * MiB, new Set())).toEqual([5, 7]);
});

test("pages already advised are left out at either end, and a buffer inside them needs nothing", () => {
  const done = new Set([5, 7]);
  expect(pagesToAdvise(5 * HUGE_PAGE + MiB, 4 * MiB, done)).toEqual([6, 6]);
  expect(pagesToAdvise(5 * HUGE_PAGE, MiB, done)).toBeNull();
  expect(pagesToAdvise(7 * HUGE_PAGE + MiB, 2 * MiB, done)).toEqual([8, 8]);
});
