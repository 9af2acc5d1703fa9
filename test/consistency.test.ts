/**
 * Model-based concurrency tests through the real mount: several client threads issue random reads,
 * whole and partial writes, zero writes, punch-hole and fsync, buffered and O_DIRECT (see
 * helpers/model-client.py), and every read is judged against what the disk may legally hold. Then
 * the mount is killed with -9 and a fresh mount must hold every write an fsync acknowledged.
 *
 * The seed is printed; MODEL_SEED=N replays one, MODEL_SECONDS=S runs longer.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { cleanupDisks, killHard, mountWith, runAsync, tempDir } from "./helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "./helpers/s3.ts";
import type { FaultSettings } from "../src/s3server/faults.ts";

const server = startEmbedded();
const peer = embeddedPeer(server);
const CLIENT = join(import.meta.dir, "helpers/model-client.py");
const SECONDS = Number(process.env.MODEL_SECONDS ?? 4);
const dirs: string[] = [];
afterEach(async () => {
  server.reset();
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(() => server.stop());

interface Outcome {
  failed: number;
  counts: Record<string, number>;
  failures: string[];
}

async function client(args: string[]): Promise<Outcome> {
  const r = await runAsync(["python3", CLIENT, ...args]);
  if (r.code !== 0) throw new Error(`model client exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Outcome;
}

interface Case {
  name: string;
  flags: string[];
  blockSize: number;
  faults?: Partial<FaultSettings>;
  threads?: number;
  /** "write-read": every thread writes a range and reads it back at once (what the cache got wrong). */
  mix?: string;
}

const cases: Case[] = [
  // Uploads slower than the writes: the cache fills with dirty blocks.
  { name: "write, then read back: default flags, a disk 8x the cache", flags: ["--blockSize=4k", "--size=32M"], blockSize: 4096, mix: "write-read", threads: 2, faults: { latencyMs: [20, 80] } },
  { name: "write, then read back: 64 KiB blocks, a disk 4x the cache", flags: ["--blockSize=64k", "--size=64M", "--blockCacheSize=256"], blockSize: 65536, mix: "write-read", threads: 2, faults: { latencyMs: [20, 80] } },
  { name: "default flags, a disk 4x the cache", flags: ["--blockSize=4k", "--size=16M"], blockSize: 4096 },
  { name: "cache off", flags: ["--blockSize=4k", "--size=4M", "--blockCacheSize=0"], blockSize: 4096 },
  { name: "a 2-block cache", flags: ["--blockSize=4k", "--size=4M", "--blockCacheSize=2"], blockSize: 4096 },
  { name: "one dirty block at most", flags: ["--blockSize=4k", "--size=4M", "--blockCacheSize=64", "--blockCacheMaxDirty=1"], blockSize: 4096 },
  { name: "64 KiB blocks, eager read-ahead", flags: ["--blockSize=64k", "--size=16M", "--blockCacheSize=32", "--readAhead=8", "--readAheadTrigger=1"], blockSize: 65536 },
  {
    name: "a server with latency, 5xx and stale answers",
    flags: ["--blockSize=4k", "--size=4M", "--blockCacheSize=16", "--initialRetryPause=20", "--maxRetryPause=20000"],
    blockSize: 4096,
    faults: { latencyMs: [0, 15], errorRate: 0.05, errorStatuses: [500, 503], staleMs: 100 },
  },
  {
    name: "cache off, a server with latency and stale answers",
    flags: ["--blockSize=4k", "--size=2M", "--blockCacheSize=0", "--initialRetryPause=20", "--maxRetryPause=20000"],
    blockSize: 4096,
    faults: { latencyMs: [0, 15], staleMs: 100 },
  },
];

describe("model-based concurrency through the mount", () => {
  for (const c of cases) {
    test(c.name, async () => {
      const seed = Number(process.env.MODEL_SEED ?? Math.floor(Math.random() * 2 ** 31));
      console.log(`model test "${c.name}": seed ${seed} (replay with MODEL_SEED=${seed})`);
      const dir = tempDir("model");
      dirs.push(dir);
      const bucket = await freshBucket(peer, "model");
      const args = [...peerArgs(peer), ...c.flags, bucket];
      const disk = await mountWith(args, join(dir, "a"), true);
      const filled = join(dir, "filled.json");
      const common = ["--seed", String(seed), "--threads", String(c.threads ?? 4), "--block-size", String(c.blockSize)];
      await client(["run", disk.file, filled, ...common, "--seconds", "0", "--prefill"]);
      server.setFaults(c.faults ?? {});
      const state = join(dir, "state.json");
      const run = await client(["run", disk.file, state, ...common, "--seconds", String(SECONDS), "--mix", c.mix ?? "random", "--from", filled]);
      console.log(`  ${JSON.stringify(run.counts)}`);
      expect(run.failures).toEqual([]);
      expect(run.counts.read ?? 0).toBeGreaterThan(50);
      expect(run.counts.write ?? 0).toBeGreaterThan(20);

      // A crash: what the last fsyncs acknowledged must be there after a fresh mount.
      await killHard(disk.pid);
      await runAsync(["umount", "-l", disk.mnt]);
      server.reset();
      const again = await mountWith([...args.slice(0, -1), "--force", bucket], join(dir, "b"), true);
      const check = await client(["verify", again.file, state]);
      expect(check.failures).toEqual([]);
      await again.unmount();
    }, 120_000);
  }
});
