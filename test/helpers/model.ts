/**
 * The model-based runs through a real mount, shared by test/mount/consistency.test.ts (a few
 * seconds per case) and bench/consistency-soak.ts (as long as asked): mount, fill the disk, let the
 * clients of helpers/model-client.py loose with the server misbehaving as the case says, kill -9
 * the mount, and check a fresh mount against what the fsyncs acknowledged.
 */
import { join } from "node:path";
import type { FaultSettings } from "../../src/s3server/faults.ts";
import type { S3Server } from "../../src/s3server/s3-server.ts";
import { killHard, mountWith, runAsync } from "./disk.ts";
import { embeddedPeer, freshBucket, peerArgs } from "./s3.ts";

const CLIENT = join(import.meta.dir, "model-client.py");

export interface Outcome {
  failed: number;
  counts: Record<string, number>;
  failures: string[];
}

export interface ModelCase {
  name: string;
  flags: string[];
  blockSize: number;
  faults?: Partial<FaultSettings>;
  threads?: number;
  /** "write-read": every thread writes whole blocks and reads them back at once. */
  mix?: string;
  /** The clients work on the first this many blocks only. */
  hot?: number;
}

export const MODEL_CASES: ModelCase[] = [
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
  // Late answers: a 404 can arrive after a write that overtook it.
  { name: "cache off, answers up to 100 ms late, four blocks", flags: ["--blockSize=4k", "--size=1M", "--blockCacheSize=0", "--minWriteDelay=0"], blockSize: 4096, hot: 4, threads: 6, faults: { latencyMs: [0, 100] } },
  { name: "cache off, two blocks, four threads", flags: ["--blockSize=4k", "--size=1M", "--blockCacheSize=0", "--minWriteDelay=50", "--maxRetryPause=5000"], blockSize: 4096, hot: 2 },
  {
    name: "cache off, a server with latency and stale answers",
    flags: ["--blockSize=4k", "--size=2M", "--blockCacheSize=0", "--initialRetryPause=20", "--maxRetryPause=20000"],
    blockSize: 4096,
    faults: { latencyMs: [0, 15], staleMs: 100 },
  },
];

async function client(args: string[]): Promise<Outcome> {
  const r = await runAsync(["python3", CLIENT, ...args]);
  if (r.code !== 0) throw new Error(`model client exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as Outcome;
}

/** How often each of the case's faults fired during the run (a fault the case does not inject is left out). */
export type Fired = Partial<Record<"latency" | "errors" | "stale", number>>;

/** One case against the embedded server: the run's outcome, the faults that fired, and the check after a crash. */
export async function runModelCase(server: S3Server, c: ModelCase, seed: number, seconds: number, dir: string): Promise<{ run: Outcome; fired: Fired; check: Outcome }> {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "model");
  const args = [...peerArgs(peer), ...c.flags, bucket];
  const disk = await mountWith(args, join(dir, "a"), true);
  const filled = join(dir, "filled.json");
  const common = ["--seed", String(seed), "--threads", String(c.threads ?? 4), "--block-size", String(c.blockSize)];
  await client(["run", disk.file, filled, ...common, "--seconds", "0", "--prefill"]);
  server.setFaults(c.faults ?? {});
  const state = join(dir, "state.json");
  server.counters.reset();
  const run = await client(["run", disk.file, state, ...common, "--seconds", String(seconds), "--mix", c.mix ?? "random", "--from", filled, "--hot", String(c.hot ?? 0)]);
  const f = c.faults ?? {};
  const n = server.counters;
  const fired: Fired = {
    ...(f.latencyMs ? { latency: n.delayedRequests } : {}),
    ...(f.errorRate ? { errors: n.injectedErrors } : {}),
    ...(f.staleMs ? { stale: n.staleAnswers } : {}),
  };

  // A crash: what the last fsyncs acknowledged must be there after a fresh mount.
  await killHard(disk.pid);
  await runAsync(["umount", "-l", disk.mnt]);
  server.reset();
  const again = await mountWith([...args.slice(0, -1), "--force", bucket], join(dir, "b"), true);
  const check = await client(["verify", again.file, state]);
  await again.unmount();
  return { run, fired, check };
}
