/**
 * A disk over a chain of layers (src/object/layers/), on memory levels: where a read finds a
 * block and how many requests it costs, before and after the levels are listed; zeros over a base
 * (markers, or plain deletes where nothing shows through); a listing racing writes; a snapshot's
 * hold and switch; each level's blocks decrypted with the key of the disk that wrote them.
 */
import { expect, test } from "bun:test";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectStore, StoredObject } from "../../src/object/object-store.ts";
import { LayeredObjects, type LayerLevel } from "../../src/object/layers/layered-objects.ts";
import { Codec } from "../../src/store/codec/codec.ts";
import { BlockEncryption } from "../../src/store/codec/block-encryption.ts";
import { cipherByName } from "../../src/store/codec/ciphers.ts";
import { pattern } from "../helpers/data.ts";

const BS = 512;
const N = 64;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A memory level that counts the requests made of it. */
class Counted extends MemoryObjects {
  gets = 0;
  puts = 0;
  deletes = 0;
  override get(block: number): Promise<StoredObject | null> {
    this.gets++;
    return super.get(block);
  }
  override put(block: number, object: Parameters<MemoryObjects["put"]>[1]) {
    this.puts++;
    return super.put(block, object);
  }
  override delete(block: number) {
    this.deletes++;
    return super.delete(block);
  }
}

const data = (seed: number) => ({ body: pattern(BS, seed) });
const marker = { body: new Uint8Array(0) };

function chain(levels: Counted[], o: { trustLive?: boolean; writable?: boolean } = {}) {
  const named: LayerLevel[] = levels.map((store, i) => ({ store, layer: `l${i}/`, disk: i === 0 ? "top/" : `d${i}/`, blocks: i === 0 ? Number.MAX_SAFE_INTEGER : N }));
  return new LayeredObjects(named, { disk: "top/", trustLive: o.trustLive ?? true, writable: o.writable ?? true, close: async () => {} });
}

const noErrors = (layer: string, err: unknown) => {
  throw new Error(`${layer}: ${err}`);
};

test("a read finds the nearest level holding the block; unlisted it asks level by level, listed it asks only there", async () => {
  const [top, mid, bottom] = [new Counted(BS, N), new Counted(BS, N), new Counted(BS, N)];
  await bottom.put(1, data(1));
  await bottom.put(2, data(2));
  await mid.put(2, data(22));
  await top.put(3, data(3));
  const disk = chain([top, mid, bottom]);

  expect((await disk.get(1))!.body).toEqual(pattern(BS, 1));
  expect([top.gets, mid.gets, bottom.gets]).toEqual([1, 1, 1]); // fell through
  expect((await disk.get(2))!.body).toEqual(pattern(BS, 22)); // the nearer level wins
  expect(await disk.get(9)).toBeNull();

  await disk.listLevels(noErrors);
  for (const s of [top, mid, bottom]) s.gets = 0;
  expect((await disk.get(1))!.body).toEqual(pattern(BS, 1));
  expect([top.gets, mid.gets, bottom.gets]).toEqual([0, 0, 1]);
  expect(await disk.get(9)).toBeNull(); // absent everywhere: no request at all
  expect((await disk.get(3))!.body).toEqual(pattern(BS, 3));
  expect([top.gets, mid.gets, bottom.gets]).toEqual([1, 0, 1]);
  // Which disk wrote it: the codec decrypts with that disk's key.
  expect((await disk.get(1))!.disk).toBe("d2/");
  expect((await disk.get(3))!.disk).toBeUndefined();
});

test("zeros over a base are a marker that hides it; where nothing shows through they are a plain delete", async () => {
  const [top, base] = [new Counted(BS, N), new Counted(BS, N)];
  await base.put(5, data(5));
  const disk = chain([top, base]);
  // Not listed yet: the base may hold anything, so a marker.
  await disk.delete(6);
  expect((await top.get(6))!.body.length).toBe(0);
  await disk.listLevels(noErrors);
  await disk.delete(5);
  expect((await top.get(5))!.body.length).toBe(0);
  expect(await disk.get(5)).toBeNull();
  expect((await base.get(5))!.body).toEqual(pattern(BS, 5)); // the base keeps its data
  top.puts = top.deletes = 0;
  await disk.delete(7); // nothing below: no marker
  expect([top.puts, top.deletes]).toEqual([0, 1]);
  // Data over a marker, then zeros again.
  await disk.put(5, data(55));
  expect((await disk.get(5))!.body).toEqual(pattern(BS, 55));
  await disk.delete(5);
  expect(await disk.get(5)).toBeNull();
  const listed: number[] = [];
  await disk.list((b) => listed.push(b));
  expect(listed).toEqual([]);
});

test("a marker in a lower level hides the levels below it; each level shows only its visible blocks", async () => {
  const [top, mid, bottom] = [new Counted(BS, N), new Counted(BS, N), new Counted(BS, N)];
  await bottom.put(4, data(4));
  await mid.put(4, marker);
  await bottom.put(N - 1, data(9));
  const levels: LayerLevel[] = [
    { store: top, layer: "t/", disk: "t/", blocks: Number.MAX_SAFE_INTEGER },
    { store: mid, layer: "m/", disk: "t/", blocks: N },
    { store: bottom, layer: "b/", disk: "b/", blocks: N - 1 }, // a shrink hid its last block
  ];
  const disk = new LayeredObjects(levels, { disk: "t/", trustLive: true, writable: true, close: async () => {} });
  expect(await disk.get(4)).toBeNull();
  expect(await disk.get(N - 1)).toBeNull();
  await disk.listLevels(noErrors);
  expect(await disk.get(4)).toBeNull();
  expect(bottom.gets).toBe(0);
  // Zeros over a block the lower marker already hides: nothing shows through, so no marker.
  top.puts = 0;
  await disk.delete(4);
  expect(top.puts).toBe(0);
});

