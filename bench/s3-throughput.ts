/**
 * Through the mount against real S3 servers, 1 MiB blocks: dd write (with fsync) and cold read of
 * SIZE MiB, fio 4 KiB random read/write IOPS, PUT and GET requests per GiB written and read, and the
 * s3backer process's peak RSS and CPU-seconds per GiB written (until it has exited after umount)
 * and read (each mount runs in the foreground as our child: see measured-mount.ts). Compared with a plain
 * parallel S3 client doing the same transfers, hashing nothing (the limit) and checking MD5s as the
 * mount does, with Debian's s3backer on the same server, and with upstream's when
 * UPSTREAM_S3BACKER=/path/to/s3backer (the peers).
 *
 *   bun bench/s3-throughput.ts [SIZE_MiB] [--runs=N] [--no-debian] [--cache=BLOCKS]
 *       bundled server (its own process), and Ceph RGW too when S3_RGW_URL/S3_RGW_ACCESS_KEY/S3_RGW_SECRET_KEY
 *       are set. Every row runs N times (3), the rows taking turns (each run starting at another
 *       row), so that a slow minute of the machine or a row's place hits them all alike; each result
 *       is printed as it comes, then a table of medians, ranges and the share of the plain client.
 *       --cache=BLOCKS gives every mount --blockCacheSize=BLOCKS: with fewer blocks than SIZE, the
 *       transfers run past a full cache, as on any disk bigger than its cache.
 * Run as root, by hand. Prints a table.
 */
import { AwsClient } from "aws4fetch";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bundledServer, childCpu, ddRate, fio, removeBucket, run } from "./helpers.ts";
import { describeBuild, freshPageMicros, implausible, startMount } from "./measured-mount.ts";

const MIB = Number(process.argv.slice(2).find((a) => !a.startsWith("--")) ?? 1024);
const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
// The plain client runs at the mount's concurrency: --blockCacheThreads (20) writes in flight, and
// for a sequential reader the block being read plus --readAhead (4) blocks ahead.
const WRITE_CONCURRENCY = 20;
const READ_CONCURRENCY = 5;
/** The row every other is measured against: the plain client hashing nothing. */
const PLAIN = "plain client, no hashing";
const CACHE = /^--cache=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--cache=")) ?? "")?.[1];
const cacheFlags = CACHE === undefined ? [] : [`--blockCacheSize=${CACHE}`];
const OURS = join(import.meta.dir, "../dist/s3backer");
const work = "/dev/shm/s3b-s3bench";

interface Peer { name: string; url: string; access: string; secret: string }
interface Row {
  peer: string; client: string; write: number; read: number; iops: number | string; putsPerGiB: number | string; getsPerGiB: number | string; rssMiB: number | string;
  writeCpu?: number; readCpu?: number;
}

async function randomIops(file: string): Promise<number> {
  const job = await fio(["--name=r", `--filename=${file}`, "--rw=randrw", "--bs=4k", "--numjobs=4", "--size=64M", "--offset_increment=64M",
    "--direct=1", "--ioengine=psync", "--time_based", "--runtime=10"]);
  return Math.round(job.read.iops + job.write.iops);
}

const peakRssMiB = (pid: number) => Math.round(Number(/VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) / 1024);

function statCount(text: string, name: string): number {
  return Number(new RegExp(`^${name}\\s+(\\d+)`, "m").exec(text)?.[1] ?? NaN);
}

/**
 * The plain client runs as a process of its own (bench/plain-client.ts): its gigabyte is gone with
 * it before the next row (held in this process, it slowed the server's kernel work in the rows after).
 */
async function plainClient(peer: Peer, bucket: string, source: string, hash: "none" | "md5"): Promise<Row> {
  const out = await run([process.execPath, join(import.meta.dir, "plain-client.ts"), peer.url, bucket, "plain/", source, String(WRITE_CONCURRENCY), String(READ_CONCURRENCY), hash],
    { ...(process.env as Record<string, string>), AWS_ACCESS_KEY_ID: peer.access, AWS_SECRET_ACCESS_KEY: peer.secret });
  const [write, read] = out.trim().split(/\s+/).map(Number) as [number, number];
  const client = `${hash === "none" ? PLAIN : "plain client, MD5s checked"}, ${WRITE_CONCURRENCY}/${READ_CONCURRENCY} in flight`;
  return { peer: peer.name, client, write, read, iops: "-", putsPerGiB: 1024, getsPerGiB: 1024, rssMiB: "-" };
}

const UPSTREAM = process.env.UPSTREAM_S3BACKER;
const PEERS = { debian: { binary: "/usr/bin/s3backer", name: "Debian s3backer 1.5.4" }, upstream: { binary: UPSTREAM ?? "", name: "upstream s3backer" } };

