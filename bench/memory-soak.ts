/**
 * Memory soak: fio random reads and writes (4 KiB, 16 in flight, over 512 MiB of a new 1 GiB disk)
 * on a mount for SECONDS (default 600) against the bundled server with faults (2% of requests
 * answered 500/503, 0-20 ms of latency), sampling the mount's resident size every 5 s. Prints the
 * samples, the peak, the spread over the last half (flat: within 10%), the mount's CPU per I/O,
 * and its stats at the end. Extra arguments are flags for the mount; the environment passes to it (e.g.
 * MIMALLOC_PURGE_DELAY=-1, to compare with the allocator keeping all the memory it frees).
 *
 *   bun build.ts && bun bench/memory-soak.ts [SECONDS] [--blockSize=32k ...]
 */
import { spawn } from "bun";
import { readFileSync, rmSync } from "node:fs";
import { cleanupDisks, mountWith, tempDir } from "../test/helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../test/helpers/s3.ts";
import { resident } from "../test/helpers/nbd-flood.ts";
import { processCpu } from "./helpers.ts";

const seconds = Number(process.argv[2] ?? 600);
const flags = process.argv.slice(3);
const server = startEmbedded();
const peer = embeddedPeer(server);
const bucket = await freshBucket(peer, "soak");
const dir = tempDir("soak");
const MIB = 2 ** 20;
try {
  const disk = await mountWith([...peerArgs(peer), "--size=1G", ...flags, bucket], dir, true);
  server.setFaults({ errorRate: 0.02, errorStatuses: [500, 503], latencyMs: [0, 20] });
  const fio = spawn([
    "fio", "--name=soak", `--filename=${disk.file}`, "--rw=randrw", "--rwmixread=50", "--bs=4k", "--size=512M",
    "--ioengine=libaio", "--iodepth=16", "--direct=1", "--time_based", `--runtime=${seconds}`, "--randrepeat=0", "--output-format=terse",
  ], { stdout: "pipe", stderr: "pipe" });
  const started = performance.now();
  const cpu0 = processCpu(disk.pid).seconds;
  const samples: { s: number; mib: number }[] = [];
  console.log(`mount at rest: ${(resident(disk.pid) / MIB).toFixed(0)} MiB; fio randrw 4k x16 for ${seconds} s, 2% errors (flags: ${flags.join(" ") || "defaults"})`);
  while (fio.exitCode === null) {
    await Bun.sleep(5000);
    const s = Math.round((performance.now() - started) / 1000);
    samples.push({ s, mib: resident(disk.pid) / MIB });
    if (samples.length % 12 === 0) console.log(samples.slice(-12).map((x) => `${x.s}s ${x.mib.toFixed(0)}`).join("  "));
  }
  const cpu = processCpu(disk.pid).seconds - cpu0;
  const terse = (await new Response(fio.stdout).text()).split(";");
  console.log(`fio exit ${fio.exitCode}: read IOPS ${terse[7]}, write IOPS ${terse[48]}; server injected ${server.counters.injectedErrors} errors`);
  const ios = (Number(terse[7]) + Number(terse[48])) * seconds;
  console.log(`mount CPU: ${cpu.toFixed(1)} s (${((cpu / seconds) * 100).toFixed(0)}% of a core), ${((cpu * 1000) / ios).toFixed(2)} ms per I/O`);
  const lastHalf = samples.filter((x) => x.s >= seconds / 2).map((x) => x.mib);
  const [lo, hi] = [Math.min(...lastHalf), Math.max(...lastHalf)];
  const stats = readFileSync(disk.stats, "utf8");
  console.log(`peak ${Math.max(...samples.map((x) => x.mib)).toFixed(0)} MiB; last ${seconds / 2} s: ${lo.toFixed(0)}-${hi.toFixed(0)} MiB (spread ${(((hi - lo) / lo) * 100).toFixed(1)}%)`);
  // Growth shows in the mean of each minute; the spread also holds the swings between collections.
  const minutes = Map.groupBy(samples.filter((x) => x.s >= seconds / 2 && x.s <= seconds), (x) => Math.floor((x.s - seconds / 2) / 60));
  const mean = (xs: { mib: number }[]) => xs.reduce((n, x) => n + x.mib, 0) / xs.length;
  console.log(`last ${seconds / 2} s, mean of each minute: ${[...minutes.values()].map((xs) => mean(xs).toFixed(0)).join(", ")} MiB`);
  console.log(stats.split("\n").filter((l) => /resident|budget|heap|forced|blocks (cached|dirty|remembered)|errors|retries/.test(l)).join("\n"));
  server.reset();
  await disk.unmount();
} finally {
  await cleanupDisks();
  rmSync(dir, { recursive: true, force: true });
  await server.stop();
}
