/**
 * --metrics on real mounts and NBD servers of dist/s3backer: scraped while a client writes, the
 * counters move; promtool accepts what is served; every number of the stats file is a sample;
 * deleting the stats file resets the file, never a counter of /metrics; a port already taken is
 * one line and nothing is mounted.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, unlinkSync } from "node:fs";
import { open } from "node:fs/promises";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { BINARY, isMounted, mountWith, pattern, runAsync, waitFor } from "../helpers/disk.ts";
import { embeddedSuite } from "../helpers/suite.ts";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { freshBucket, peerArgs } from "../helpers/s3.ts";
import { runtime } from "../../src/runtime/index.ts";

const { peer, workDir } = embeddedSuite();
afterEach(cleanupNbd);

/** A little over the server's rendering interval: each scrape then sees numbers made after the last. */
const FRESH_MS = 1100;
/** How long a writer may take to move every watched series twice before the test fails. */
const MOVING_WITHIN_MS = 30_000;

/** The URL the log's ready line names (the port was 0: the system chose it). */
async function metricsUrl(log: () => string): Promise<string> {
  await waitFor("the ready line naming /metrics", () => /metrics at (http:\S+)/.test(log()));
  return /metrics at (http:\S+)/.exec(log())![1]!;
}

/** Samples by name and labels as written (`s3backer_s3_requests_total{kind="PUT"}`). */
async function scrape(url: string): Promise<{ text: string; value: (series: string) => number }> {
  const r = await fetch(url);
  expect(r.status).toBe(200);
  const text = await r.text();
  const samples = new Map(text.split("\n").filter((l) => l && !l.startsWith("#")).map((l) => [l.slice(0, l.lastIndexOf(" ")), Number(l.slice(l.lastIndexOf(" ") + 1))]));
  return { text, value: (series) => samples.get(series) ?? NaN };
}

function promtool(text: string): void {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  if (r.error) throw new Error(`promtool is missing (apt-get install prometheus): ${r.error.message}`);
  expect(`${r.stdout}${r.stderr}`).toBe("");
  expect(r.status).toBe(0);
}

/** A writer that runs `step` (one write, stored) again and again until stopped; stop() throws what a step threw. */
function keepWriting(step: (i: number) => Promise<void>): { stop(): Promise<number> } {
  let stopping = false;
  const running = (async () => {
    let i = 0;
    while (!stopping) await step(i++);
    return i;
  })();
  running.catch(() => {}); // seen by stop()
  return {
    stop: () => {
      stopping = true;
      return running;
    },
  };
}

/**
 * Scrapes every FRESH_MS while `writer` goes on, until each of `series` has grown at two scrapes
 * (the writer is stopped only then, so nothing depends on how fast it writes); no series ever goes
 * down, and one that is missing fails at once.
 */
async function expectMovingDuring(url: string, series: string[], writer: { stop(): Promise<number> }): Promise<void> {
  const seen: number[][] = [];
  try {
    const rises = series.map(() => 0);
    const deadline = performance.now() + MOVING_WITHIN_MS;
    while (rises.some((n) => n < 2)) {
      if (performance.now() > deadline) throw new Error(`not every series grew twice while writing; scrapes: ${JSON.stringify({ series, seen })}`);
      if (seen.length > 0) await new Promise((r) => setTimeout(r, FRESH_MS));
      const { value } = await scrape(url);
      const now = series.map(value);
      const last = seen.at(-1);
      now.forEach((v, j) => {
        expect(`${series[j]}: ${v}`).toMatch(/: \d/); // a sample, not missing
        if (last && v < last[j]!) throw new Error(`${series[j]} went down from ${last[j]} to ${v}`);
        if (last && v > last[j]!) rises[j]!++;
      });
      seen.push(now);
    }
  } finally {
    const steps = await writer.stop();
    expect(steps).toBeGreaterThan(0);
  }
}

test("FUSE over S3: scraped during a write, the counters move; promtool accepts it; every number of the stats file is a sample", async () => {
  const bucket = await freshBucket(peer, "metrics");
  const dir = workDir("metrics-fuse");
  const disk = await mountWith([...peerArgs(peer), "--size=64M", "--blockSize=64k", "--metrics=0", bucket], dir, true);
  const url = await metricsUrl(() => readFileSync(join(dir, "log"), "utf8"));
  expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);

  const chunk = pattern(64 * 1024, 7);
  const file = await open(disk.file, "r+");
  try {
    // Each write stored in S3 (fsync) before the next: PUTs go on all along.
    const writer = keepWriting(async (i) => {
      await file.write(chunk, 0, chunk.length, (i * chunk.length) % (64 * 2 ** 20));
      await file.sync();
    });
    const series = ["s3backer_block_cache_writes_total", 's3backer_s3_requests_total{kind="PUT"}', 's3backer_s3_request_duration_seconds_count{kind="PUT"}', 's3backer_s3_bytes_total{kind="PUT"}'];
    await expectMovingDuring(url, series, writer);
  } finally {
    await file.close();
  }

  await new Promise((r) => setTimeout(r, FRESH_MS));
  const { text, value } = await scrape(url);
  promtool(text);
  expect(value("s3backer_mount_flag_held")).toBe(1);
  // What the issue names: per kind, requests, their durations, errors and retries; bytes; dirty and cached blocks.
  for (const kind of ["GET", "PUT", "DELETE", "LIST"]) {
    for (const name of ["requests_total", "errors_total", "retries_total", "request_duration_seconds_count", "request_duration_seconds_sum"]) expect(`${name} ${kind} ${value(`s3backer_s3_${name}{kind="${kind}"}`)}`).toMatch(/ \d/);
    expect(text).toContain(`s3backer_s3_request_duration_seconds_bucket{kind="${kind}",le="+Inf"} `);
  }
  for (const series of ['s3backer_s3_bytes_total{kind="GET"}', 's3backer_s3_bytes_total{kind="PUT"}', "s3backer_block_cache_blocks_dirty", "s3backer_block_cache_blocks_cached"]) expect(`${series} ${value(series)}`).toMatch(/ \d/);
  // Every number of the stats file is one sample; the rest are build_info and the histograms.
  const numbers = readFileSync(disk.stats, "utf8").split("\n").filter((l) => /^\S.*\s-?\d+(\.\d+)?$/.test(l));
  const samples = text.split("\n").filter((l) => l && !l.startsWith("#") && !l.startsWith("s3backer_build_info") && !/^s3backer_\w+_seconds_(bucket|sum|count)\{/.test(l));
  expect(samples.length).toBe(numbers.length);
  await disk.unmount();
}, 60_000);

