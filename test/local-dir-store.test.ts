import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FsError } from "../src/errors.ts";
import { LocalDirStore } from "../src/store/backend/local-dir.ts";
import { MemoryStore } from "../src/store/backend/memory.ts";
import type { BlockStore } from "../src/store/block-store.ts";
import { isAllZero } from "../src/store/block-store.ts";
import { pattern, tempDir } from "./helpers/data.ts";

const BS = 4096;
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function localStore(prefix = "", hashPrefix = false) {
  const dir = tempDir("store");
  dirs.push(dir);
  return { dir, store: await LocalDirStore.open({ dir, prefix, blockSize: BS, numBlocks: 64, hashPrefix }) };
}

const stat = (store: BlockStore, name: string) =>
  Number(store.stats()[0]!.values.find(([n]) => n === name)![1]);

for (const [kind, make] of [
  ["local directory", async () => (await localStore()).store],
  ["memory", async () => new MemoryStore(BS, 64)],
] as const) {
  test(`${kind}: a block never written reads as zeros`, async () => {
    const store = await make();
    const data = await store.readBlock(7);
    expect(data.length).toBe(BS);
    expect(isAllZero(data)).toBe(true);
    expect(stat(store, "zero reads")).toBe(1);
  });

  test(`${kind}: write, read back, zero write deletes, list`, async () => {
    const store = await make();
    const a = pattern(BS, 1);
    const b = pattern(BS, 2);
    await store.writeBlock(3, a);
    await store.writeBlock(9, b);
    a[0] = a[0]! ^ 0xff; // the store must have copied or written the bytes, not kept our buffer
    expect(await store.readBlock(9)).toEqual(b);
    expect((await store.readBlock(3))[0]).toBe(pattern(BS, 1)[0]!);
    const listed: number[] = [];
    await store.listBlocks((n) => listed.push(n));
    expect(listed.sort((x, y) => x - y)).toEqual([3, 9]);
    await store.writeBlock(3, null);
    const after: number[] = [];
    await store.listBlocks((n) => after.push(n));
    expect(after).toEqual([9]);
    expect(isAllZero(await store.readBlock(3))).toBe(true);
    expect(stat(store, "writes")).toBe(2);
    expect(stat(store, "deletes")).toBe(1);
    store.resetStats();
    expect(stat(store, "writes")).toBe(0);
  });

  test(`${kind}: partial writes merge into the block; zeroing every byte deletes it`, async () => {
    const store = await make();
    await store.writeBlockPart(5, 100, pattern(50, 3));
    const whole = await store.readBlock(5);
    expect(whole.subarray(100, 150)).toEqual(pattern(50, 3));
    expect(isAllZero(whole.subarray(0, 100))).toBe(true);
    expect(await store.readBlockPart(5, 100, 50)).toEqual(pattern(50, 3));
    await store.writeBlockPart(5, 100, new Uint8Array(50));
    const listed: number[] = [];
    await store.listBlocks((n) => listed.push(n));
    expect(listed).toEqual([]);
  });
}

test("local directory: files are named like S3 objects, with prefix and hash prefix", async () => {
  const { dir, store } = await localStore("disk1/", true);
  await store.writeBlock(0, pattern(BS, 4));
  await store.flush();
  expect(readdirSync(join(dir, "disk1"))).toEqual(["c448b72c-00000000"]);
  const plain = await localStore("img-");
  await plain.store.writeBlock(63, pattern(BS, 5));
  writeFileSync(join(plain.dir, "img-s3backer-mounted"), "x"); // not a block: ignored by list
  writeFileSync(join(plain.dir, "other-00000001"), pattern(BS, 6)); // other prefix: ignored
  const listed: number[] = [];
  await plain.store.listBlocks((n) => listed.push(n));
  expect(listed).toEqual([63]);
  expect(existsSync(join(plain.dir, "img-0000003f"))).toBe(true);
});

test("local directory: a block file of the wrong size is an I/O error, never data", async () => {
  const { dir, store } = await localStore();
  writeFileSync(join(dir, "00000002"), new Uint8Array(100));
  const err = await store.readBlock(2).catch((e) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(5);
  expect(stat(store, "errors")).toBe(1);
});

test("local directory: a missing directory is refused at open", async () => {
  const err = await LocalDirStore.open({ dir: "/nonexistent/x", prefix: "", blockSize: BS, numBlocks: 4, hashPrefix: false }).catch((e) => e);
  expect(err).toBeInstanceOf(FsError);
});