test("a listing that runs while blocks are written keeps what the writes said", async () => {
  const [top, base] = [new Counted(BS, N), new Counted(BS, N)];
  await base.put(1, data(1));
  await top.put(2, data(2));
  const disk = chain([top, base]);
  // The top's listing is held until the writes below are done: it predates them.
  let releaseList!: () => void;
  const gate = new Promise<void>((r) => (releaseList = r));
  const list = top.list.bind(top);
  const snapshot: [number, number | undefined][] = [];
  await list((b, s) => snapshot.push([b, s]));
  top.list = async (found) => {
    await gate;
    for (const [b, s] of snapshot) found(b, s);
  };
  const listing = disk.listLevels(noErrors);
  await disk.delete(2); // the stale listing says block 2 holds data
  await disk.put(3, data(3)); // and that block 3 is absent
  releaseList();
  await listing;
  top.gets = base.gets = 0;
  expect(await disk.get(2)).toBeNull();
  expect((await disk.get(3))!.body).toEqual(pattern(BS, 3));
  expect((await disk.get(1))!.body).toEqual(pattern(BS, 1));
  expect([top.gets, base.gets]).toEqual([1, 1]); // 2 is zero by the map, 3 comes from the top, 1 from the base
});

test("a hold waits for writes in flight and keeps new ones back; after the switch writes go to the new layer", async () => {
  const [top, base] = [new Counted(BS, N), new Counted(BS, N)];
  await base.put(1, data(1));
  const disk = chain([top, base]);
  await disk.listLevels(noErrors);
  let finishPut!: () => void;
  const slow = new Promise<void>((r) => (finishPut = r));
  const put = top.put.bind(top);
  top.put = async (b, o) => {
    await slow;
    return put(b, o);
  };
  const inFlight = disk.put(2, data(2));
  let held = false;
  const holding = disk.hold().then((release) => {
    held = true;
    return release;
  });
  await sleep(5);
  expect(held).toBe(false); // the write in flight is waited for
  finishPut();
  await inFlight;
  const release = await holding;
  const next = new Counted(BS, N);
  let later = false;
  const after = disk.put(4, data(4)).then(() => (later = true));
  await sleep(5);
  expect(later).toBe(false);
  disk.switchLive(next, "l-new/");
  release();
  await after;
  expect((await next.get(4))!.body).toEqual(pattern(BS, 4));
  expect(await top.get(4)).toBeNull(); // the old layer is frozen
  expect((await disk.get(2))!.body).toEqual(pattern(BS, 2)); // read through from the old layer
  await disk.delete(2); // now below: a marker in the new layer
  expect((await next.get(2))!.body.length).toBe(0);
  expect((await top.get(2))!.body).toEqual(pattern(BS, 2));
  expect(disk.live).toBe("l-new/");
});

test("a read-only chain refuses writes", async () => {
  const disk = chain([new Counted(BS, N), new Counted(BS, N)], { writable: false });
  expect(String(await disk.put(1, data(1)).catch((e: unknown) => e))).toMatch(/read-only/);
});

test("the codec decrypts each level's blocks with the key of the disk that wrote them", async () => {
  const cipher = cipherByName("aes-128-cbc")!;
  const keys = new Map<string, Promise<BlockEncryption>>();
  const keyOf = (disk: string) => keys.get(disk) ?? keys.set(disk, BlockEncryption.create(cipher, "pw", `bucket/${disk}`, 16)).get(disk)!;
  const [top, base] = [new Counted(BS, N), new Counted(BS, N)];
  const baseCodec = new Codec(base, { compression: undefined, encryption: await keyOf("d1/"), defaultEncoding: undefined, keepSizes: false });
  await baseCodec.writeBlock(1, pattern(BS, 1));
  const disk = chain([top, base]);
  const codec = new Codec(disk, { compression: undefined, encryption: await keyOf("top/"), defaultEncoding: undefined, keepSizes: false, keyOf });
  await codec.writeBlock(2, pattern(BS, 2));
  expect(await codec.readBlock(1)).toEqual(pattern(BS, 1));
  expect(await codec.readBlock(2)).toEqual(pattern(BS, 2));
  // Without the per-disk key (one key for the chain), the base's block does not verify.
  const oneKey = new Codec(disk, { compression: undefined, encryption: await keyOf("top/"), defaultEncoding: undefined, keepSizes: false });
  expect(String(await oneKey.readBlock(1).catch((e: unknown) => e))).toMatch(/signature does not verify/);
});

test("a disk of one level passes everything through", async () => {
  const top = new Counted(BS, N);
  const disk = chain([top]);
  await disk.delete(3);
  expect([top.puts, top.deletes]).toEqual([0, 1]);
  await disk.put(3, data(3));
  expect((await disk.get(3))!.body).toEqual(pattern(BS, 3));
  expect(disk.layered).toBe(false);
  const store: ObjectStore = disk;
  expect(store.numBlocks).toBe(N);
});
