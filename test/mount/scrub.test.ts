/**
 * `s3backer scrub` through dist/s3backer, on disks written through real mounts: a 1 GiB disk with
 * a wrapped key, healthy, then with 3 blocks damaged on the server (a flipped byte, a truncated
 * body, another block's object), against the embedded server and Ceph RGW; repairs from an image;
 * plain and compressed disks; faults on the way that must not be taken for damage; the mounted
 * flag; the rate limit; and bad --repair-from paths.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BINARY, mountWith, runAsync } from "../helpers/disk.ts";
import { FaultProxy } from "../helpers/fault-proxy.ts";
import { ACCESS, dropBucket, freshBucket, peerArgs, rawClient, rgwPeer, SECRET, type Peer } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, peer: embedded, workDir } = embeddedSuite();
const rgw = rgwPeer();
const made: [Peer, string][] = [];
afterAll(async () => {
  for (const [peer, bucket] of made) await dropBucket(peer, bucket);
});

const MiB = 1 << 20;

/** `blocks` blocks of `blockSize`: each a few KiB of random bytes, then zeros (quick to compress). */
function diskImage(blocks: number, blockSize: number): Uint8Array<ArrayBuffer> {
  const image = new Uint8Array(blocks * blockSize);
  for (let b = 0; b < blocks; b++) crypto.getRandomValues(image.subarray(b * blockSize, b * blockSize + Math.min(4096, blockSize)));
  return image;
}

function passwordFile(dir: string): string {
  writeFileSync(join(dir, "pw"), "scrub me\n");
  return join(dir, "pw");
}

/**
 * A disk written through a mount; `flags` say how blocks are stored. Every block is written from a
 * fresh image, or with `only`, just those blocks (the rest never written, so never stored).
 */
async function writtenDisk(peer: Peer, tag: string, flags: string[], blocks: number, blockSize: number, only?: number[]) {
  const bucket = await freshBucket(peer, tag);
  if (peer !== embedded) made.push([peer, bucket]);
  const dir = workDir(tag);
  const image = diskImage(only ? 1 : blocks, blockSize);
  const imagePath = join(dir, "image");
  writeFileSync(imagePath, image);
  const sizes = [`--size=${blocks * blockSize}`, `--blockSize=${blockSize}`];
  const disk = await mountWith([...peerArgs(peer), ...sizes, ...flags, bucket], dir, true);
  for (const seek of only ?? [0]) {
    const dd = await runAsync(["dd", `if=${imagePath}`, `of=${disk.file}`, `bs=${blockSize}`, `seek=${seek}`, "conv=notrunc,fsync", "status=none"]);
    expect(dd.code).toBe(0);
  }
  await disk.unmount();
  const scrub = (...more: string[]) => runAsync([BINARY, "scrub", ...peerArgs(peer), "--quiet", ...flags, ...more, bucket]);
  return { bucket, dir, image, imagePath, scrub, mnt: disk.mnt };
}

const hex8 = (b: number) => b.toString(16).padStart(8, "0");

/** Changes block objects on the server, as someone with the bucket's keys could: the metadata kept, the body not. */
async function damage(peer: Peer, bucket: string, flipped: number, truncated: number, swapped: [number, number]) {
  const s3 = rawClient(peer);
  const object = async (b: number) => {
    const r = await s3("GET", `${bucket}/${hex8(b)}`);
    expect(r.status).toBe(200);
    const headers = Object.fromEntries([...r.headers].filter(([n]) => n.startsWith("x-amz-meta-") || n === "content-encoding"));
    return { body: r.body, headers };
  };
  const put = async (b: number, o: { body: Uint8Array; headers: Record<string, string> }) => expect((await s3("PUT", `${bucket}/${hex8(b)}`, o)).status).toBe(200);
  const a = await object(flipped);
  a.body[a.body.length >> 1]! ^= 0x08;
  await put(flipped, a);
  const t = await object(truncated);
  await put(truncated, { ...t, body: t.body.subarray(0, t.body.length >> 1) });
  await put(swapped[0], await object(swapped[1]));
}

const reportLine = (block: number, blockSize: number) => new RegExp(`^block ${block} \\(bytes ${block * blockSize}-${(block + 1) * blockSize - 1}\\): .+$`);

