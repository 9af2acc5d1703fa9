/**
 * The latency of one read at a time through the mount, idle and while write-back drains: 200 fio
 * 4 KiB O_DIRECT reads, one at a time, each of another uncached 1 MiB block (random order, aligned
 * to the blocks), p50 and p99 of their completion latency:
 *   idle    on a fresh mount with nothing dirty;
 *   flush   right after 1000 MiB were written (through a descriptor held open: a close would
 *           store them; --blockCacheWriteDelay long enough that they stay dirty) and `sync FILE`
 *           was started: the reads run while the 1000 dirty blocks are stored. Prints how long the sync took, so that one sees the
 *           reads ran inside it.
 * Rows: ours (dist/s3backer) and upstream's when UPSTREAM_S3BACKER=/path/to/it, in turns, --runs=N
 * rounds (3), each against a fresh bundled server in a process of its own (1 MiB blocks,
 * --size=4G --listBlocks, the default 1000-block cache). Extra flags for every mount:
 * MOUNT_FLAGS="--maxUploadSpeed=200M" (both programs take it).
 *
 *   bun bench/read-latency.ts [--runs=N]        (as root)
 */
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { bundledServer, run } from "./helpers.ts";
import { describeBuild, type MeasuredMount, startMount } from "./measured-mount.ts";

const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
const OURS = join(import.meta.dir, "../dist/s3backer");
const binaries = [OURS, ...(process.env.UPSTREAM_S3BACKER ? [process.env.UPSTREAM_S3BACKER] : [])];
const EXTRA = (process.env.MOUNT_FLAGS ?? "").split(" ").filter(Boolean);
const work = "/dev/shm/s3b-read-latency";
const mnt = join(work, "mnt");
const file = join(mnt, "file");
const READS = 200;
/** Regions of stored blocks, in MiB from the start: one for the idle reads, one for those during the flush. */
const IDLE_AT = 2048;
const FLUSH_AT = 2560;
const REGION = 400;
const DIRTY = 1000;

/** p50 and p99 in ms; the seconds the reads themselves took (fio's close after them waits for any flush). */
interface Latency { p50: number; p99: number; seconds: number }

/** 200 reads of 4 KiB, one at a time, each at the start of a random 1 MiB block of the region. */
async function reads(atMiB: number): Promise<Latency> {
  const out = await run(["fio", "--name=lat", `--filename=${file}`, "--rw=randread", "--bs=4k", "--blockalign=1M", `--offset=${atMiB}M`,
    `--size=${REGION}M`, `--number_ios=${READS}`, "--direct=1", "--ioengine=psync", "--randseed=42", "--percentile_list=50:99", "--output-format=json"]);
  const read = JSON.parse(out.slice(out.indexOf("{"), out.lastIndexOf("}") + 1)).jobs[0].read;
  const pct = read.clat_ns.percentile as Record<string, number>;
  return { p50: pct["50.000000"]! / 1e6, p99: pct["99.000000"]! / 1e6, seconds: read.runtime / 1000 };
}

async function once(binary: string): Promise<{ idle: Latency; flush: Latency; syncSeconds: number }> {
  const server = await bundledServer(OURS, "RL", "read-latency-secret", "rl");
  const args = [`--baseURL=${server.url}`, "--accessId=RL", "--accessKey=read-latency-secret", "--blockSize=1M", "--size=4G", "--listBlocks", ...EXTRA];
  let m: MeasuredMount | undefined;
  try {
    m = await startMount(binary, [...args, "rl", mnt], mnt);
    for (const at of [IDLE_AT, FLUSH_AT]) {
      await run(["dd", "if=/dev/urandom", `of=${file}`, "bs=1M", `seek=${at}`, `count=${REGION}`, "oflag=direct", "conv=notrunc,fsync", "status=none"]);
    }
    await m.stop();
    m = await startMount(binary, [...args, "--blockCacheWriteDelay=600000", "rl", mnt], mnt);
    const idle = await reads(IDLE_AT);
    // Written through a descriptor held open: a close makes the mount store everything (FLUSH).
    const fd = openSync(file, "r+");
    const chunk = new Uint8Array(2 ** 20);
    for (let i = 0; i < DIRTY; i++) writeSync(fd, crypto.getRandomValues(chunk.subarray(0, 65536)) && chunk, 0, chunk.length, i * chunk.length);
    const dirty = binary === OURS ? /^blocks dirty\s+(\d+)/m.exec(readFileSync(join(mnt, "stats"), "utf8"))?.[1] : "?";
    const syncStarted = performance.now();
    const sync = run(["sync", file]).then(() => (performance.now() - syncStarted) / 1000);
    const flush = await reads(FLUSH_AT);
    const syncSeconds = await sync;
    closeSync(fd);
    console.log(`  ${binary}: ${dirty} blocks dirty when the sync started`);
    await m.stop();
    m = undefined;
    return { idle, flush, syncSeconds };
  } finally {
    if (m) await m.stop().catch(() => m!.proc.kill());
    await server.stop();
  }
}

rmSync(work, { recursive: true, force: true });
mkdirSync(mnt, { recursive: true });
for (const b of binaries) console.log(describeBuild(b));
const results = new Map<string, Awaited<ReturnType<typeof once>>[]>();
for (let round = 0; round < RUNS; round++) {
  for (let i = 0; i < binaries.length; i++) {
    const binary = binaries[(i + round) % binaries.length]!; // each round starts at another row
    const r = await once(binary);
    results.set(binary, [...(results.get(binary) ?? []), r]);
    const ms = (l: Latency) => `p50 ${l.p50.toFixed(1)} ms, p99 ${l.p99.toFixed(1)} ms`;
    console.log(`round ${round + 1} ${binary}: idle ${ms(r.idle)}; during the flush ${ms(r.flush)} (the reads took ${r.flush.seconds.toFixed(1)} s of the sync's ${r.syncSeconds.toFixed(1)} s)`);
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[]) => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`;
console.log(`\n${READS} reads of 4 KiB, one at a time, uncached blocks; ms, median (range) of ${RUNS} rounds${EXTRA.length ? `; ${EXTRA.join(" ")}` : ""}`);
console.log("| build | idle p50 | idle p99 | flush p50 | flush p99 | flush p99 / idle p99 | sync s |\n|---|---|---|---|---|---|---|");
for (const [binary, rs] of results) {
  const ratio = median(rs.map((r) => r.flush.p99)) / median(rs.map((r) => r.idle.p99));
  console.log(`| ${binary} | ${fmt(rs.map((r) => r.idle.p50))} | ${fmt(rs.map((r) => r.idle.p99))} | ${fmt(rs.map((r) => r.flush.p50))} | ${fmt(rs.map((r) => r.flush.p99))} | ${ratio.toFixed(1)}x | ${fmt(rs.map((r) => r.syncSeconds))} |`);
}
rmSync(work, { recursive: true, force: true });
