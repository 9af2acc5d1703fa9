/**
 * The codec and the consistency guard over the memory object store: no HTTP, so each case is one
 * exact situation (a stale answer, a tampered body), and runs under Deno too.
 */
import { expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Errno, FsError } from "../../src/errors.ts";
import { BlockEncryption } from "../../src/store/codec/block-encryption.ts";
import { cipherByName } from "../../src/store/codec/ciphers.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectToStore, StoredObject } from "../../src/object/object-store.ts";
import { pattern } from "../helpers/data.ts";
import { testStack } from "../helpers/stack.ts";
import { statOf } from "../helpers/stores.ts";

const BS = 4096;
const md5 = (b: Uint8Array) => createHash("md5").update(b).digest("hex");
const compressible = () => new Uint8Array(BS).fill(7, 0, 3000);

test("codec: compressed and encrypted objects carry their Content-Encoding and read back; zero blocks are no object", async () => {
  const objects = new MemoryObjects(BS, 16);
  const encryption = await BlockEncryption.create(cipherByName("aes-128-cbc")!, "pw", "bucket/prefix/", 16);
  const { codec } = testStack(objects, { codec: { compression: { algorithm: "deflate", level: 6 }, encryption } });
  const data = compressible();
  const stored = await codec.writeVerified(3, data);
  const object = (await objects.get(3))!;
  expect(object.encoding).toBe("deflate, encrypt-AES-128-CBC");
  expect(object.body.length).toBeLessThan(BS);
  expect(stored).toBe(md5(object.body)); // the MD5 of what is stored, for the guard
  expect(await codec.readBlock(3)).toEqual(data);
  expect(await codec.storedMd5(3)).toBe(md5(data)); // of the plain bytes, for the cache file
  expect(await codec.writeVerified(3, new Uint8Array(BS))).toBeNull();
  expect(await objects.get(3)).toBeNull();
  expect(await codec.readBlock(3)).toEqual(new Uint8Array(BS));
});

test("codec: a tampered encrypted body, or a plain one on an encrypted disk, is EIO, never data", async () => {
  const objects = new MemoryObjects(BS, 16);
  const encryption = await BlockEncryption.create(cipherByName("aes-128-cbc")!, "pw", "bucket/prefix/", 16);
  const { codec } = testStack(objects, { codec: { compression: { algorithm: "deflate", level: 6 }, encryption } });
  await codec.writeBlock(1, pattern(BS, 1));
  const object = (await objects.get(1))!;
  object.body[10] = object.body[10]! ^ 1;
  const err = await codec.readBlock(1).catch((e: unknown) => e);
  expect((err as FsError).errno).toBe(Errno.EIO);
  await objects.put(2, { body: pattern(BS, 2) }); // written by someone without --encrypt
  expect(((await codec.readBlock(2).catch((e: unknown) => e)) as FsError).errno).toBe(Errno.EIO);
});

/** Memory objects that answer with the previous version of a block for a while after each put. */
class StaleObjects extends MemoryObjects {
  private readonly previous = new Map<number, { object: StoredObject | null; until: number }>();
  staleMs = 0;
  override async get(block: number) {
    const old = this.previous.get(block);
    if (old && performance.now() < old.until) return old.object;
    return super.get(block);
  }
  override async put(block: number, object: ObjectToStore) {
    this.previous.set(block, { object: await super.get(block), until: performance.now() + this.staleMs });
    return super.put(block, object);
  }
}

test("guard: a stale answer after a write is asked again until the new version comes; without the guard it is returned", async () => {
  const objects = new StaleObjects(BS, 16);
  const { codec, guard } = testStack(objects, { guard: { cacheSize: 16 } });
  await guard.writeBlock(4, pattern(BS, 1));
  objects.staleMs = 100;
  await guard.writeBlock(4, pattern(BS, 2));
  expect(await codec.readBlock(4)).toEqual(pattern(BS, 1)); // the store does lie...
  expect(await guard.readBlock(4)).toEqual(pattern(BS, 2)); // ...and the guard does not pass it on
  expect(statOf(guard, "stale answers")).toBeGreaterThan(0);
});

test("guard: a store stale for longer than --maxRetryPause gives EIO, not the old data", async () => {
  const objects = new StaleObjects(BS, 16);
  const { guard } = testStack(objects, { guard: { cacheSize: 16, maxRetryPauseMs: 50 } });
  await guard.writeBlock(4, pattern(BS, 1));
  objects.staleMs = 10_000;
  await guard.writeBlock(4, pattern(BS, 2));
  const err = await guard.readBlock(4).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(Errno.EIO);
});
