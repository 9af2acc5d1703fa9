/**
 * --listBlocks in the background, as upstream does it: the mount answers at once on a bucket of
 * 100,000 blocks, the listing runs beside reads and writes, and what was written meanwhile (data
 * and holes, over blocks that existed and blocks that did not) reads back exactly afterwards.
 */
import { expect, test } from "bun:test";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { md5Hex } from "../../src/util/md5.ts";
import { blockName } from "../../src/object/block-names.ts";
import { mountWith, pattern, runAsync, waitFor } from "../helpers/disk.ts";
import { freshBucket, peerArgs } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, peer, workDir } = embeddedSuite();

const BS = 4096;
const EXISTING = 100_000;
const BLOCKS = 2 * EXISTING;
const blockData = (b: number) => pattern(BS, b + 1);

test("a bucket of 100k blocks: the mount answers while the listing runs; writes during the listing read back exactly", async () => {
  const bucket = await freshBucket(peer, "list100k");
  const dir = workDir("list100k");
  const args = [...peerArgs(peer), `--blockSize=${BS}`, `--size=${BLOCKS * BS}`];
  const first = await mountWith([...args, bucket], join(dir, "a"), true); // block 0 with the sizes
  await first.unmount();
  // Blocks 1..100000 exist (stored straight into the server: uploading them would take minutes).
  for (let b = 1; b <= EXISTING; b++) {
    const body = blockData(b);
    server.objects.put(bucket, blockName(b, false), { body, etag: md5Hex(body), contentType: "application/octet-stream", contentEncoding: undefined, meta: {}, lastModified: Date.now() });
  }
  server.setFaults({ listLatencyMs: 150 }); // a slow listing: the writes below happen while it runs

  const started = performance.now();
  const disk = await mountWith([...args, "--listBlocks", bucket], join(dir, "b"), true);
  const answeredMs = performance.now() - started;
  console.log(`mounted in ${answeredMs.toFixed(0)} ms on ${EXISTING} existing blocks`);
  // It answered before the listing was done (a time bound would only measure a loaded machine).
  expect(await readFile(disk.stats, "utf8")).toMatch(/listing\s+running/);

  // While it runs: overwrite existing blocks, fill absent ones, punch holes in existing ones.
  const file = await open(disk.file, "r+");
  const expected = new Map<number, Uint8Array | null>();
  const write = async (b: number, data: Uint8Array | null) => {
    if (data) await file.write(data, 0, BS, b * BS);
    else await runAsync(["fallocate", "--punch-hole", `--offset=${b * BS}`, `--length=${BS}`, disk.file]);
    expected.set(b, data);
  };
  for (const b of [5, 500, 50_000, 99_999]) await write(b, pattern(BS, 1000 + b));
  for (const b of [100_001, 150_000, 199_999]) await write(b, pattern(BS, 2000 + b));
  for (const b of [7, 70_000]) await write(b, null);
  await file.sync();
  expect(await readFile(disk.stats, "utf8")).toMatch(/listing\s+running/); // all of it happened during the listing

  await waitFor("the listing", async () => /listing\s+done/.test(await readFile(disk.stats, "utf8")), 120_000);
  expect(Number(/blocks listed\s+(\d+)/.exec(await readFile(disk.stats, "utf8"))![1])).toBeGreaterThanOrEqual(EXISTING);
  // After it: what was written, and blocks untouched on both sides of the listing's verdict.
  const check = [...expected.keys(), 1, 6, 69_999, 100_000, 100_002, 150_001, 199_998];
  const buffer = new Uint8Array(BS);
  for (const b of check) {
    await file.read(buffer, 0, BS, b * BS);
    const want = expected.has(b) ? (expected.get(b) ?? new Uint8Array(BS)) : b <= EXISTING ? blockData(b) : new Uint8Array(BS);
    expect({ block: b, same: Buffer.from(buffer).equals(Buffer.from(want)) }).toEqual({ block: b, same: true });
  }
  await file.close();
  await disk.unmount();
}, 180_000);
