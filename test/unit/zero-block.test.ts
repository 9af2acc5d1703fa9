/**
 * Absent blocks read as the one shared all-zero block of their size (zeroBlock), which isAllZero
 * knows without reading. Nothing above may write into it: a write into a block that read as zeros
 * lands in bytes of its own, and every absent block still reads as zeros.
 */
import { expect, test } from "bun:test";
import { BackedFile } from "../../src/file/backed-file.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import { isAllZero, zeroBlock } from "../../src/store/block-store.ts";
import { testStack, type Layers, type Stack } from "../helpers/stack.ts";

const BS = 4096;
const STACKS: Record<string, Layers> = {
  "codec": {},
  "guard": { guard: {} },
  "guard, zero-block cache": { guard: {}, zeroCache: true },
  "guard, zero-block cache, block cache": { guard: {}, zeroCache: true, cache: {} },
  "block cache without a guard": { cache: {} },
};

test("isAllZero knows the shared zero block, and still reads other buffers", () => {
  expect(isAllZero(zeroBlock(BS))).toBe(true);
  expect(zeroBlock(BS)).toBe(zeroBlock(BS));
  const other = new Uint8Array(BS);
  expect(isAllZero(other)).toBe(true);
  other[BS - 1] = 1;
  expect(isAllZero(other)).toBe(false);
});

for (const [name, layers] of Object.entries(STACKS)) {
  test(`${name}: writes into blocks that read as zeros never reach the shared zero block`, async () => {
    const stack = testStack(new MemoryObjects(BS, 16), layers) as Partial<Stack<Required<Layers>>> & Stack<{}>;
    const top = stack.cache ?? stack.zero ?? stack.guard ?? stack.codec;
    const file = new BackedFile(top, stack.cache);
    expect(isAllZero(await top.readBlock(3))).toBe(true);
    await top.writeBlockPart(3, 100, new Uint8Array(50).fill(7));
    await file.write(5 * BS + 10, new Uint8Array(20).fill(9));
    await top.flush();
    expect(isAllZero(zeroBlock(BS))).toBe(true);
    expect([...zeroBlock(BS)].every((b) => b === 0)).toBe(true);
    expect((await top.readBlock(3))[120]).toBe(7);
    expect((await top.readBlock(5))[15]).toBe(9);
    expect([...(await top.readBlock(4))].every((b) => b === 0)).toBe(true);
    await top.close();
  });
}
