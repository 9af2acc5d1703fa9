/**
 * A cache file bigger than memory: 4096 x 1 MiB slots on the local disk, --blockCacheMemory at its
 * default, against the bundled server. Writes 3 GiB (O_DIRECT, fsync), then on a fresh mount of
 * the same cache file reads them back: the GET requests that took (the aim is none), MB/s and
 * CPU-seconds per GiB, cold (page cache dropped) and warm, next to a plain `dd` of the cache file
 * itself. Prints the mount's peak resident size (VmHWM) for each phase.
 * With --noVerify the fresh mount trusts the file (--blockCacheNoVerify): no HEAD per block.
 * Rows, taking turns each round: ours (S3BACKER_BINARY, else dist/s3backer), upstream's when
 * UPSTREAM_S3BACKER=/path/to/it, Debian's 1.5.4 (/usr/bin/s3backer) when installed; the server is
 * always ours.
 * Run by hand as root:  bun bench/cache-file.ts [MiB] [--runs=N] [--noVerify]
 */
import { spawn, spawnSync } from "bun";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ddRate, processCpu, run, waitGone } from "./helpers.ts";

const MIB = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 3072);
const RUNS = Number(process.argv.find((a) => a.startsWith("--runs="))?.slice(7) ?? 1);
const NO_VERIFY = process.argv.includes("--noVerify");
const BINARY = process.env.S3BACKER_BINARY ?? join(import.meta.dir, "../dist/s3backer");
/** A mount to measure, and the name of its stats file's count of GET requests. */
interface Client { name: string; binary: string; gets: string }
const clients: Client[] = [{ name: "ours", binary: BINARY, gets: "GET requests" }];
if (process.env.UPSTREAM_S3BACKER) clients.push({ name: "upstream", binary: process.env.UPSTREAM_S3BACKER, gets: "http_gets" });
if (existsSync("/usr/bin/s3backer")) clients.push({ name: "Debian 1.5.4", binary: "/usr/bin/s3backer", gets: "http_gets" });
const shm = "/dev/shm/s3b-cache-file";
const disk = "/var/tmp/s3b-cache-file"; // the cache file is on a real disk
const mnt = join(shm, "mnt");
const cache = join(disk, "cache");

const pidOf = async () => Number((await run(["pgrep", "-n", "-f", ` cf ${mnt}$`])).trim().split("\n")[0]);
const peakMiB = (pid: number) => Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024;
const stat = (name: string) => Number(new RegExp(`^${name}\\s+(\\d+)`, "m").exec(readFileSync(join(mnt, "stats"), "utf8"))![1]);
/** Cold: written back first (dirty pages stay cached, and their write-back would compete with the read). */
const dropCaches = () => {
  spawnSync(["sync"]);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
};

interface Round { write: number; writeCpu: number; writePeak: number; gets: number; cold: number; coldCpu: number; warm: number; readPeak: number; ddCold: number; ddWarm: number }

