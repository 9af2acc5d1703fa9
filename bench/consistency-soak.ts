/**
 * The model-based concurrency cases of test/mount/consistency.test.ts, as long as asked: every case
 * runs for SECONDS (default 60) against the bundled server with the case's faults, then is killed
 * with -9 and checked after a fresh mount. Prints per case the operations done and every wrong
 * read, false EIO or lost write (there should be none), and the seed to replay it with.
 *
 *   bun bench/consistency-soak.ts [SECONDS] [CASE-NAME-PART]
 */
import { rmSync } from "node:fs";
import { cleanupDisks, tempDir } from "../test/helpers/disk.ts";
import { MODEL_CASES, runModelCase } from "../test/helpers/model.ts";
import { startEmbedded } from "../test/helpers/s3.ts";

const seconds = Number(process.argv[2] ?? 60);
const only = process.argv[3];
const server = startEmbedded();
let bad = 0;
const started = performance.now();
for (const c of MODEL_CASES.filter((c) => !only || c.name.includes(only))) {
  const seed = Math.floor(Math.random() * 2 ** 31);
  const dir = tempDir("soak");
  try {
    const { run, fired, check } = await runModelCase(server, c, seed, seconds, dir);
    const unfired = Object.entries(fired).filter(([, n]) => n === 0).map(([fault]) => fault);
    const failed = run.failed + check.failed + unfired.length;
    bad += failed;
    const ops = Object.entries(run.counts).map(([k, v]) => `${k} ${v}`).join(", ");
    const faults = Object.entries(fired).map(([k, v]) => `${k} ${v}`).join(", ");
    console.log(`${failed ? "FAIL" : "ok  "} ${c.name} (seed ${seed}, ${seconds} s): ${ops}${faults ? `; faults fired: ${faults}` : ""}; after kill -9: ${check.failed ? check.failures.join("; ") : "every fsynced write there"}`);
    if (unfired.length) console.log(`     injected but never fired: ${unfired.join(", ")}`);
    for (const f of [...run.failures, ...check.failures]) console.log(`     ${f}`);
  } finally {
    server.reset();
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
}
server.stop();
console.log(`${bad} failures in ${((performance.now() - started) / 1000).toFixed(0)} s`);
process.exit(bad ? 1 : 0);
