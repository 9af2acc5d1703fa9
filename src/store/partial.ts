/**
 * Partial-block reads and writes for layers that can only move whole blocks: read the block, then
 * slice it or merge into it. The block cache does better; the backends use these.
 */
import type { BlockStore } from "./block-store.ts";
import { zeroToNull } from "./block-store.ts";

export async function readPartOf(store: BlockStore, block: number, offset: number, length: number) {
  const whole = await store.readBlock(block);
  return whole.subarray(offset, offset + length);
}

export async function writePartOf(store: BlockStore, block: number, offset: number, data: Uint8Array) {
  const merged = new Uint8Array(store.blockSize);
  merged.set(await store.readBlock(block));
  merged.set(data, offset);
  await store.writeBlock(block, zeroToNull(merged));
}
