/**
 * The end of a mount while the server is away: dirty blocks are kept and retried until stored (the
 * mounted flag cleared only then); only a second signal or --unmountTimeout gives up, and then a
 * cache file keeps them for the next mount.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { mountWith, pattern, runAsync, serveForeground, waitFor } from "../helpers/disk.ts";
import { freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, peer, workDir: tempWorkDir } = embeddedSuite();
afterEach(cleanupNbd);

function workDir(tag: string): string {
  const d = tempWorkDir(tag);
  mkdirSync(join(d, "mnt"));
  return d;
}

const DATA = 8 << 20;
/** Each request gives up after about a second of retries, so a round of write-backs fails quickly. */
const GEOMETRY = ["--size=64M", "--blockSize=64k", "--initialRetryPause=100", "--maxRetryPause=1000", "--timeout=5"];
/** The log line of a round of write-backs at unmount that failed (or, before this was built, of giving up at once). */
const FAILED_ROUND = /blocks not stored yet|flushing at unmount failed/;

/**
 * Writes `data` at the start of the disk with O_DIRECT and no fsync. The close's FLUSH fails with
 * EIO while the server is down (after the retries), as it should: the blocks stay dirty in the cache.
 */
async function writeDirect(dir: string, file: string, data: Uint8Array): Promise<void> {
  const from = join(dir, "data");
  writeFileSync(from, data);
  await runAsync(["dd", `if=${from}`, `of=${file}`, "bs=1M", "oflag=direct", "conv=notrunc", "status=none"]);
}

/** The disk's first `length` bytes as storage has them, through a fresh mount with no cache. */
async function storedBytes(bucket: string, dir: string, length: number): Promise<Uint8Array> {
  const disk = await mountWith([...peerArgs(peer), "--blockCacheSize=0", bucket], join(dir, "check"), true);
  try {
    return new Uint8Array(await readFile(disk.file)).subarray(0, length);
  } finally {
    await disk.unmount();
  }
}

async function flagIsSet(bucket: string): Promise<boolean> {
  return (await rawClient(peer)("HEAD", `${bucket}/s3backer-mounted`)).status === 200;
}

test("server down at unmount: the process keeps trying until it is back, stores every block, clears the flag and exits 0", async () => {
  const bucket = await freshBucket(peer, "outage");
  const dir = workDir("outage");
  const mnt = join(dir, "mnt");
  const mount = await serveForeground([...peerArgs(peer), ...GEOMETRY, bucket], mnt);
  server.setFaults({ downUntil: Infinity });
  const data = pattern(DATA, 61);
  await writeDirect(dir, join(mnt, "file"), data);
  expect((await runAsync(["umount", mnt])).code).toBe(0);
  await waitFor("a failed round of write-backs at unmount", () => FAILED_ROUND.test(mount.log()), 30_000);
  expect(server.counters.refusedWhileDown).toBeGreaterThan(0);
  // Back once the first attempt has failed: the process must still be there to store the blocks.
  server.setFaults({ downUntil: 0 });
  const code = await mount.exited();
  console.log(mount.log());
  expect(code).toBe(0);
  expect(mount.log()).toMatch(/all data stored/);
  expect(await flagIsSet(bucket)).toBe(false);
  expect(await storedBytes(bucket, dir, DATA)).toEqual(data);
}, 60_000);

test("server down at SIGTERM: a second SIGTERM gives up, and the cache file keeps the blocks for the next mount to store", async () => {
  const bucket = await freshBucket(peer, "giveup");
  const dir = workDir("giveup");
  const mnt = join(dir, "mnt");
  const cache = join(dir, "cache");
  const args = [...peerArgs(peer), ...GEOMETRY, `--blockCacheFile=${cache}`];
  const mount = await serveForeground([...args, bucket], mnt);
  server.setFaults({ downUntil: Infinity });
  const data = pattern(DATA, 62);
  await writeDirect(dir, join(mnt, "file"), data);
  mount.proc.kill("SIGTERM");
  await waitFor("a failed round of write-backs at unmount", () => FAILED_ROUND.test(mount.log()), 30_000);
  // The first signal did not end it: it goes on trying.
  await Bun.sleep(500);
  expect(mount.proc.exitCode).toBe(null);
  mount.proc.kill("SIGTERM");
  const code = await mount.exited();
  console.log(mount.log());
  expect(code).toBe(1);
  expect(mount.log()).toMatch(new RegExp(`128 blocks not stored: kept in ${cache}; .*--blockCacheRecoverDirtyBlocks`));
  server.setFaults({ downUntil: 0 });
  expect(await flagIsSet(bucket)).toBe(true); // still set: the blocks are not stored

  // The next mount with the file stores them, and its own unmount then clears the flag.
  const again = await mountWith([...args, "--blockCacheRecoverDirtyBlocks", bucket], join(dir, "again"), true);
  expect(again.startup).toMatch(/recovering 128 blocks/);
  await again.unmount();
  expect(await flagIsSet(bucket)).toBe(false);
  expect(await storedBytes(bucket, dir, DATA)).toEqual(data);
}, 60_000);

test("--unmountTimeout gives up after that long; without a cache file the log says the blocks are lost, and the flag stays set", async () => {
  const bucket = await freshBucket(peer, "timeout");
  const dir = workDir("timeout");
  const mnt = join(dir, "mnt");
  const mount = await serveForeground([...peerArgs(peer), ...GEOMETRY, "--unmountTimeout=3", bucket], mnt);
  server.setFaults({ downUntil: Infinity });
  await writeDirect(dir, join(mnt, "file"), pattern(DATA, 63));
  const started = performance.now();
  expect((await runAsync(["umount", mnt])).code).toBe(0);
  expect(await mount.exited()).toBe(1);
  const seconds = (performance.now() - started) / 1000;
  expect(seconds).toBeGreaterThan(2.5);
  expect(mount.log()).toMatch(/--unmountTimeout=3 reached: 128 blocks written to the disk were never stored and are lost/);
  server.setFaults({ downUntil: 0 });
  expect(await flagIsSet(bucket)).toBe(true);
}, 60_000);

test("NBD: server down at SIGTERM: the process keeps trying until it is back, stores every block and clears the flag", async () => {
  const bucket = await freshBucket(peer, "nbd-outage");
  const dir = workDir("nbd-outage");
  const nbd = await serveNbd([...peerArgs(peer), ...GEOMETRY], { dir, source: bucket });
  server.setFaults({ downUntil: Infinity });
  // Writeback mode: no FUA, so the writes stay dirty; the FLUSH at qemu-io's exit fails while the server is down.
  await runAsync(["qemu-io", "-f", "raw", "-t", "writeback", "-c", `write -P 0x5a 0 ${DATA}`, nbd.qemu]);
  process.kill(nbd.pid, "SIGTERM");
  await waitFor("a failed round of write-backs at the stop", () => FAILED_ROUND.test(nbd.log()), 30_000);
  server.setFaults({ downUntil: 0 });
  await waitFor("the process to store everything and exit", () => /all data stored; exiting/.test(nbd.log()) || /may be lost/.test(nbd.log()), 30_000);
  expect(nbd.log()).toMatch(/all data stored; exiting/);
  await waitFor("the process to exit", () => !existsSync(join(dir, "pid")));
  expect(await flagIsSet(bucket)).toBe(false);
  expect(await storedBytes(bucket, dir, DATA)).toEqual(new Uint8Array(DATA).fill(0x5a));
}, 60_000);
