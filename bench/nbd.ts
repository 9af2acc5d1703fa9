/**
 * NBD mode against FUSE + loop device, on the bundled S3 server in this process, rows in turns:
 * fio writes 1 GiB sequentially (1 MiB requests, 8 in flight, flushed at the end), reads it back
 * after a fresh start, then 4 KiB random reads and writes for 10 s. Prints MB/s, IOPS and the
 * server process's CPU-seconds per GiB, as medians and ranges. With UPSTREAM_S3BACKER set (the
 * binary in upstream's built source tree), upstream's nbdkit plugin from that tree is a row too
 * (`nbdkit -f -U SOCKET .libs/nbdkit-s3backer-plugin.so ...`, the process measured being nbdkit).
 *
 *   bun build.ts && [UPSTREAM_S3BACKER=.../s3backer] bun bench/nbd.ts [--runs=3]
 */
import { spawn, type Subprocess } from "bun";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { S3Server } from "../src/s3server/s3-server.ts";
import { childCpu, fio, run } from "./helpers.ts";

const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
const BINARY = join(import.meta.dir, "../dist/s3backer");
const work = "/dev/shm/s3b-nbdbench";
const ACCESS = "NBDBENCH";
const SECRET = "nbd-bench-secret";
const GEOMETRY = ["--blockSize=1M", "--size=2G", "--listBlocks"];
const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } } });
server.start();
const creds = [`--baseURL=${server.url}`, `--accessId=${ACCESS}`, `--accessKey=${SECRET}`];

const UPSTREAM = process.env.UPSTREAM_S3BACKER;
const PLUGIN = UPSTREAM && join(dirname(UPSTREAM), ".libs/nbdkit-s3backer-plugin.so");
if (PLUGIN && !exists(PLUGIN)) throw new Error(`${PLUGIN}: not built (upstream's configure builds it when nbdkit's headers are installed)`);
type Kind = "nbd" | "fuse+loop" | "upstream nbdkit";
const KINDS: Kind[] = PLUGIN ? ["nbd", "fuse+loop", "upstream nbdkit"] : ["nbd", "fuse+loop"];

interface Target {
  proc: Subprocess;
  /** fio's arguments that point at the disk. */
  fio: string[];
  stop(): Promise<void>;
}

const socket = join(work, "socket");
const mnt = join(work, "mnt");

/** An NBD server on `socket` (ours or upstream's nbdkit), stopped with SIGTERM. */
async function startNbdServer(command: string[]): Promise<Target> {
  rmSync(socket, { force: true }); // the last server's, if it left it: "exists" must mean this one listens
  const proc = spawn(command, { stdout: "ignore", stderr: "pipe" });
  await waitUntil(() => exists(socket), proc);
  return {
    proc,
    fio: ["--ioengine=nbd", `--uri=nbd+unix:///?socket=${socket}`],
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
    },
  };
}

const startNbd = (bucket: string) => startNbdServer([BINARY, "-f", "--nbd", ...creds, ...GEOMETRY, bucket, `unix:${socket}`]);
const startUpstreamNbd = (bucket: string) =>
  startNbdServer(["nbdkit", "-f", "-U", socket, PLUGIN!, `baseURL=${server.url}`, `accessId=${ACCESS}`, `accessKey=${SECRET}`, `bucket=${bucket}`, "blockSize=1M", "size=2G", "listBlocks=true"]);

async function startFuse(bucket: string): Promise<Target> {
  const proc = spawn([BINARY, "-f", ...creds, ...GEOMETRY, bucket, mnt], { stdout: "ignore", stderr: "pipe" });
  await waitUntil(() => readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === mnt), proc);
  const loop = (await run(["losetup", "-f", "--show", "--direct-io=on", join(mnt, "file")])).trim();
  return {
    proc,
    fio: ["--ioengine=libaio", "--direct=1", `--filename=${loop}`],
    async stop() {
      await run(["losetup", "-d", loop]);
      await run(["umount", mnt]);
      await proc.exited;
    },
  };
}

