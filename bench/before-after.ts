/**
 * Two builds of s3backer (or ours and upstream's) side by side, rows in turns, for "not slower than before": a sequential
 * O_DIRECT write with fsync; after a fresh mount, 4 KiB random reads one at a time over the
 * written GiB (fio, O_DIRECT, 6 s: the first read of each block waits for its fetch, and the many
 * after it hit the cache, so this is mostly the latency of a cached read through the mount; a
 * fetch's own latency is read-latency.ts's);
 * after another, a cold O_DIRECT read, a read as long of blocks never written (the zero-block
 * path: no request), and fio 4 KiB random read/write (4 jobs, O_DIRECT, 8 s),
 * each against a fresh bundled server in a process of its own
 * (1 MiB blocks, --size=4G --listBlocks). Prints every round, then medians and ranges with the
 * mount's CPU-seconds per GiB (the write's until the process has exited after umount), each
 * build's version and compiler flags, and what fresh memory cost at the start and the end.
 *
 *   bun bench/before-after.ts OLD_BINARY NEW_BINARY [--runs=N] [--mib=N]     (as root)
 */
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bundledServer, childCpu, ddRate, fio, run } from "./helpers.ts";
import { describeBuild, freshPageMicros, implausible, type MeasuredMount, startMount } from "./measured-mount.ts";