async function once(client: Client, source: string): Promise<Round> {
  rmSync(disk, { recursive: true, force: true });
  mkdirSync(disk, { recursive: true });
  const server = spawn([BINARY, "s3-server", "--port=0", "--access-key=CF", "--secret-key=cache-file-secret", "--bucket=cf"], { stdout: "pipe", stderr: "inherit" });
  const reader = server.stdout.getReader();
  let said = "";
  while (!/http:\/\/\S+/.test(said)) said += new TextDecoder().decode((await reader.read()).value);
  const url = /http:\/\/\S+/.exec(said)![0];
  const args = [
    `--baseURL=${url}`, "--accessId=CF", "--accessKey=cache-file-secret", "--blockSize=1M", "--size=4G", "--listBlocks",
    "--blockCacheSize=4096", `--blockCacheFile=${cache}`, "cf", mnt,
  ];
  const file = join(mnt, "file");
  const read = async () => ddRate(await run(["dd", `if=${file}`, "of=/dev/null", "bs=1M", `count=${MIB}`, "iflag=direct"]), MIB);
  try {
    await run([client.binary, ...args]);
    let pid = await pidOf();
    let cpu = processCpu(pid).seconds;
    const write = ddRate(await run(["dd", `if=${source}`, `of=${file}`, "bs=1M", `count=${MIB}`, "oflag=direct", "conv=notrunc,fsync"]), MIB);
    const writeCpu = ((processCpu(pid).seconds - cpu) * 1024) / MIB;
    const writePeak = peakMiB(pid);
    await run(["umount", mnt]);
    await waitGone(mnt);

    await run([client.binary, ...(NO_VERIFY ? ["--blockCacheNoVerify"] : []), ...args]);
    pid = await pidOf();
    const getsBefore = stat(client.gets);
    dropCaches();
    cpu = processCpu(pid).seconds;
    const cold = await read();
    const coldCpu = ((processCpu(pid).seconds - cpu) * 1024) / MIB;
    const warm = await read();
    const gets = stat(client.gets) - getsBefore;
    const readPeak = peakMiB(pid);
    await run(["umount", mnt]);
    await waitGone(mnt);

    dropCaches();
    const ddCold = ddRate(await run(["dd", `if=${cache}`, "of=/dev/null", "bs=1M", `count=${MIB}`]), MIB);
    const ddWarm = ddRate(await run(["dd", `if=${cache}`, "of=/dev/null", "bs=1M", `count=${MIB}`]), MIB);
    return { write, writeCpu, writePeak, gets, cold, coldCpu, warm, readPeak, ddCold, ddWarm };
  } finally {
    // A failed round leaves nothing behind for the next: not its mount, nor the mount's process.
    await run(["umount", "-l", mnt]).catch(() => {});
    await run(["pkill", "-9", "-f", ` cf ${mnt}$`]).catch(() => {});
    server.kill();
    await server.exited;
    rmSync(disk, { recursive: true, force: true });
  }
}

rmSync(shm, { recursive: true, force: true });
mkdirSync(mnt, { recursive: true });
const source = join(shm, "source.bin");
await run(["dd", "if=/dev/urandom", `of=${source}`, "bs=1M", `count=${MIB}`, "status=none"]);
const rounds = new Map<Client, Round[]>(clients.map((c) => [c, []]));
for (let i = 0; i < RUNS; i++) {
  for (const client of clients) {
    const r = await once(client, source);
    rounds.get(client)!.push(r);
    console.log(
      `round ${i + 1}, ${client.name}: write ${r.write.toFixed(0)} MB/s (${r.writeCpu.toFixed(2)} CPU-s/GiB, peak RSS ${r.writePeak.toFixed(0)} MiB); ` +
        `fresh mount: ${r.gets} GETs, cold read ${r.cold.toFixed(0)} MB/s (${r.coldCpu.toFixed(2)} CPU-s/GiB), warm ${r.warm.toFixed(0)} MB/s, ` +
        `peak RSS ${r.readPeak.toFixed(0)} MiB; dd of the cache file: cold ${r.ddCold.toFixed(0)} MB/s, warm ${r.ddWarm.toFixed(0)} MB/s`,
    );
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(`\n| ${MIB} MiB | write MB/s | CPU-s/GiB | peak RSS MiB | GETs on reread | cold read MB/s | CPU-s/GiB | warm read MB/s | peak RSS MiB | dd of the file, cold | warm |`);
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const [client, rs] of rounds) {
  const fmt = (key: keyof Round, d = 0) => {
    const xs = rs.map((r) => r[key]);
    return `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
  };
  console.log(`| ${client.name} | ${fmt("write")} | ${fmt("writeCpu", 2)} | ${fmt("writePeak")} | ${fmt("gets")} | ${fmt("cold")} | ${fmt("coldCpu", 2)} | ${fmt("warm")} | ${fmt("readPeak")} | ${fmt("ddCold")} | ${fmt("ddWarm")} |`);
}
rmSync(shm, { recursive: true, force: true });
