/**
 * The crash-consistency test of test/mount/crash.test.ts, as long as asked: ext4 on the disk, a
 * workload that journals what it fsynced, kill -9 at random moments with faults injected through
 * the fault proxy, recovery, e2fsck, every fsynced file checked. Runs default flags and with a
 * cache file, against the bundled server and (when S3_RGW_URL is set: `. /opt/rgw.env`) Ceph RGW.
 * Prints per round what was checked and injected, and per run the seed to replay it with.
 *
 *   bun bench/crash-soak.ts [--rounds=20] [--seed=N] [--server=bundled|rgw|both] [--cache=off|on|both] [--no-faults] [--kill-after=MIN-MAX]
 */
import { rmSync } from "node:fs";
import { cleanupDisks, tempDir } from "../test/helpers/disk.ts";
import { crashRun } from "../test/helpers/crash.ts";
import { embeddedPeer, rgwPeer, startEmbedded, type Peer } from "../test/helpers/s3.ts";

const arg = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const rounds = Number(arg("rounds", "20"));
const baseSeed = Number(arg("seed", String(Math.floor(Math.random() * 2 ** 31))));
const servers = arg("server", "both");
const caches = arg("cache", "both");
const faults = !process.argv.includes("--no-faults");
const [killLo, killHi] = arg("kill-after", "1000-8000").split("-").map(Number) as [number, number];

const embedded = startEmbedded();
const peers: Peer[] = [];
if (servers !== "rgw") peers.push(embeddedPeer(embedded));
if (servers !== "bundled") {
  const rgw = rgwPeer();
  if (rgw) peers.push(rgw);
  else console.log("S3_RGW_URL is not set: Ceph RGW left out (. /opt/rgw.env)");
}
const cacheModes = caches === "both" ? [false, true] : [caches === "on"];

let failed = 0;
const summary: string[] = [];
const started = performance.now();
for (const peer of peers) {
  for (const cacheFile of cacheModes) {
    const seed = baseSeed + summary.length;
    const name = `${peer.name}, ${cacheFile ? "a cache file" : "default flags"}${faults ? ", faults" : ""}`;
    console.log(`== ${name}: ${rounds} rounds, seed ${seed} (replay with --seed=${seed} --server=${peer.name === "embedded" ? "bundled" : "rgw"} --cache=${cacheFile ? "on" : "off"})`);
    const dir = tempDir("crash-soak");
    const t0 = performance.now();
    try {
      const r = await crashRun({ peer, cacheFile, faults, rounds, seed, dir, killAfterMs: [killLo, killHi], log: (l) => console.log(`   ${l}`) });
      const checked = r.rounds.reduce((n, x) => n + x.checked, 0);
      const unsaved = r.rounds.reduce((n, x) => n + x.unsavedNew, 0);
      const fired = Object.entries(r.fired).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ");
      const line = `${r.problems.length ? "FAIL" : "ok  "} ${name}: ${r.rounds.length} kill -9 rounds in ${((performance.now() - t0) / 1000).toFixed(0)} s, ${checked} file checks${cacheFile ? `, ${unsaved} unsaved blocks recovered and compared` : ""}${fired ? `; faults fired: ${fired}` : ""}; seed ${seed}`;
      console.log(line);
      for (const p of r.problems) console.log(`     ${p}`);
      summary.push(line);
      failed += r.problems.length ? 1 : 0;
    } catch (err) {
      failed++;
      summary.push(`FAIL ${name}: ${(err as Error).message}; seed ${seed}`);
      console.log(summary.at(-1));
    } finally {
      await cleanupDisks();
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
await embedded.stop();
console.log(`\n${summary.join("\n")}\n${failed} of ${summary.length} runs failed, ${((performance.now() - started) / 1000).toFixed(0)} s`);
process.exit(failed ? 1 : 0);