if (!rgw) test.skip("scrub: ceph-rgw (S3_RGW_URL is not set)", () => {});
for (const peer of [embedded, ...(rgw ? [rgw] : [])]) {
  describe(peer.name, () => {
    test("a 1 GiB disk with a wrapped key: healthy, none reported and exit 0; 3 blocks damaged on the server, exactly those 3 reported and exit 3", async () => {
      const dir = workDir("pwdir");
      const flags = ["--encrypt", "--keyWrap", `--passwordFile=${passwordFile(dir)}`];
      // Only the blocks the test needs are written: the others are zeros, never stored, and the scrub skips them.
      const written = [0, 3, 17, 500, 777, 1000, 1023];
      const { bucket, scrub } = await writtenDisk(peer, "scrub1g", flags, 1024, MiB, written);
      const healthy = await scrub();
      expect(healthy.stdout).toBe("");
      expect(healthy.stderr).toMatch(/^s3backer: scrubbed \S+: 7 blocks stored, 0 damaged; 7M checked in [\d.]+ s \([\d.]+ MB\/s\)\n$/);
      expect(healthy.code).toBe(0);

      await damage(peer, bucket, 17, 500, [1000, 3]);
      const found = await scrub();
      const lines = found.stdout.trimEnd().split("\n");
      expect(lines).toHaveLength(3);
      expect(lines[0]).toMatch(reportLine(17, MiB));
      expect(lines[0]).toMatch(/CRC-32/);
      expect(lines[1]).toMatch(reportLine(500, MiB));
      expect(lines[2]).toMatch(reportLine(1000, MiB));
      expect(lines[2]).toMatch(/signature does not verify/);
      expect(found.stderr).toMatch(/: 7 blocks stored, 3 damaged; /);
      expect(found.code).toBe(3);
    }, 120_000);
  });
}

test("--repair-from: the damaged blocks rewritten from the image and read back sound (exit 4), then a clean scrub; an image that differs from sound blocks is refused", async () => {
  const dir = workDir("pwdir");
  const flags = ["--encrypt", `--passwordFile=${passwordFile(dir)}`];
  const { bucket, image, imagePath, scrub } = await writtenDisk(embedded, "repair", flags, 64, 65536);
  const etag = async (b: number) => (await rawClient(embedded)("HEAD", `${bucket}/${hex8(b)}`)).headers.get("etag");
  const untouched = await etag(9);
  await damage(embedded, bucket, 2, 5, [7, 8]);

  const other = join(dir, "other");
  const changed = image.slice();
  changed[12 * 65536]! ^= 1;
  writeFileSync(other, changed);
  const refused = await scrub(`--repair-from=${other}`);
  expect(refused.stderr).toMatch(new RegExp(`^s3backer: --repair-from=${other}: the image differs from the disk in 1 sound blocks \\(block 12 first\\): it is not this disk as it is now; nothing was repaired \\(add --force to repair from it all the same\\)\\n$`));
  expect(refused.code).toBe(1);

  const repaired = await scrub(`--repair-from=${imagePath}`);
  expect(repaired.stdout.trimEnd().split("\n").map((l) => /^block (\d+) \(bytes \d+-\d+\): .+: repaired$/.exec(l)?.[1])).toEqual(["2", "5", "7"]);
  expect(repaired.stderr).toMatch(/64 blocks stored, 3 damaged, 3 repaired; /);
  expect(repaired.code).toBe(4);
  expect(await etag(9)).toBe(untouched); // only damaged blocks are written
  expect((await rawClient(embedded)("GET", `${bucket}/s3backer-mounted`)).status).toBe(404);

  const after = await scrub();
  expect(after.stdout).toBe("");
  expect(after.code).toBe(0);
  const disk = await mountWith([...peerArgs(embedded), ...flags, "--readOnly", bucket], join(dir, "check"), true);
  expect(new Uint8Array(await readFile(disk.file))).toEqual(image);
  await disk.unmount();
}, 120_000);

test("plain and compressed disks: a byte flipped at rest (its ETag kept) and a truncated body are found; a disk that reads sound gives exit 0", async () => {
  for (const flags of [[], ["--compress=zstd"]]) {
    const { bucket, scrub } = await writtenDisk(embedded, "plainscrub", flags, 32, 65536);
    expect((await scrub()).code).toBe(0);
    const stored = server.objects.get(bucket, hex8(4))!;
    const rotted = stored.body.slice();
    rotted[100]! ^= 0x40;
    server.objects.put(bucket, hex8(4), { ...stored, body: rotted });
    const cut = server.objects.get(bucket, hex8(9))!;
    server.objects.put(bucket, hex8(9), { ...cut, body: cut.body.subarray(0, 1000) });
    const found = await scrub();
    expect(found.stdout).toMatch(/^block 4 \(bytes 262144-327679\): .+\nblock 9 \(bytes 589824-655359\): .+\n$/);
    expect(found.code).toBe(3);
  }
}, 120_000);

