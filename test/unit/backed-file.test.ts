/** The byte-range file over a block store: splitting at block edges, write order per block, trim, zeroing. */
import { concatBytes } from "../../src/util/bytes.ts";
import { expect, test } from "bun:test";
import { BackedFile } from "../../src/file/backed-file.ts";
import { FsError } from "../../src/errors.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import { zeroExtents } from "../../src/file/extents.ts";
import { pattern } from "../helpers/data.ts";
import { plainCodec } from "../helpers/stores.ts";

const BS = 512;

function file(blocks = 8) {
  const objects = new MemoryObjects(BS, blocks);
  return { objects, file: new BackedFile(plainCodec(objects)) };
}

const joined = concatBytes;

test("a write across three blocks lands in each, reads back whole and in parts, clipped at the end", async () => {
  const { file: f, objects } = file();
  const data = pattern(2 * BS + 100, 1);
  expect(await f.write(BS - 50, data)).toBe(data.length);
  expect(joined(await f.read(BS - 50, data.length))).toEqual(data);
  expect(joined(await f.read(BS, 10))).toEqual(data.subarray(50, 60));
  expect((await objects.head(0)) !== null && (await objects.head(3)) !== null).toBe(true);
  expect(await objects.head(4)).toBeNull();
  expect(joined(await f.read(8 * BS - 10, 100)).length).toBe(10); // clipped to the file
  expect(await f.read(8 * BS, 10)).toEqual([]);
});

test("writes to one block keep their order even when issued together; a write past the end is ENOSPC, one over it is cut", async () => {
  const { file: f } = file();
  await Promise.all([f.write(10, new Uint8Array(100).fill(1)), f.write(50, new Uint8Array(100).fill(2)), f.write(60, new Uint8Array(10).fill(3))]);
  const back = joined(await f.read(0, BS));
  expect(back.subarray(10, 50).every((b) => b === 1)).toBe(true);
  expect(back.subarray(50, 60).every((b) => b === 2)).toBe(true);
  expect(back.subarray(60, 70).every((b) => b === 3)).toBe(true);
  expect(back.subarray(70, 150).every((b) => b === 2)).toBe(true);
  expect(await f.write(8 * BS - 4, new Uint8Array(10).fill(9))).toBe(4);
  expect(await f.write(8 * BS, new Uint8Array(1)).catch((e: unknown) => e)).toBeInstanceOf(FsError);
});

test("zeroRange deletes whole blocks and zeroes the edges; trim deletes whole blocks only and leaves the edges", async () => {
  const { file: f, objects } = file();
  await f.write(0, pattern(8 * BS, 2));
  await f.zeroRange(BS + 100, 2 * BS); // block 2 whole; edges of 1 and 3
  expect(await objects.head(2)).toBeNull();
  const after = joined(await f.read(0, 8 * BS));
  expect(after.subarray(BS + 100, 3 * BS + 100).every((b) => b === 0)).toBe(true);
  expect(after.subarray(0, BS + 100)).toEqual(pattern(8 * BS, 2).subarray(0, BS + 100));
  await f.trim(4 * BS + 1, 3 * BS); // only blocks 5 and 6 are whole in it
  expect([await objects.head(4), await objects.head(5), await objects.head(6), await objects.head(7)].map((h) => h !== null)).toEqual([true, false, false, true]);
  expect(joined(await f.read(4 * BS, 10))).toEqual(pattern(8 * BS, 2).subarray(4 * BS, 4 * BS + 10));
});

test("extents: runs of blocks known zero, clipped to the range and at most `max` of them", () => {
  const zero = (b: number) => b >= 2 && b < 5;
  expect(zeroExtents(100, 8 * BS, 8 * BS, BS, zero, 10)).toEqual([
    { length: 2 * BS - 100, zero: false },
    { length: 3 * BS, zero: true },
    { length: 3 * BS, zero: false },
  ]);
  expect(zeroExtents(0, 8 * BS, 8 * BS, BS, zero, 2)).toEqual([{ length: 2 * BS, zero: false }, { length: 3 * BS, zero: true }]);
});
