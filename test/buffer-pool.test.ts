/** The spare block buffers shared by the block cache and the GETs. */
import { expect, test } from "bun:test";
import { BufferPool } from "../src/util/buffer-pool.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("a given-back buffer is spare from the next turn, as zeros, a copy or as it is; others are not kept", async () => {
  const pool = new BufferPool(16);
  const buf = new Uint8Array(16).fill(9);
  expect(pool.give(buf)).toBe(true);
  expect(pool.holds(buf.buffer)).toBe(true);
  expect(pool.takeSpare()).toBeUndefined(); // not this turn: a reader may still look at it
  expect(pool.take()).not.toBe(buf);
  await sleep(1);
  const again = pool.take();
  expect(again).toBe(buf);
  expect(again).toEqual(new Uint8Array(16));
  expect(pool.give(again)).toBe(true);
  await sleep(1);
  expect(pool.takeSpare()).toBe(buf);
  expect(pool.takeSpare()).toBeUndefined(); // none is made
  expect(pool.give(new Uint8Array(32).subarray(0, 16))).toBe(false); // part of a bigger buffer
  expect(pool.give(new Uint8Array(32).subarray(16))).toBe(false);
  expect(pool.give(new Uint8Array(8))).toBe(false); // not a block's size
});

test("at most eight are kept", () => {
  const pool = new BufferPool(4);
  const kept = Array.from({ length: 10 }, () => pool.give(new Uint8Array(4)));
  expect(kept).toEqual([...Array(8).fill(true), false, false]);
});
