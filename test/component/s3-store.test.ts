/** The S3 layer against the embedded server, including a server that fails on purpose. */
import { afterAll, beforeEach, expect, test } from "bun:test";
import { FsError } from "../../src/errors.ts";
import { isAllZero } from "../../src/store/block-store.ts";
import { ZeroBlockCache } from "../../src/store/zero-block-cache/zero-block-cache.ts";
import { detectGeometry } from "../../src/object/s3/auto-detect.ts";
import { pattern } from "../helpers/data.ts";
import { startEmbedded } from "../helpers/s3.ts";
import { testClient, testKeys, testS3Store } from "../helpers/stack.ts";
import { plainCodec } from "../helpers/stores.ts";
import { crc32ToBase64 } from "../../src/util/checksum.ts";
import { runtime } from "../../src/runtime/index.ts";

const crc32Base64 = (data: Uint8Array) => crc32ToBase64(runtime.crc32(data));

const server = startEmbedded(["bkt"]);
afterAll(() => server.stop());
beforeEach(() => server.reset());

const BS = 4096;

function store(opts: { blocks?: number; maxRetryPauseMs?: number; secret?: string; timeoutMs?: number; prefix?: string; hashPrefix?: boolean } = {}) {
  const client = testClient({
    baseURL: server.url, bucket: "bkt", credentials: testKeys(opts.secret), timeoutMs: opts.timeoutMs ?? 5000, maxRetryPauseMs: opts.maxRetryPauseMs ?? 2000,
  });
  const objects = testS3Store(client, { prefix: opts.prefix ?? `p${Math.random().toString(36).slice(2)}/`, hashPrefix: opts.hashPrefix ?? false, numBlocks: opts.blocks ?? 4096, putHeaders: { "x-amz-acl": "private" }, listThreads: 16 });
  return { s3: plainCodec(objects), objects, client };
}

const count = (s: { stats(): { values: readonly (readonly [string, number | string, ...unknown[]])[] }[] }, name: string) =>
  Number(s.stats().flatMap((g) => g.values).find(([n]) => n === name)?.[1]);

test("absent blocks read as zeros; written blocks read back; zero writes are DELETEs", async () => {
  const { s3, objects } = store();
  expect(isAllZero(await s3.readBlock(5))).toBe(true);
  await s3.writeBlock(5, pattern(BS, 1));
  expect(await s3.readBlock(5)).toEqual(pattern(BS, 1));
  expect(server.objects.get("bkt", objects.key(5))!.contentType).toBe("application/x-s3backer-block");
  await s3.writeBlock(5, null);
  expect(server.objects.get("bkt", objects.key(5))).toBeUndefined();
  expect(server.counters.requests).toMatchObject({ GET: 2, PUT: 1, DELETE: 1 });
});

test("block 0 carries the size metadata the original writes, and auto-detection reads it", async () => {
  const { s3, objects, client } = store({ blocks: 1000 });
  await s3.writeBlock(0, pattern(BS, 2));
  const meta = server.objects.get("bkt", objects.key(0))!.meta;
  expect(meta).toEqual({
    "x-amz-meta-s3backer-blocksize": "4096",
    "x-amz-meta-s3backer-filesize": String(1000 * BS),
    "x-amz-meta-s3backer-crc32": crc32Base64(pattern(BS, 2)),
  });
  expect(await detectGeometry(client, objects.key(0))).toEqual({ blockSize: 4096, fileSize: 1000 * BS });
  expect(await detectGeometry(client, objects.key(1))).toBe("no disk");
});

