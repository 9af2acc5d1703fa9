/**
 * Crash consistency (helpers/crash.ts): ext4 on the disk, a workload that records what it
 * fsynced, kill -9 at random moments with faults injected through the proxy, recovery, e2fsck,
 * every fsynced file checked; default flags and with a cache file. A few rounds here;
 * bench/crash-soak.ts runs as many as asked, against the bundled server and Ceph RGW.
 *
 * The seed is printed; CRASH_SEED=N replays one, CRASH_ROUNDS=N runs more rounds.
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { killHard, mountWith, pattern, runAsync, waitFor } from "../helpers/disk.ts";
import { BLOCK_SIZE, crashRun, differFromServer, dropBucket, recoveredStored, SIZE, unsavedBlocks } from "../helpers/crash.ts";
import { freshBucket, peerArgs } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";
import { readFile } from "node:fs/promises";

const { peer, workDir } = embeddedSuite();
const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 2);

for (const cacheFile of [false, true]) {
  test(`ext4 on the disk${cacheFile ? " with a cache file" : ""}, kill -9 at random moments with faults injected: every fsynced file intact, e2fsck clean`, async () => {
    const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`crash test${cacheFile ? " (cache file)" : ""}: seed ${seed} (replay with CRASH_SEED=${seed}), ${ROUNDS} rounds`);
    const report = await crashRun({ peer, cacheFile, faults: true, rounds: ROUNDS, seed, dir: workDir("crash"), log: (l) => console.log(`  ${l}`) });
    console.log(`  faults fired: ${JSON.stringify(report.fired)}`);
    expect(report.problems).toEqual([]);
    // Each round checked files fsynced before its kill, and the faults happened (those of answers
    // with a body need reads from the server: with a cache file, most reads come from the file).
    expect(report.rounds.map((r) => r.checked > 0)).toEqual(report.rounds.map(() => true));
    const faults = ["reset", "status503", "delay", ...(cacheFile ? [] : ["truncate", "wrongLength", "swap"] as const)] as const;
    for (const fault of faults) expect({ fault, fired: report.fired[fault] > 0 }).toEqual({ fault, fired: true });
  }, 300_000);
}

test("blocks a kill left unsaved in the cache file are stored after recovery with exactly their bytes", async () => {
  const dir = workDir("recover");
  const bucket = await freshBucket(peer, "recover");
  const cache = join(dir, "cache");
  const args = [...peerArgs(peer), `--size=${SIZE}`, `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=600000"];
  try {
    const disk = await mountWith([...args, bucket], join(dir, "a"), true);
    const data = pattern(64 * BLOCK_SIZE, 77);
    writeFileSync(join(dir, "data"), data);
    // Written, neither fsynced nor closed (a close would flush): only the cache file has them.
    const writer = Bun.spawn(["python3", "-c", "import os, sys, time\nfd = os.open(sys.argv[1], os.O_WRONLY)\nos.pwrite(fd, open(sys.argv[2], 'rb').read(), 1 << 20)\nprint('written', flush=True)\ntime.sleep(60)", disk.file, join(dir, "data")], { stdout: "pipe" });
    try {
      await writer.stdout.getReader().read();
      await waitFor("the cache file to have the blocks", async () => /blocks not yet in the file\s+0\n/.test(await readFile(disk.stats, "utf8")));
      await killHard(disk.pid);
    } finally {
      writer.kill("SIGKILL");
      await writer.exited;
    }
    await runAsync(["umount", "-l", disk.mnt]);
    const unsaved = await unsavedBlocks(cache, join(dir, "copy"));
    expect(unsaved.size).toBe(64);
    for (let i = 0; i < 64; i++) expect(unsaved.get(256 + i)).toEqual(data.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE));
    expect(await differFromServer(peer, bucket, unsaved)).toBe(64); // none of them stored yet
    const again = await mountWith([...args, "--blockCacheRecoverDirtyBlocks", bucket], join(dir, "b"), true);
    expect(await recoveredStored(peer, bucket, again, unsaved)).toEqual([]);
    await again.unmount();
  } finally {
    await dropBucket(peer, bucket);
  }
}, 120_000);