async function throughMount(peer: Peer, bucket: string, which: "ours" | "debian" | "upstream", source: string, extra: string[] = []): Promise<Row> {
  const mnt = join(work, `mnt-${which}${extra.length}`);
  mkdirSync(mnt, { recursive: true });
  const creds = [`--baseURL=${peer.url}`, `--accessId=${peer.access}`, `--accessKey=${peer.secret}`];
  const mount = (fresh: boolean) => which === "ours"
    ? startMount(OURS, [...creds, ...cacheFlags, ...extra, ...(fresh ? ["--blockSize=1M", `--size=${MIB}M`] : []), `${bucket}/${which}${extra.length}`, mnt], mnt)
    : startMount(PEERS[which].binary, [...creds, ...cacheFlags, `--prefix=${which}/`, "--blockSize=1M", `--size=${MIB}M`, bucket, mnt], mnt);
  const stats = () => readFileSync(join(mnt, "stats"), "utf8");
  // The write's CPU runs until the process has exited after umount: a program whose fsync returns
  // before every block is stored (upstream's does) still pays for the rest.
  let m = await mount(true);
  let cpu = childCpu(m.proc);
  const write = ddRate(await run(["dd", `if=${source}`, `of=${join(mnt, "file")}`, "bs=1M", "conv=notrunc,fsync"]), MIB);
  const s1 = stats();
  let rss = peakRssMiB(m.proc.pid);
  const puts = which === "ours" ? statCount(s1, "PUT requests") : statCount(s1, "http_puts");
  const writeCpu = (((await m.stop()) - cpu) * 1024) / MIB; // a fresh process for the cold read: nothing cached
  m = await mount(false);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
  cpu = childCpu(m.proc);
  const read = ddRate(await run(["dd", `if=${join(mnt, "file")}`, "of=/dev/null", "bs=1M"]), MIB);
  const readCpu = ((childCpu(m.proc) - cpu) * 1024) / MIB;
  const gets = which === "ours" ? statCount(stats(), "GET requests") : statCount(stats(), "http_gets");
  const iops = await randomIops(join(mnt, "file"));
  rss = Math.max(rss, peakRssMiB(m.proc.pid));
  await m.stop();
  for (const [what, figure] of [["write", writeCpu], ["read", readCpu]] as const) {
    const why = implausible(figure);
    if (why) console.warn(`WARNING ${which} ${what}: ${why}`);
  }
  const perGiB = (n: number) => Math.round((n * 1024) / MIB);
  return {
    peer: peer.name, client: which === "ours" ? `s3backer (this)${extra.length ? ", no guard" : ""}` : PEERS[which].name,
    write, read, iops, writeCpu, readCpu, putsPerGiB: Number.isNaN(puts) ? "?" : perGiB(puts), getsPerGiB: Number.isNaN(gets) ? "?" : perGiB(gets), rssMiB: rss,
  };
}

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
const sourceFile = join(work, "source.bin");
await run(["dd", "if=/dev/urandom", `of=${sourceFile}`, "bs=1M", `count=${MIB}`]);

/** A server to measure against: its URL, and how to let it go after a row. */
interface Server { url: string; stop(): Promise<void> }

// The bundled server runs as a user runs it: a process of its own, objects in memory, and a fresh
// one for each row (a server already holding the rows before it would slow the rows after).
async function startBundled(): Promise<Server> {
  const { url, stop } = await bundledServer(OURS, "BENCH", "bench-secret");
  return { url: url.replace(/\/?$/, "/"), stop };
}

const targets: { name: string; access: string; secret: string; open(): Promise<Server> }[] = [
  { name: "bundled server", access: "BENCH", secret: "bench-secret", open: startBundled },
];
if (process.env.S3_RGW_URL) {
  const url = process.env.S3_RGW_URL;
  targets.push({ name: "Ceph RGW", access: process.env.S3_RGW_ACCESS_KEY!, secret: process.env.S3_RGW_SECRET_KEY!, open: async () => ({ url, stop: async () => {} }) });
}
const kinds: ((peer: Peer, bucket: string) => Promise<Row>)[] = [
  (peer, bucket) => plainClient(peer, bucket, sourceFile, "none"),
  (peer, bucket) => plainClient(peer, bucket, sourceFile, "md5"),
  (peer, bucket) => throughMount(peer, bucket, "ours", sourceFile),
  (peer, bucket) => throughMount(peer, bucket, "ours", sourceFile, ["--md5CacheSize=0"]),
  ...(process.argv.includes("--no-debian") ? [] : [(peer: Peer, bucket: string) => throughMount(peer, bucket, "debian", sourceFile)]),
  ...(UPSTREAM ? [(peer: Peer, bucket: string) => throughMount(peer, bucket, "upstream", sourceFile)] : []),
];

