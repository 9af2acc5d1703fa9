/**
 * A hostile NBD client against a slow server: it pipelines 32 MiB WRITEs and never reads a reply.
 * The server must stop taking its bytes (its sends block) and keep to its memory, whatever it sends.
 * bench/nbd-flood.ts runs the same for 4 GiB.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { floodWrites, peakResident } from "../helpers/nbd-flood.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../helpers/s3.ts";

const server = startEmbedded();
afterEach(async () => {
  server.reset();
  await cleanupNbd(); // a server still flushing gets 10 s, then SIGKILL
}, 30_000);
afterAll(() => server.stop());

const MIB = 2 ** 20;

test("a client pipelining 32 MiB WRITEs without reading replies is held back, and memory stays bounded", async () => {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "nbd-flood");
  const nbd = await serveNbd([...peerArgs(peer), "--blockCacheSize=64", "--blockSize=1M", "--size=1G"], { source: bucket });
  server.setFaults({ latencyMs: 2000 }); // every upload takes 2 s: the cache fills at once
  const flood = await floodWrites(nbd.socket, { totalBytes: 2048 * MIB, requestBytes: 32 * MIB, seconds: 10 });
  const peak = peakResident(nbd.pid);
  console.log(`sent ${(flood.sent / MIB).toFixed(0)} MiB in ${(flood.elapsedMs / 1000).toFixed(1)} s, stalled ${(flood.stalledMs / 1000).toFixed(1)} s; peak RSS ${(peak / MIB).toFixed(0)} MiB`);
  // Held back: the sends blocked most of the time, and far less went in than the client had to send
  // (the server takes the cache, the requests in flight, and what 2-second uploads store meanwhile).
  expect(flood.stalledMs).toBeGreaterThan(flood.elapsedMs / 2);
  expect(flood.sent).toBeLessThan(600 * MIB);
  // The budget is the 64 MiB cache + 100 MiB plus the runtime (65-76 MiB at rest); the margin is wide, the
  // unbounded server grew past a gigabyte in these 10 s.
  expect(peak).toBeLessThan(480 * MIB);
  server.setFaults({ latencyMs: 0 });
  await nbd.stop();
  expect(server.counters.requests.PUT).toBeGreaterThan(64);
}, 60_000);