function exists(path: string): boolean {
  try {
    readFileSync(path);
    return true;
  } catch (err) {
    return (err as { code?: string }).code !== "ENOENT";
  }
}

async function waitUntil(cond: () => boolean, proc: Subprocess): Promise<void> {
  const until = Date.now() + 60_000;
  while (!cond()) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`did not start: ${await new Response(proc.stderr as ReadableStream).text()}`);
    await Bun.sleep(20);
  }
}

async function fioOn(target: Target, args: string[]): Promise<{ bw: number; iops: number }> {
  const job = await fio(["--name=b", ...target.fio, ...args]);
  return { bw: (job.read.bw_bytes + job.write.bw_bytes) / 1e6, iops: job.read.iops + job.write.iops };
}

type Row = { write: number; writeCpu: number; read: number; readCpu: number; iops: number };

async function row(kind: Kind, round: number): Promise<Row> {
  const bucket = `nbd-${kind.replace(/\W/g, "")}-${round}`;
  server.objects.createBucket(bucket);
  const start = kind === "nbd" ? startNbd : kind === "fuse+loop" ? startFuse : startUpstreamNbd;
  let t = await start(bucket);
  const seq = ["--bs=1M", "--size=1G", "--iodepth=8"];
  // Until durable: fio's last fsync, then the process flushes and exits.
  let cpu0 = childCpu(t.proc);
  const w0 = performance.now();
  await fioOn(t, [...seq, "--rw=write", "--end_fsync=1"]);
  await t.stop();
  const write = 1024 * 2 ** 20 / ((performance.now() - w0) / 1000) / 1e6;
  const writeCpu = childCpu(t.proc) - cpu0;

  t = await start(bucket);
  cpu0 = childCpu(t.proc);
  const read = (await fioOn(t, [...seq, "--rw=read"])).bw;
  const readCpu = childCpu(t.proc) - cpu0;
  const iops = (await fioOn(t, ["--bs=4k", "--size=256M", "--iodepth=16", "--rw=randrw", "--time_based", "--runtime=10"])).iops;
  await t.stop();
  for (const key of server.objects.keys(bucket)) server.objects.delete(bucket, key);
  return { write, writeCpu, read, readCpu, iops };
}

rmSync(work, { recursive: true, force: true });
mkdirSync(mnt, { recursive: true });
const results = new Map<string, Row[]>();
for (let round = 0; round < RUNS; round++) {
  for (let i = 0; i < KINDS.length; i++) {
    const kind = KINDS[(i + round) % KINDS.length]!; // each round starts at another row
    const r = await row(kind, round);
    results.set(kind, [...(results.get(kind) ?? []), r]);
    console.error(`round ${round + 1} ${kind}: ${JSON.stringify(r)}`);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const fmt = (xs: number[], d = 0) => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
console.log(`| row | write 1 GiB until exit (MB/s) | CPU-s/GiB written | cold read (MB/s) | CPU-s/GiB read | 4 KiB randrw (IOPS) |`);
console.log(`|---|---|---|---|---|---|`);
for (const [kind, rows] of results) {
  const col = (k: keyof Row, d = 0) => fmt(rows.map((r) => r[k]), d);
  console.log(`| ${kind} | ${col("write")} | ${col("writeCpu", 2)} | ${col("read")} | ${col("readCpu", 2)} | ${col("iops")} |`);
}
const ratio = (k: keyof Row, to: Kind) => (median(results.get("nbd")!.map((r) => r[k])) / median(results.get(to)!.map((r) => r[k]))).toFixed(2);
for (const to of KINDS.slice(1)) {
  console.log(`\nnbd / ${to}: write ${ratio("write", to)}x, cold read ${ratio("read", to)}x, randrw ${ratio("iops", to)}x; CPU-s/GiB written ${ratio("writeCpu", to)}x, read ${ratio("readCpu", to)}x`);
}
server.stop();
rmSync(work, { recursive: true, force: true });