test("listing finds every block across pages and the 16 parallel slices, and nothing else", async () => {
  const { s3, objects } = store({ prefix: "list/", hashPrefix: true, blocks: 5000 });
  const written = Array.from({ length: 2500 }, (_, i) => i * 2);
  for (const b of written) server.objects.put("bkt", objects.key(b), { body: pattern(BS, b), etag: "x", contentType: "", contentEncoding: undefined, meta: {}, lastModified: 0 });
  server.objects.put("bkt", "list/s3backer-mounted", { body: new Uint8Array(1), etag: "x", contentType: "", contentEncoding: undefined, meta: {}, lastModified: 0 });
  const found: number[] = [];
  await s3.listBlocks((b) => found.push(b));
  expect(found.sort((a, b) => a - b)).toEqual(written);
  expect(server.counters.requests.LIST).toBeGreaterThanOrEqual(16);
});

test("the zero-block cache after a listing: absent blocks and zero writes cost no request", async () => {
  const { s3 } = store();
  await s3.writeBlock(1, pattern(BS, 3));
  const zc = new ZeroBlockCache(s3);
  expect(await zc.loadListing()).toBe(1);
  server.counters.reset();
  for (let b = 2; b < 100; b++) expect(isAllZero(await zc.readBlock(b))).toBe(true);
  await zc.writeBlock(50, null);
  expect(server.counters.total).toBe(0);
  expect(await zc.readBlock(1)).toEqual(pattern(BS, 3));
  await zc.writeBlockPart(60, 10, pattern(20, 4)); // a partial write to a known-zero block needs no read
  expect(server.counters.requests).toMatchObject({ GET: 1, PUT: 1 });
  expect(count(zc, "zero reads avoided")).toBe(98);
});

test("retries: 503/500 and dropped connections are retried until they succeed", async () => {
  // A budget large enough that 0.3^n never runs out in practice (the test must not be a coin toss).
  const { s3 } = store({ maxRetryPauseMs: 30_000 });
  // Until a few faults happened (the rate is random, the count is not).
  server.setFaults({ errorRate: 0.3, errorStatuses: [500, 503] });
  let blocks = 0;
  while (server.counters.injectedErrors < 4 || blocks < 10) await s3.writeBlock(blocks, pattern(BS, 10 + blocks++));
  expect(count(s3, "PUT retries")).toBe(server.counters.injectedErrors); // each failed PUT went again
  server.setFaults({ errorRate: 0, dropRate: 0.3 });
  for (let round = 0; server.counters.droppedConnections < 4; round++) {
    for (let b = 0; b < blocks; b++) expect(await s3.readBlock(b)).toEqual(pattern(BS, 10 + b));
  }
  // (A broken connection is retried by us or, on a reused connection, by the runtime's fetch.)
});

test("PUTs retried while others run send their own bytes again (a first attempt's copy is freed with its answer)", async () => {
  const { s3 } = store({ maxRetryPauseMs: 30_000 });
  server.setFaults({ errorRate: 0.3, errorStatuses: [500, 503] });
  for (let round = 0; server.counters.injectedErrors < 8; round++) {
    await Promise.all(Array.from({ length: 16 }, (_, b) => s3.writeBlock(b, pattern(BS, 100 * round + b))));
    server.setFaults({ errorRate: 0 });
    for (let b = 0; b < 16; b++) expect(await s3.readBlock(b)).toEqual(pattern(BS, 100 * round + b));
    server.setFaults({ errorRate: 0.3, errorStatuses: [500, 503] });
  }
  server.setFaults({ errorRate: 0 });
});

