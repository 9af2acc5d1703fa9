/** The block cache file on its own: reload, torn and damaged slots, resizing, old versions, read-ahead from it. */
import { afterEach, expect, test } from "bun:test";
import { closeSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { CacheFile, type LoadedBlock } from "../../src/store/block-cache/cache-file.ts";
import { runtime } from "../../src/runtime/index.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectToStore } from "../../src/object/object-store.ts";
import { md5Hex } from "../../src/util/md5.ts";
import { pattern, tempDir, waitFor } from "../helpers/data.ts";
import { cacheInFile, statOf } from "../helpers/stores.ts";
import { StatsView } from "../../src/app/stats-view.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function workDir(tag: string) {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

const BS = 4096;

/** A loaded block's bytes as its slot holds them: null for the zero block, "torn" if they fail their CRC. */
async function bytesOf(file: CacheFile, b: LoadedBlock): Promise<Uint8Array | null | "torn"> {
  if (b.zero) return null;
  const into = new Uint8Array(BS);
  return (await file.readSlot(b.slot, b.crc, into)) ? into : "torn";
}

test("blocks come back after reopening, clean and dirty, with the MD5 of clean ones", async () => {
  const path = join(workDir("cf"), "cache");
  const { file } = CacheFile.open(path, BS, 100, 8);
  file.store(1, pattern(BS, 1), false);
  file.store(2, pattern(BS, 2), true);
  file.store(3, null, true);
  file.close();
  const again = CacheFile.open(path, BS, 100, 8);
  const byBlock = new Map(again.blocks.map((b) => [b.block, b]));
  expect(await bytesOf(again.file, byBlock.get(1)!)).toEqual(pattern(BS, 1));
  expect(byBlock.get(1)!.dirty).toBe(false);
  expect(byBlock.get(1)!.md5).toMatch(/^[0-9a-f]{32}$/);
  expect(await bytesOf(again.file, byBlock.get(2)!)).toEqual(pattern(BS, 2));
  expect(byBlock.get(2)!.dirty).toBe(true);
  expect(byBlock.get(3)!.zero).toBe(true);
  again.file.close();
});

test("a crash between writing a new version and freeing the old one: the newer wins; a torn slot fails its CRC", async () => {
  const path = join(workDir("cf"), "cache");
  const { file } = CacheFile.open(path, BS, 100, 8);
  const old = file.store(5, pattern(BS, 10), true)!;
  const fresh = file.store(5, pattern(BS, 11), true)!; // (crash here: `old` is never released)
  expect(fresh).not.toBe(old);
  file.store(6, pattern(BS, 12), true);
  file.close();
  // Tear block 6's slot, as a kill in the middle of its write would.
  const dataStart = Math.ceil((4096 + 8 * 40) / 4096) * 4096;
  const fd = openSync(path, "r+");
  const slot6 = CacheFile.open(path, BS, 100, 8);
  const six = slot6.blocks.find((b) => b.block === 6)!.slot;
  slot6.file.close();
  writeSync(fd, new Uint8Array(100).fill(0xee), 0, 100, dataStart + six * BS + 50);
  closeSync(fd);
  const loaded = CacheFile.open(path, BS, 100, 8);
  expect(await bytesOf(loaded.file, loaded.blocks.find((b) => b.block === 5)!)).toEqual(pattern(BS, 11));
  expect(await bytesOf(loaded.file, loaded.blocks.find((b) => b.block === 6)!)).toBe("torn");
  loaded.file.close();
});

test("another slot count is a resize that keeps the blocks (unsaved first); another disk size with unsaved blocks is refused", async () => {
  const path = join(workDir("cf"), "cache");
  const { file } = CacheFile.open(path, BS, 100, 8);
  for (let b = 0; b < 6; b++) file.store(b, pattern(BS, b + 1), b >= 4);
  file.close();
  const smaller = CacheFile.open(path, BS, 100, 3);
  expect(smaller.blocks.length).toBe(3);
  expect(smaller.blocks.filter((b) => b.dirty).map((b) => b.block).sort()).toEqual([4, 5]); // unsaved ones are kept first
  for (const b of smaller.blocks) expect(await bytesOf(smaller.file, b)).toEqual(pattern(BS, b.block + 1));
  smaller.file.close();
  expect(() => CacheFile.open(path, BS * 2, 50, 3)).toThrow(/unsaved blocks of a disk with other sizes/);
});

test("read-ahead brings blocks back from the cache file once memory is full: a sequential reader finds them there", async () => {
  const dir = workDir("cf-ahead");
  const N = 96;
  const { cache, file } = cacheInFile(new MemoryObjects(BS, N), join(dir, "cache"), N + 8, { size: N, memoryBlocks: 8, maxDirty: N, threads: 2, readAhead: 3, readAheadTrigger: 1 });
  // Counts since the last view.reset(), as the stats file shows them.
  const view = new StatsView();
  view.source = () => cache.stats();
  const value = (name: string) => statOf({ stats: () => view.sinceReset() }, name);
  try {
    for (let b = 0; b < N; b++) await cache.writeBlock(b, pattern(BS, b + 1));
    await cache.flush();
    await waitFor("every block in the cache file", () => value("blocks not yet in the file") === 0);
    expect(value("blocks in memory")).toBe(8); // full
    // Which 8 depends on the write-back (it pages a block back in to upload it): the reader's last
    // 8 are made the ones, so that below every block is read from the file once.
    for (let b = N - 8; b < N; b++) await cache.readBlock(b);
    view.reset();
    for (let b = 0; b < N; b++) {
      expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
      await new Promise((r) => setTimeout(r, 2)); // the reader's pace: read-ahead keeps up
    }
    expect(value("cache file reads")).toBe(N); // each block once
    // All but the first few were in memory when the reader came: read-ahead had brought them.
    expect(value("read-ahead hits")).toBeGreaterThanOrEqual(N - 4);
    expect(value("blocks in memory")).toBeLessThanOrEqual(8);
    // A reader faster than the file: it catches up with read-ahead, which still keeps ahead of it
    // (what the reader waited for counts as read), and each block still comes from the file once.
    const readSlot = file.readSlot.bind(file);
    file.readSlot = (slot, crc, into) => new Promise((r) => setTimeout(r, 5)).then(() => readSlot(slot, crc, into));
    view.reset();
    for (let b = 0; b < N; b++) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
    expect(value("read-ahead fetches")).toBeGreaterThanOrEqual(N - 4);
    expect(value("cache file reads")).toBe(N);
  } finally {
    await cache.close();
  }
});

test("with a cache file a block is hashed once: its upload carries the MD5 its record keeps", async () => {
  const dir = workDir("cf-md5");
  const N = 16;
  const carried = new Map<number, string | undefined>();
  class Recording extends MemoryObjects {
    override async put(block: number, object: ObjectToStore): Promise<undefined> {
      carried.set(block, object.md5);
      return super.put(block, object);
    }
  }
  const path = join(dir, "cache");
  const { cache } = cacheInFile(new Recording(BS, N), path, N + 8, { size: N, memoryBlocks: N, maxDirty: N, threads: 2 });
  try {
    for (let b = 1; b < N; b++) await cache.writeBlock(b, pattern(BS, b));
    await cache.flush();
  } finally {
    await cache.close();
  }
  for (let b = 1; b < N; b++) expect(carried.get(b)).toBe(md5Hex(pattern(BS, b)));
  const again = CacheFile.open(path, BS, N, N + 8);
  try {
    expect(again.blocks.map((r) => r.block).sort((x, y) => x - y)).toEqual(Array.from({ length: N - 1 }, (_, i) => i + 1));
    for (const record of again.blocks) {
      expect(record.dirty).toBe(false);
      expect(record.md5).toBe(md5Hex(pattern(BS, record.block)));
    }
  } finally {
    again.file.close();
  }
});

test("a record damaged on disk is never acted on: its block is read from storage, with one log line", async () => {
  const dir = workDir("damaged");
  const path = join(dir, "cache");
  const data = pattern(BS, 51);
  const { file } = CacheFile.open(path, BS, 64, 8);
  file.store(5, data, false);
  file.store(6, null, true); // a zero-dirty record: recovery would delete block 6
  file.close();
  // Flip one byte in each record: the block number of the first, the state of the second.
  const fd = openSync(path, "r+");
  const one = new Uint8Array(1);
  for (const [slot, at] of [[0, 4], [1, 0]] as const) {
    readSync(fd, one, 0, 1, 4096 + slot * 40 + at);
    one[0]! ^= 0x01;
    writeSync(fd, one, 0, 1, 4096 + slot * 40 + at);
  }
  closeSync(fd);
  const reopened = CacheFile.open(path, BS, 64, 8);
  expect(reopened.blocks).toEqual([]);
  expect(reopened.damaged).toBe(2);
  reopened.file.close();

  // Random bytes over the whole directory: nothing is taken for a block.
  const garbage = openSync(path, "r+");
  writeSync(garbage, pattern(8 * 40, 53), 0, 8 * 40, 4096);
  closeSync(garbage);
  const again = CacheFile.open(path, BS, 64, 8);
  expect(again.blocks).toEqual([]);
  expect(again.damaged).toBe(8);
  again.file.close();
});

test("a version 1 cache file (records without their own CRC) is read and rewritten, unsaved blocks kept", async () => {
  const dir = workDir("v1");
  const path = join(dir, "cache");
  const data = pattern(BS, 61);
  // A version 1 file as the previous release wrote it: header, 32-byte records, page-aligned slots.
  const header = new Uint8Array(4096);
  const h = new DataView(header.buffer);
  h.setUint32(0, 0x53334243, true);
  h.setUint32(4, 1, true);
  h.setUint32(8, BS, true);
  h.setUint32(12, 8, true);
  h.setUint32(16, 64, true);
  h.setUint32(20, 0xabcdef01, true);
  const record = new Uint8Array(32);
  const r = new DataView(record.buffer);
  r.setUint8(0, 2); // dirty
  r.setUint32(4, 9, true);
  r.setUint32(8, 1, true);
  r.setUint32(12, runtime.crc32(data), true);
  const fd = openSync(path, "w+");
  writeSync(fd, header, 0, 4096, 0);
  writeSync(fd, record, 0, 32, 4096);
  writeSync(fd, data, 0, BS, 8192);
  closeSync(fd);
  const { file, blocks, tokens } = CacheFile.open(path, BS, 64, 8);
  expect(blocks.map((b) => [b.block, b.dirty])).toEqual([[9, true]]);
  expect(await bytesOf(file, blocks[0]!)).toEqual(data);
  expect(tokens).toEqual([0xabcdef01]);
  file.close();
  const v2 = CacheFile.open(path, BS, 64, 8);
  expect(v2.blocks.map((b) => [b.block, b.dirty])).toEqual([[9, true]]);
  v2.file.close();
});