for (const binary of [OURS, ...(process.argv.includes("--no-debian") ? [] : [PEERS.debian.binary]), ...(UPSTREAM ? [UPSTREAM] : [])]) console.log(describeBuild(binary));
const pageCost = [freshPageMicros()];
const rows: Row[] = [];
try {
  for (let run = 0; run < RUNS; run++) for (const target of targets) {
    // Each run starts the rows at another one: what a row's place costs (the first after the
    // plain client was often the slowest) falls on every row in turn.
    for (const kind of [...kinds.slice(run % kinds.length), ...kinds.slice(0, run % kinds.length)]) {
      const server = await target.open();
      const peer: Peer = { name: target.name, url: server.url, access: target.access, secret: target.secret };
      const bucket = `bench-${Date.now()}`;
      const aws = new AwsClient({ accessKeyId: peer.access, secretAccessKey: peer.secret, service: "s3", region: "us-east-1", retries: 0 });
      await (await aws.fetch(`${peer.url}${bucket}`, { method: "PUT" })).arrayBuffer();
      try {
        const row = await kind(peer, bucket);
        rows.push(row);
        console.error(`run ${run + 1}/${RUNS}  ${row.peer}, ${row.client}: write ${row.write.toFixed(0)}, cold read ${row.read.toFixed(0)} MB/s, fio ${row.iops}`);
      } finally {
        await removeBucket(aws, peer.url, bucket);
        await server.stop();
      }
    }
  }
} finally {
  // A row that failed midway leaves its mount behind.
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const mnt = line.split(" ")[1];
    if (mnt?.startsWith(work)) await run(["umount", "-l", mnt]).catch(() => {});
  }
  rmSync(work, { recursive: true, force: true });
}

pageCost.push(freshPageMicros());
console.log(`fresh memory's first touch: ${pageCost.map((c) => c.toFixed(2)).join(" -> ")} µs per 4 KiB page (start -> end); upstream takes fresh memory for each block, so its CPU per GiB moves with this`);
const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
/** "median (min-max)" of a row's runs, or the one value. */
const spread = (xs: number[]) => (xs.length === 1 ? xs[0]!.toFixed(0) : `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`);
const share = (x: number, of: number) => `${Math.round((100 * x) / of)}%`;
/** Each row's runs, in the order the rows first ran. */
const groups = new Map<string, Row[]>();
for (const r of rows) {
  const key = `${r.peer}\0${r.client}`;
  groups.set(key, [...(groups.get(key) ?? []), r]);
}
console.log(`\n${MIB} MiB through 1 MiB blocks${CACHE === undefined ? "" : `, --blockCacheSize=${CACHE}`}, ${RUNS} run(s) of each row; MB/s as median (min-max); fio: 4 KiB randrw, 4 jobs, O_DIRECT, 10 s`);
console.log("% of plain: the row's median against the plain client's (no hashing) on the same server\n");
const header = ["server", "client", "write", "% of plain", "CPU-s/GiB", "cold read", "% of plain", "CPU-s/GiB", "fio IOPS", "PUT/GiB", "GET/GiB", "peak RSS MiB"];
const table: string[][] = [];
for (const runs of groups.values()) {
  const r = runs[0]!;
  const plain = [...groups.values()].find((g) => g[0]!.peer === r.peer && g[0]!.client.startsWith(PLAIN))!;
  const isPlain = runs === plain;
  const writes = runs.map((x) => x.write);
  const reads = runs.map((x) => x.read);
  const numbers = (f: (x: Row) => number | string | undefined) => runs.map(f).filter((v): v is number => typeof v === "number");
  const cpu = (f: (x: Row) => number | undefined) => (numbers(f).length ? median(numbers(f)).toFixed(2) : "-");
  table.push([
    r.peer, r.client, spread(writes), isPlain ? "" : share(median(writes), median(plain.map((x) => x.write))), cpu((x) => x.writeCpu),
    spread(reads), isPlain ? "" : share(median(reads), median(plain.map((x) => x.read))), cpu((x) => x.readCpu),
    numbers((x) => x.iops).length ? spread(numbers((x) => x.iops)) : "-",
    String(r.putsPerGiB), String(r.getsPerGiB), numbers((x) => x.rssMiB).length ? String(Math.max(...numbers((x) => x.rssMiB))) : "-",
  ]);
}
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
for (const row of [header, ...table]) console.log(row.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  "));
