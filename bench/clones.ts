/**
 * What clones cost, on the bundled S3 server in this process (it counts every request): making a
 * clone of a 100 GiB disk (wall time until its NBD socket answers, and the requests it made: none
 * per block), and a cold read of data a clone inherits against the same read of its base (GETs
 * counted, once the clone's levels are listed and right after its start). Several rounds; times
 * as median and range.
 *
 *   bun build.ts && bun bench/clones.ts [--runs=3]
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { S3Server } from "../src/s3server/s3-server.ts";
import type { ServerCounters } from "../src/s3server/faults.ts";
import { run } from "./helpers.ts";

const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
const BINARY = join(import.meta.dir, "../dist/s3backer");
const work = "/dev/shm/s3b-clonebench";
const ACCESS = "CLONEBENCH";
const SECRET = "clone-bench-secret";
const DATA_MIB = 256;
const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } }, buckets: ["disks"] });
server.start();
const creds = [`--baseURL=${server.url}`, `--accessId=${ACCESS}`, `--accessKey=${SECRET}`];

/** Serves `disk` over NBD in the background; returns how to reach and stop it. */
async function serve(name: string, flags: string[], disk: string) {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "socket");
  const stats = join(dir, "stats");
  const began = performance.now();
  await run([BINARY, `--pidFile=${join(dir, "pid")}`, `--logFile=${join(dir, "log")}`, `--statsFileMirror=${stats}`, "--statsFileMirrorInterval=50", "--nbd", ...creds, ...flags, `disks/${disk}`, `unix:${socket}`]);
  const ms = performance.now() - began;
  const pid = Number(readFileSync(join(dir, "pid"), "utf8"));
  return {
    ms,
    target: `nbd:unix:${socket}`,
    /** Every level of the chain listed (or not mapped at all). */
    listed: () => existsSync(stats) && !/level \d+[^\n]*: (not listed|listing)/.test(readFileSync(stats, "utf8")),
    async stop() {
      process.kill(pid, "SIGTERM");
      while (existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ")) await Bun.sleep(20);
    },
  };
}

const counted = (c: ServerCounters) => Object.entries(c.requests).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") || "none";
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`;

async function coldRead(disk: string, waitListed: boolean): Promise<number> {
  const d = await serve(`read-${disk}`, ["--readOnly"], disk);
  while (waitListed && !d.listed()) await Bun.sleep(20);
  server.counters.reset();
  await run(["qemu-io", "-f", "raw", "-r", "-c", `read 0 ${DATA_MIB}M`, d.target]);
  const gets = server.counters.requests.GET;
  await d.stop();
  return gets;
}

rmSync(work, { recursive: true, force: true });
const makeMs: number[] = [];
const rows: string[] = [];
try {
  const base = await serve("base", ["--blockSize=1M", "--size=100G"], "golden");
  await run(["qemu-io", "-f", "raw", "-c", `write -P 7 0 ${DATA_MIB}M`, "-c", "flush", base.target]);
  await base.stop();
  const blocks = 100 * 1024;
  for (let round = 0; round < RUNS; round++) {
    server.counters.reset();
    const clone = await serve(`clone${round}`, ["--base=disks/golden"], `jobs/${round}`);
    makeMs.push(clone.ms);
    const requests = counted(server.counters);
    await clone.stop();
    if (round === 0) rows.push(`  requests while making it and starting its server: ${requests} (the disk has ${blocks} blocks)`);
  }
  const baseGets = await coldRead("golden", true);
  const cloneListed = await coldRead("jobs/0", true);
  const cloneEarly = await coldRead("jobs/0", false);
  console.log(`clone of a 100 GiB disk (1 MiB blocks, ${DATA_MIB} MiB of data), bundled server, ${RUNS} rounds`);
  console.log(`  made and served (until its NBD socket answers): median ${median(makeMs).toFixed(0)} ms, range ${range(makeMs)} ms`);
  for (const row of rows) console.log(row);
  console.log(`cold read of the ${DATA_MIB} MiB the clone inherits, GETs:`);
  console.log(`  the base itself:                 ${baseGets}`);
  console.log(`  the clone, its levels listed:    ${cloneListed} (${(cloneListed / baseGets).toFixed(2)}x)`);
  console.log(`  the clone, read once it serves:  ${cloneEarly} (a read before its listing ends asks each level)`);
} finally {
  server.stop();
  rmSync(work, { recursive: true, force: true });
}
