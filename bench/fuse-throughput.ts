/**
 * The raw FUSE path, no network: dd 1 GiB write and read with bs=1M (buffered+fsync and O_DIRECT),
 * fio 4 KiB random read/write IOPS with 4 jobs, and the server's CPU seconds per GiB moved.
 * Runs ours on the in-memory store and on a tmpfs directory (block cache and consistency guard
 * off: this is the FUSE path itself), and Debian's s3backer --test on the same tmpfs, with the
 * same block size. S3BACKER_BINARY measures another build of ours.
 * Run by hand as root:  bun bench/fuse-throughput.ts [sizeMiB]
 */
import { spawnSync } from "bun";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { processCpu } from "./helpers.ts";
import { join } from "node:path";

const MIB = Number(process.argv[2] ?? 1024);
const BLOCK = "1M";
const work = "/dev/shm/s3b-bench";
const source = join(work, "source.bin");
const OURS = process.env.S3BACKER_BINARY ?? join(import.meta.dir, "../dist/s3backer");

function sh(cmd: string[], allowFail = false): string {
  const r = spawnSync(cmd, { stderr: "pipe" });
  if (r.exitCode !== 0 && !allowFail) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString() + r.stderr.toString();
}


function dd(args: string[]): number {
  const out = sh(["dd", ...args]);
  const m = /copied, ([\d.]+) s/.exec(out);
  return (MIB * 2 ** 20) / Number(m![1]) / 1e6; // MB/s
}

function fio(file: string): number {
  const out = sh([
    "fio", "--name=rand", `--filename=${file}`, "--rw=randrw", "--bs=4k", "--numjobs=4", "--size=256M",
    "--offset_increment=256M", "--direct=1", "--ioengine=psync", "--time_based", "--runtime=8",
    "--group_reporting", "--output-format=json",
  ]);
  const job = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
  return Math.round(job.read.iops + job.write.iops);
}

interface Row { name: string; write: number; writeDirect: number; read: number; readDirect: number; iops: number; cpuPerGiB: number }

async function measure(name: string, mount: (mnt: string) => void, mnt: string): Promise<Row> {
  mkdirSync(mnt, { recursive: true });
  mount(mnt);
  const pid = Number(sh(["pgrep", "-n", "-f", `s3backer.* ${mnt}`]).trim().split("\n")[0]);
  const file = join(mnt, "file");
  const cpu0 = processCpu(pid).seconds;
  const write = dd([`if=${source}`, `of=${file}`, "bs=1M", "conv=notrunc,fsync"]);
  const writeDirect = dd([`if=${source}`, `of=${file}`, "bs=1M", "oflag=direct", "conv=notrunc"]);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
  const read = dd([`if=${file}`, "of=/dev/null", "bs=1M"]);
  const readDirect = dd([`if=${file}`, "of=/dev/null", "bs=1M", "iflag=direct"]);
  const cpuPerGiB = (processCpu(pid).seconds - cpu0) / ((4 * MIB) / 1024);
  const iops = fio(file);
  sh(["umount", mnt]);
  while (sh(["pgrep", "-f", `s3backer.* ${mnt}`], true).trim()) await Bun.sleep(50);
  return { name, write, writeDirect, read, readDirect, iops, cpuPerGiB };
}

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
sh(["dd", "if=/dev/urandom", `of=${source}`, "bs=1M", `count=${MIB}`]);
const size = `${MIB}M`;
const rows: Row[] = [];
try {
  rows.push(await measure("ours, memory store", (m) => sh([OURS, "--test", "--blockCacheSize=0", "--md5CacheSize=0", `--blockSize=${BLOCK}`, `--size=${size}`, ":memory:", m]), join(work, "m1")));
  mkdirSync(join(work, "b2"));
  rows.push(await measure("ours, tmpfs dir", (m) => sh([OURS, "--test", "--blockCacheSize=0", "--md5CacheSize=0", `--blockSize=${BLOCK}`, `--size=${size}`, join(work, "b2"), m]), join(work, "m2")));
  mkdirSync(join(work, "b3"));
  rows.push(await measure("Debian s3backer 1.5.4, tmpfs dir", (m) => sh(["s3backer", "--test", `--blockSize=${BLOCK}`, `--size=${size}`, join(work, "b3"), m]), join(work, "m3")));
} finally {
  for (const m of ["m1", "m2", "m3"]) sh(["umount", "-l", join(work, m)], true);
  await Bun.sleep(500);
  rmSync(work, { recursive: true, force: true });
}

const f = (n: number) => n.toFixed(0).padStart(8);
console.log(`\n${MIB} MiB, ${BLOCK} blocks, bs=1M; MB/s unless noted; fio: 4k randrw, 4 jobs, O_DIRECT\n`);
console.log(`${"".padEnd(34)}   write+fsync  O_DIRECT write  cold read  O_DIRECT read  fio IOPS  CPU s/GiB`);
for (const r of rows) {
  console.log(`${r.name.padEnd(34)}   ${f(r.write)}     ${f(r.writeDirect)}       ${f(r.read)}   ${f(r.readDirect)}     ${f(r.iops)}   ${r.cpuPerGiB.toFixed(2).padStart(8)}`);
}
