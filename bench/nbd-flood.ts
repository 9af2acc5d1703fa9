/**
 * NBD flood: a hostile client pipelines 32 MiB WRITEs and never reads a reply, against
 * `--nbd --blockCacheSize=64 --blockSize=1M` over the bundled server answering every request after
 * LATENCY ms (default 3000), until GIB GiB (default 4) are sent. Prints the server's resident size
 * every 10 s, its peak, and how long the client's sends were blocked. The memory budget is the
 * cache + 100 MiB, plus the runtime (65-76 MiB at rest).
 *
 *   bun build.ts && bun bench/nbd-flood.ts [GIB] [LATENCY]
 */
import { serveNbd, cleanupNbd } from "../test/helpers/nbd.ts";
import { floodWrites, peakResident, resident } from "../test/helpers/nbd-flood.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../test/helpers/s3.ts";

const gib = Number(process.argv[2] ?? 4);
const latencyMs = Number(process.argv[3] ?? 3000);
const MIB = 2 ** 20;
const server = startEmbedded();
const peer = embeddedPeer(server);
const bucket = await freshBucket(peer, "nbd-flood");
try {
  const nbd = await serveNbd([...peerArgs(peer), "--blockCacheSize=64", "--blockSize=1M", "--size=1G"], { source: bucket });
  console.log(`at rest: ${(resident(nbd.pid) / MIB).toFixed(0)} MiB; flooding ${gib} GiB of 32 MiB WRITEs, server latency ${latencyMs} ms`);
  server.setFaults({ latencyMs });
  const started = performance.now();
  const samples: string[] = [];
  const sampler = setInterval(() => {
    samples.push(`${((performance.now() - started) / 1000).toFixed(0)}s ${(resident(nbd.pid) / MIB).toFixed(0)}`);
    if (samples.length % 10 === 0) console.log(samples.slice(-10).join("  "));
  }, 10_000);
  const flood = await floodWrites(nbd.socket, { totalBytes: gib * 1024 * MIB, requestBytes: 32 * MIB, seconds: 3600 });
  clearInterval(sampler);
  if (samples.length % 10) console.log(samples.slice(-(samples.length % 10)).join("  "));
  const seconds = flood.elapsedMs / 1000;
  console.log(
    `sent ${(flood.sent / MIB).toFixed(0)} MiB in ${seconds.toFixed(0)} s (${(flood.sent / MIB / seconds).toFixed(1)} MiB/s); ` +
      `the client's sends blocked ${((flood.stalledMs / flood.elapsedMs) * 100).toFixed(0)}% of the time (longest ${(flood.longestStallMs / 1000).toFixed(1)} s)`,
  );
  console.log(`peak RSS ${(peakResident(nbd.pid) / MIB).toFixed(0)} MiB (budget 164 MiB + the runtime)`);
  server.setFaults({ latencyMs: 0 });
  await nbd.stop();
} finally {
  await cleanupNbd();
  await server.stop();
}
