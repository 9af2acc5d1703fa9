/** The spare block buffers shared by the block cache and the GETs. */
import { expect, test } from "bun:test";
import { BufferPool } from "../../src/memory/buffer-pool.ts";
import { pattern, waitFor } from "../helpers/data.ts";

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

test("while the cache grows, new buffers come faulted in ahead by a thread, as many as it grew by up to eight; zeros, and copies when asked", async () => {
  const size = 64 * 1024;
  const pool = new BufferPool(size, true);
  try {
    const from = pattern(size, 1);
    expect(pool.take(from)).toEqual(from); // none ahead yet: made on use, and one asked for
    await waitFor("a buffer faulted in ahead", () => pool.kept === 1);
    await sleep(50);
    expect(pool.kept).toBe(1); // the stock follows the growth
    for (let i = 0; i < 8; i++) pool.take(); // one from the stock, then made on use
    expect(pool.made).toEqual({ ahead: 1, onUse: 8 });
    await waitFor("buffers faulted in ahead", () => pool.kept === 8);
    expect(pool.take(from)).toEqual(from);
    expect(pool.takeToFill().length).toBe(size);
    expect(pool.take()).toEqual(new Uint8Array(size));
    expect(pool.made.ahead).toBe(4);
    await waitFor("the pool topped up", () => pool.kept === 8);
    // One given back is kept over one faulted in ahead: the pool still holds eight.
    const back = new Uint8Array(size);
    expect(pool.give(back)).toBe(true);
    expect(pool.kept).toBe(8);
    expect(pool.holds(back.buffer)).toBe(true);
  } finally {
    pool.close();
  }
});

test("buffers given back stop the asking: a cache that recycles gets no new memory from the thread", async () => {
  const size = 64 * 1024;
  const pool = new BufferPool(size, true);
  try {
    for (let i = 0; i < 8; i++) pool.take();
    await waitFor("buffers faulted in ahead", () => pool.kept === 8);
    const given: Uint8Array[] = [];
    for (let i = 0; i < 4; i++) {
      const b = new Uint8Array(size);
      given.push(b);
      pool.give(b); // spare from the next turn: the take below uses one faulted in ahead, and asks for none
      pool.take();
    }
    // The first given back took the place of one faulted in ahead.
    expect(pool.made).toEqual({ ahead: 4, onUse: 8 });
    await sleep(100);
    expect(pool.kept).toBe(7); // the four given back and three faulted in ahead: nothing more arrived
    for (let i = 0; i < 4; i++) expect(given).toContain(pool.takeToFill());
  } finally {
    pool.close();
  }
});

test("without the thread (closed, or small blocks), new buffers are made where they are used", async () => {
  const closed = new BufferPool(64 * 1024, true);
  closed.close();
  closed.take();
  const small = new BufferPool(4096, true);
  small.take();
  await sleep(50);
  expect([closed.kept, small.kept]).toEqual([0, 0]);
  expect([closed.made, small.made]).toEqual([{ ahead: 0, onUse: 1 }, { ahead: 0, onUse: 1 }]);
});