test("deleting the stats file resets the file's counters, not /metrics': those only grow", async () => {
  const dir = workDir("metrics-reset");
  await runAsync(["mkdir", "-p", join(dir, "blocks")]);
  const disk = await mountWith(["--test", "--size=16M", "--blockSize=64k", "--metrics=0", join(dir, "blocks")], dir, true);
  const url = await metricsUrl(() => readFileSync(join(dir, "log"), "utf8"));
  const writeBlocks = async (from: number, count: number) => {
    const file = await open(disk.file, "r+");
    for (let b = from; b < from + count; b++) await file.write(pattern(64 * 1024, b + 1), 0, 64 * 1024, b * 64 * 1024);
    await file.sync();
    await file.close();
  };
  const shown = (name: string) => Number(new RegExp(`\\n${name}\\s+(\\d+)\\n`).exec(readFileSync(disk.stats, "utf8"))![1]);
  const WRITES = "s3backer_local_directory_writes_total";

  await writeBlocks(0, 5);
  expect(shown("writes")).toBe(5);
  const before = (await scrape(url)).value(WRITES);
  expect(before).toBe(5);

  unlinkSync(disk.stats);
  expect(shown("writes")).toBe(0);
  await new Promise((r) => setTimeout(r, FRESH_MS));
  expect((await scrape(url)).value(WRITES)).toBe(5);

  await writeBlocks(5, 3);
  expect(shown("writes")).toBe(3);
  await new Promise((r) => setTimeout(r, FRESH_MS));
  expect((await scrape(url)).value(WRITES)).toBe(8);
  await disk.unmount();
}, 60_000);

test("NBD: scraped while qemu-io writes, the counters move; promtool accepts it", async () => {
  const nbd = await serveNbd(["--size=64M", "--blockSize=64k", "--metrics=0"]);
  const url = await metricsUrl(nbd.log);
  // One client after another, each writing a 64 KiB block and flushing it.
  const writer = keepWriting(async (i) => {
    const r = await runAsync(["qemu-io", "-f", "raw", "-c", `write -P ${(i % 250) + 1} ${(i % 1024) * 65536} 64k`, "-c", "flush", nbd.qemu]);
    if (r.code !== 0) throw new Error(`qemu-io exited ${r.code}: ${r.stderr}`);
  });
  const series = ["s3backer_block_cache_writes_total", "s3backer_local_directory_writes_total", "s3backer_local_directory_written_bytes_total"];
  await expectMovingDuring(url, series, writer);
  await new Promise((r) => setTimeout(r, FRESH_MS));
  promtool((await scrape(url)).text);
  await nbd.stop();
}, 60_000);

test("a port already taken: one line naming the flag, exit 1, nothing mounted, served or flagged", async () => {
  // Held the way another s3backer would hold it (a runtime may share a port between such servers).
  const taken = runtime.serve({ port: 0, hostname: "127.0.0.1" }, async () => new Response(null, { status: 404 }));
  const port = taken.port;
  const dir = workDir("metrics-taken");
  const [blocks, mnt, socket, pidFile] = ["blocks", "mnt", "nbd.sock", "pid"].map((name) => join(dir, name)) as [string, string, string, string];
  try {
    await runAsync(["mkdir", "-p", blocks, mnt]);
    const flag = `--metrics=127.0.0.1:${port}`;
    const fuse = await runAsync([BINARY, `--pidFile=${pidFile}`, "--test", "--size=1M", flag, blocks, mnt]);
    expect([fuse.code, fuse.stderr]).toEqual([1, `s3backer: ${flag}: port ${port} is already in use\n`]);
    expect(isMounted(mnt)).toBe(false);
    const nbd = await runAsync([BINARY, `--pidFile=${pidFile}`, "--nbd", "--test", "--size=1M", flag, blocks, `unix:${socket}`]);
    expect([nbd.code, nbd.stderr]).toEqual([1, `s3backer: ${flag}: port ${port} is already in use\n`]);
    expect(existsSync(socket)).toBe(false);
    expect(readdirSync(blocks)).toEqual([]); // no mounted flag set, nothing written
    const bad = await runAsync([BINARY, "--test", "--size=1M", "--metrics=localhost", blocks, mnt]);
    expect([bad.code, bad.stderr]).toEqual([1, "s3backer: --metrics=localhost: expected PORT or HOST:PORT (an IPv6 host in brackets), the port from 0 to 65535\n"]);
  } finally {
    await taken.stop();
    // Should the test fail because one of them started after all: stop it.
    if (isMounted(mnt)) await runAsync(["umount", "-l", mnt]);
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, "utf8"));
      process.kill(pid, "SIGTERM");
      await waitFor("the stray server to exit", () => !existsSync(`/proc/${pid}`), 30_000);
    }
  }
}, 60_000);