test("faults on the way (bodies swapped or cut for a few answers) are not taken for damage; a disk in use is scrubbed with a warning, and a repair of it refused", async () => {
  const dir = workDir("pwdir");
  const flags = ["--encrypt", `--passwordFile=${passwordFile(dir)}`];
  const { bucket, imagePath } = await writtenDisk(embedded, "transient", flags, 64, 65536);
  const proxy = await FaultProxy.start({ upstream: embedded.url, credentials: { accessKey: ACCESS, secretKey: SECRET } });
  try {
    const viaProxy = { ...embedded, url: proxy.url };
    const scrub = (...more: string[]) => runAsync([BINARY, "scrub", ...peerArgs(viaProxy), "--quiet", "--initialRetryPause=10", ...flags, ...more, bucket]);
    proxy.set({ keyPattern: /^[0-9a-f]{8}$/, swap: 0.2, swapHeaders: true, limit: 6 });
    const swapped = await scrub();
    expect(proxy.fired.swap).toBe(6);
    expect(swapped.stdout).toBe("");
    expect(swapped.code).toBe(0);
    proxy.reset();
    server.setFaults({ corruptRate: 0.2, keyPattern: /^[0-9a-f]{8}$/ });
    const corrupted = await scrub();
    expect(server.counters.corruptedBodies).toBeGreaterThan(0);
    expect(corrupted.stdout).toBe("");
    expect(corrupted.code).toBe(0);
    server.reset();

    const disk = await mountWith([...peerArgs(embedded), ...flags, bucket], join(dir, "live"), true);
    const live = await scrub();
    expect(live.stderr).toMatch(/WARN: the disk looks mounted \(.+\): blocks it writes meanwhile are checked as found/);
    expect(live.code).toBe(0);
    const repair = await scrub(`--repair-from=${imagePath}`);
    expect(repair.stderr).toMatch(/^s3backer: the disk looks mounted \(.+\): a repair could overwrite what it writes; unmount it first, or add --force if it is not mounted\n$/);
    expect(repair.code).toBe(1);
    await disk.unmount();
  } finally {
    await proxy.stop();
  }
}, 120_000);

test("--scrub-rate holds the pace: 2 MiB at 1M a second take 2 s at least", async () => {
  const { scrub } = await writtenDisk(embedded, "rate", [], 32, 65536);
  const started = performance.now();
  const r = await scrub("--scrub-rate=1M");
  expect(r.code).toBe(0);
  expect(performance.now() - started).toBeGreaterThan(1900);
}, 60_000);

test("--repair-from and the other scrub flags: a bad path or value is one line, and nothing is read or written", async () => {
  const dir = workDir("badpaths");
  mkdirSync(join(dir, "adir"));
  writeFileSync(join(dir, "small"), new Uint8Array(1000));
  const run = (...args: string[]) => runAsync([BINARY, ...args]);
  const base = [...peerArgs(embedded), "--quiet"];
  const bucket = await freshBucket(embedded, "badpaths");
  const disk = await mountWith([...base, "--size=1M", "--blockSize=64k", bucket], join(dir, "d"), true);
  await disk.unmount();
  server.counters.reset();
  const cases: [string[], string, number][] = [
    [["scrub", ...base, `--repair-from=${join(dir, "missing")}`, bucket], `s3backer: --repair-from=${join(dir, "missing")}: no such file\n`, 1],
    [["scrub", ...base, `--repair-from=${join(dir, "adir")}`, bucket], `s3backer: --repair-from=${join(dir, "adir")}: is a directory, not a file or a block device\n`, 1],
    [["scrub", ...base, "--repair-from=/dev/null", bucket], "s3backer: --repair-from=/dev/null: is a character device, not a file or a block device\n", 1],
    [["scrub", ...base, "--scrub-threads=0", bucket], "s3backer: --scrub-threads=0: expected a whole number from 1 to 1000\n", 1],
    [["scrub", ...base, "--scrub-rate=fast", bucket], "s3backer: --scrub-rate=fast: not a size (examples: 4096, 4k, 1M, 10G, 1T)\n", 1],
    [[...base, "--repair-from=x", bucket, disk.mnt], "s3backer: --repair-from=x is for 's3backer scrub' (see 's3backer --help')\n", 2],
    [["passwd", ...base, "--scrub-rate=1M", bucket], "s3backer: --scrub-rate=1M is for 's3backer scrub' (see 's3backer --help')\n", 2],
    [["scrub", ...base, "--erase", bucket], "s3backer: 's3backer scrub' cannot be combined with --erase (see 's3backer --help')\n", 2],
    [["scrub", ...base, bucket, "extra"], "s3backer: too many arguments: extra (expected s3backer scrub [options] bucket[/prefix]) (see 's3backer --help')\n", 2],
  ];
  for (const [args, line, code] of cases) {
    const r = await run(...args);
    expect(r.stderr).toBe(line);
    expect(r.code).toBe(code);
  }
  const wrongSize = await run("scrub", ...base, `--repair-from=${join(dir, "small")}`, bucket);
  expect(wrongSize.stderr).toBe(`s3backer: --repair-from=${join(dir, "small")}: 1000 bytes, but the disk is 1048576 (1M)\n`);
  expect(server.counters.requests.PUT + server.counters.requests.DELETE).toBe(0);
}, 60_000);
