/** The object stores of --test mode (a local directory, memory) against one contract, then the directory's own rules. */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { FsError } from "../../src/errors.ts";
import { LocalDirStore } from "../../src/object/local-dir.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectStore } from "../../src/object/object-store.ts";
import { pattern, tempDir } from "../helpers/data.ts";
import { statOf } from "../helpers/stores.ts";

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

const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const listed = async (store: ObjectStore) => {
  const blocks: number[] = [];
  await store.list((b) => blocks.push(b));
  return blocks.sort((x, y) => x - y);
};

for (const [kind, make] of [
  ["local directory", async () => (await localStore()).store],
  ["memory", async () => new MemoryObjects(BS, 64)],
] as const) {
  test(`${kind}: no object until one is put; get and head give its MD5 (hashed when asked: put has none to give)`, async () => {
    const store = await make();
    expect(await store.get(7)).toBeNull();
    expect(await store.head(7)).toBeNull();
    expect(await store.anyBlock()).toBeUndefined();
    const a = pattern(BS, 1);
    expect(await store.put(7, { body: a })).toBeUndefined();
    const got = (await store.get(7))!;
    expect({ body: got.body, md5: got.md5, encoding: got.encoding, hmac: got.hmac }).toEqual({ body: a, md5: md5(a), encoding: null, hmac: null });
    expect(await store.head(7)).toEqual({ md5: md5(a), encoding: null });
    expect(await store.anyBlock()).toBe(7);
  });

  test(`${kind}: a put keeps its own copy; delete and list`, async () => {
    const store = await make();
    const a = pattern(BS, 1);
    await store.put(3, { body: a });
    await store.put(9, { body: pattern(BS, 2) });
    a[0] = a[0]! ^ 0xff; // the store must have copied or written the bytes, not kept our buffer
    expect((await store.get(3))!.body).toEqual(pattern(BS, 1));
    expect(await listed(store)).toEqual([3, 9]);
    await store.delete(3);
    await store.delete(3); // deleting nothing is fine
    expect(await listed(store)).toEqual([9]);
    expect(await store.get(3)).toBeNull();
    expect(statOf(store, "deletes")).toBe(2);
  });
}

test("local directory: files are named like S3 objects, with prefix and hash prefix", async () => {
  const { dir, store } = await localStore("disk1/", true);
  await store.put(0, { body: pattern(BS, 4) });
  await store.flush();
  expect(readdirSync(join(dir, "disk1"))).toEqual(["c448b72c-00000000"]);
  const plain = await localStore("img-");
  await plain.store.put(63, { body: pattern(BS, 5) });
  writeFileSync(join(plain.dir, "img-s3backer-mounted"), "x"); // not a block: ignored by list
  writeFileSync(join(plain.dir, "other-00000001"), pattern(BS, 6)); // other prefix: ignored
  expect(await listed(plain.store)).toEqual([63]);
  expect(existsSync(join(plain.dir, "img-0000003f"))).toBe(true);
});

test("local directory: a block file of the wrong size is an I/O error, never data; an encoded object is refused", async () => {
  const { dir, store } = await localStore();
  writeFileSync(join(dir, "00000002"), new Uint8Array(100));
  const err = await store.get(2).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(5);
  expect(statOf(store, "errors")).toBe(1);
  const encoded = await store.put(4, { body: pattern(BS, 1), encoding: "deflate" }).catch((e: unknown) => e);
  expect(encoded).toBeInstanceOf(FsError);
});

test("local directory: a missing directory is refused at open", async () => {
  const err = await LocalDirStore.open({ dir: "/nonexistent/x", prefix: "", blockSize: BS, numBlocks: 4, hashPrefix: false }).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(FsError);
});