const binaries = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
const MIB = Number(/^--mib=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--mib=")) ?? "")?.[1] ?? 512);
if (binaries.length !== 2) {
  console.error("usage: bun bench/before-after.ts OLD_BINARY NEW_BINARY [--runs=N] [--mib=N]");
  process.exit(2);
}
const work = "/dev/shm/s3b-before-after";
/** Every row's server is the bundled one of this checkout's build, so another program can be a row too (upstream's s3backer). */
const SERVER = join(import.meta.dir, "../dist/s3backer");
const mnt = join(work, "mnt");

interface Result { write: number; writeCpu: number; writeFaults: number; coldIops: number; coldIopsCpu: number; read: number; readCpu: number; zeroRead: number; zeroReadCpu: number; iops: number }

/** fio's 4 KiB O_DIRECT I/O for a time on the mount's file. */
const fio4k = (options: string[]) => fio(["--name=r", `--filename=${join(mnt, "file")}`, "--bs=4k", "--direct=1", "--ioengine=psync", "--time_based", ...options]);

async function once(binary: string, source: string): Promise<Result> {
  const server = await bundledServer(SERVER, "BA", "before-after-secret", "ba");
  const args = [`--baseURL=${server.url}`, "--accessId=BA", "--accessKey=before-after-secret", "--blockSize=1M", "--size=4G", "--listBlocks", "ba", mnt];
  let m: MeasuredMount | undefined;
  try {
    // The write's CPU runs until the process has exited after umount: a program whose fsync returns
    // before every block is stored (upstream's does) still pays for the rest.
    m = await startMount(binary, args, mnt);
    let cpu = childCpu(m.proc);
    const faults = m.faults();
    const write = ddRate(await run(["dd", `if=${source}`, `of=${join(mnt, "file")}`, "bs=1M", "oflag=direct", "conv=notrunc,fsync"]), MIB);
    const writeFaults = ((m.faults() - faults) * 1024) / MIB;
    const writeCpu = (((await m.stop()) - cpu) * 1024) / MIB;
    m = await startMount(binary, args, mnt);
    cpu = childCpu(m.proc);
    const coldIops = Math.round((await fio4k(["--rw=randread", "--numjobs=1", `--size=${MIB}M`, "--runtime=6"])).read.iops);
    const coldIopsCpu = childCpu(m.proc) - cpu;
    await m.stop();
    m = await startMount(binary, args, mnt);
    cpu = childCpu(m.proc);
    const read = ddRate(await run(["dd", `if=${join(mnt, "file")}`, "of=/dev/null", "bs=1M", `count=${MIB}`, "iflag=direct"]), MIB);
    const readCpu = ((childCpu(m.proc) - cpu) * 1024) / MIB;
    cpu = childCpu(m.proc);
    const zeroRead = ddRate(await run(["dd", `if=${join(mnt, "file")}`, "of=/dev/null", "bs=1M", `skip=${MIB}`, `count=${MIB}`, "iflag=direct"]), MIB);
    const zeroReadCpu = ((childCpu(m.proc) - cpu) * 1024) / MIB;
    const job = await fio4k(["--rw=randrw", "--numjobs=4", "--size=128M", "--offset_increment=128M", "--runtime=8"]);
    await m.stop();
    m = undefined;
    for (const [what, figure] of [["write", writeCpu], ["read", readCpu]] as const) {
      const why = implausible(figure);
      if (why) console.warn(`WARNING ${binary} ${what}: ${why}`);
    }
    return { write, writeCpu, writeFaults, coldIops, coldIopsCpu, read, readCpu, zeroRead, zeroReadCpu, iops: Math.round(job.read.iops + job.write.iops) };
  } finally {
    if (m) await m.stop().catch(() => m!.proc.kill());
    await server.stop();
  }
}

rmSync(work, { recursive: true, force: true });
mkdirSync(mnt, { recursive: true });
const source = join(work, "source.bin");
await run(["dd", "if=/dev/urandom", `of=${source}`, "bs=1M", `count=${MIB}`, "status=none"]);
for (const b of binaries) console.log(describeBuild(b));
const pageCost = [freshPageMicros()];
const results: Result[][] = binaries.map(() => []);
for (let round = 0; round < RUNS; round++) {
  for (let i = 0; i < binaries.length; i++) {
    const which = (i + round) % binaries.length; // each round starts at the other build
    const r = await once(binaries[which]!, source);
    results[which]!.push(r);
    console.log(`round ${round + 1} ${binaries[which]}: write ${r.write.toFixed(0)} MB/s (${r.writeCpu.toFixed(2)} CPU-s/GiB until exit, ${Math.round(r.writeFaults / 1000)}k faults/GiB), 4 KiB one at a time after a fresh mount ${r.coldIops} IOPS (${r.coldIopsCpu.toFixed(2)} CPU-s), cold read ${r.read.toFixed(0)} MB/s (${r.readCpu.toFixed(2)} CPU-s/GiB), never-written read ${r.zeroRead.toFixed(0)} MB/s (${r.zeroReadCpu.toFixed(2)} CPU-s/GiB), fio ${r.iops} IOPS`);
  }
}
pageCost.push(freshPageMicros());
console.log(`\nfresh memory's first touch: ${pageCost.map((c) => c.toFixed(2)).join(" -> ")} µs per 4 KiB page (start -> end); a row's faults/GiB times this is what it paid for fresh memory`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[], d = 0) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
console.log("\n| build | write MB/s | CPU-s/GiB until exit | faults/GiB | 4 KiB reads one at a time after a fresh mount (mostly hits), IOPS | CPU-s | cold read MB/s | CPU-s/GiB | never-written read MB/s | CPU-s/GiB | fio IOPS |\n|---|---|---|---|---|---|---|---|---|---|---|");
binaries.forEach((b, i) => {
  const rs = results[i]!;
  console.log(`| ${b} | ${fmt(rs.map((r) => r.write))} | ${fmt(rs.map((r) => r.writeCpu), 2)} | ${fmt(rs.map((r) => r.writeFaults / 1000))}k | ${fmt(rs.map((r) => r.coldIops))} | ${fmt(rs.map((r) => r.coldIopsCpu), 2)} | ${fmt(rs.map((r) => r.read))} | ${fmt(rs.map((r) => r.readCpu), 2)} | ${fmt(rs.map((r) => r.zeroRead))} | ${fmt(rs.map((r) => r.zeroReadCpu), 2)} | ${fmt(rs.map((r) => r.iops))} |`);
});
rmSync(work, { recursive: true, force: true });