test("a body damaged in transit is never returned: it is fetched again", async () => {
  const prefix = `damaged${Date.now()}/`;
  const { s3 } = store({ prefix, maxRetryPauseMs: 30_000 }); // room for many retries: 0.5^n must not run out
  for (let b = 0; b < 10; b++) await s3.writeBlock(b, pattern(BS, b + 100));
  server.setFaults({ corruptRate: 0.5 });
  for (let b = 0; b < 10; b++) expect(await s3.readBlock(b)).toEqual(pattern(BS, b + 100));
  expect(server.counters.corruptedBodies).toBeGreaterThan(0);
  server.setFaults({ corruptRate: 1 });
  const err = await store({ prefix, maxRetryPauseMs: 100 }).s3.readBlock(0).catch((e) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(5);
});

test("blocks go up with their CRC-32 (a checksum and our metadata) and come back checked by it; without one (or a multipart one), by their MD5", async () => {
  const prefix = `crc${Date.now()}/`;
  const { s3, objects } = store({ prefix, maxRetryPauseMs: 100 });
  const data = pattern(BS, 7);
  await s3.writeBlock(3, data);
  const key = objects.key(3);
  const stored = server.objects.get("bkt", key)!;
  expect(stored.checksumCrc32).toBe(crc32Base64(data));
  expect(await s3.readBlock(3)).toEqual(data);
  const eio = async () => {
    const err = await s3.readBlock(3).catch((e) => e);
    expect(err).toBeInstanceOf(FsError);
    expect((err as Error).message).toMatch(/does not match its (CRC-32|ETag)/);
    return (err as Error).message;
  };
  // The same CRC-32 and ETag over other bytes: only the CRC-32 can tell.
  const other = pattern(BS, 8);
  server.objects.put("bkt", key, { ...stored, body: other });
  expect(await eio()).toMatch(/CRC-32/);
  // A server that keeps no checksum of its own (Ceph RGW before Reef): our metadata's CRC-32 tells.
  expect(stored.meta["x-amz-meta-s3backer-crc32"]).toBe(crc32Base64(data));
  const hashed = () => count(objects, "GET bodies MD5-hashed");
  server.objects.put("bkt", key, { ...stored, checksumCrc32: undefined });
  const before = hashed();
  expect(await s3.readBlock(3)).toEqual(data);
  expect(hashed()).toBe(before);
  server.objects.put("bkt", key, { ...stored, body: other, checksumCrc32: undefined });
  expect(await eio()).toMatch(/CRC-32/);
  // Neither (another program wrote it): the MD5 tells.
  const { "x-amz-meta-s3backer-crc32": _, ...otherMeta } = stored.meta;
  server.objects.put("bkt", key, { ...stored, body: other, checksumCrc32: undefined, meta: otherMeta });
  expect(await eio()).toMatch(/ETag/);
  server.objects.put("bkt", key, { ...stored, checksumCrc32: undefined, meta: otherMeta });
  expect(await s3.readBlock(3)).toEqual(data);
  expect(hashed()).toBeGreaterThan(before);
  // A multipart upload's composite checksum is not the body's CRC-32: the MD5 is used.
  server.objects.put("bkt", key, { ...stored, checksumCrc32: "AAAAAA==-2", meta: otherMeta });
  expect(await s3.readBlock(3)).toEqual(data);
});

test("a hopeless server fails with EIO once the retry budget is spent; 403 fails at once", async () => {
  const { s3 } = store({ maxRetryPauseMs: 100 });
  server.setFaults({ errorRate: 1, errorStatuses: [503] });
  const started = performance.now();
  const err = await s3.writeBlock(1, pattern(BS, 1)).catch((e) => e);
  expect(err).toBeInstanceOf(FsError);
  expect((err as FsError).errno).toBe(5);
  expect((err as Error).message).toMatch(/HTTP 503 SlowDown \(gave up after \d+ attempts\)/);
  expect(performance.now() - started).toBeLessThan(2000);
  server.reset();
  const denied = store({ secret: "wrong" }).s3;
  const before = server.counters.total;
  const e403 = await denied.readBlock(1).catch((e) => e);
  expect((e403 as FsError).errno).toBe(13);
  expect(server.counters.total - before).toBe(1); // no retry
});

test("a server slower than --timeout is retried and then fails", async () => {
  const { s3 } = store({ timeoutMs: 50, maxRetryPauseMs: 20 });
  server.setFaults({ latencyMs: 200 });
  const err = await s3.readBlock(3).catch((e) => e);
  expect((err as Error).message).toMatch(/timed out after 50 ms/);
});
