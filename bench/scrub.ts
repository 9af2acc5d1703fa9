/**
 * `s3backer scrub` over a disk of SIZE MiB in 1 MiB blocks of random bytes, as each kind of disk
 * stores them (plain, deflate, --encrypt in the original's format, --encrypt --keyWrap), against
 * the bundled server (a process of its own) and Ceph RGW when S3_RGW_URL/S3_RGW_ACCESS_KEY/
 * S3_RGW_SECRET_KEY are set. Side by side, the other ways to read every block and check it: a cold
 * dd of the whole disk through our mount, Debian's s3backer 1.5.4 and upstream's (UPSTREAM_S3BACKER)
 * on the disks they can read, and a plain parallel S3 client checking MD5s (bench/plain-client.ts,
 * the limit). MB/s of the disk and CPU-seconds per GiB of the process doing the checking.
 *
 *   bun bench/scrub.ts [SIZE_MiB] [--runs=N] [--threads=N]
 *       Each row runs N times (3), the rows taking turns; medians and ranges at the end.
 * Run as root, by hand (after `bun build.ts`).
 */
import { AwsClient } from "aws4fetch";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "bun";
import { bundledServer, childCpu, processCpu, removeBucket, run, waitGone } from "./helpers.ts";

const MIB = Number(process.argv.slice(2).find((a) => !a.startsWith("--")) ?? 1024);
const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
const THREADS = /^--threads=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--threads=")) ?? "")?.[1];
const OURS = join(import.meta.dir, "../dist/s3backer");
const UPSTREAM = process.env.UPSTREAM_S3BACKER;
const work = "/dev/shm/s3b-scrubbench";
const password = join(work, "password");

interface Peer { name: string; url: string; access: string; secret: string }
interface Format { name: string; flags: string[]; /** The peers' mounts can read it. */ original: boolean }
interface Row { peer: string; format: string; client: string; mbs: number; cpuPerGiB: number }

const FORMATS: Format[] = [
  { name: "plain", flags: [], original: true },
  { name: "deflate", flags: ["--compress"], original: true },
  { name: "encrypted", flags: ["--encrypt", `--passwordFile=${password}`], original: true },
  { name: "key-wrapped", flags: ["--encrypt", "--keyWrap", `--passwordFile=${password}`], original: false },
];

const creds = (peer: Peer) => [`--baseURL=${peer.url}`, `--accessId=${peer.access}`, `--accessKey=${peer.secret}`];

/** Writes the random source through our mount under `prefix`, stored as `format` says. */
async function fill(peer: Peer, bucket: string, format: Format, source: string): Promise<void> {
  const mnt = join(work, "mnt-fill");
  mkdirSync(mnt, { recursive: true });
  await run([OURS, ...creds(peer), ...format.flags, "--blockSize=1M", `--size=${MIB}M`, `${bucket}/${format.name}`, mnt]);
  await run(["dd", `if=${source}`, `of=${join(mnt, "file")}`, "bs=1M", "conv=notrunc,fsync"]);
  await run(["umount", mnt]);
  await waitGone(mnt);
}

async function scrubRow(peer: Peer, bucket: string, format: Format): Promise<Row> {
  const started = performance.now();
  const child = spawn([OURS, "scrub", ...creds(peer), "--quiet", ...format.flags, ...(THREADS ? [`--scrub-threads=${THREADS}`] : []), `${bucket}/${format.name}`], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited]);
  if (code !== 0) throw new Error(`scrub exited ${code}: ${out}${err}`);
  const seconds = (performance.now() - started) / 1000;
  return { peer: peer.name, format: format.name, client: `s3backer scrub${THREADS ? `, ${THREADS} threads` : ""}`, mbs: (MIB * 2 ** 20) / seconds / 1e6, cpuPerGiB: (childCpu(child) * 1024) / MIB };
}

/** A cold dd of the whole disk through a mount: ours, Debian's or upstream's. */
async function mountRow(peer: Peer, bucket: string, format: Format, which: "ours" | "debian" | "upstream"): Promise<Row> {
  const mnt = join(work, `mnt-${which}`);
  mkdirSync(mnt, { recursive: true });
  const binary = which === "ours" ? OURS : which === "debian" ? "s3backer" : UPSTREAM!;
  await run([binary, ...creds(peer), ...format.flags, "--blockSize=1M", `--size=${MIB}M`, `--prefix=${format.name}/`, bucket, mnt]);
  const pid = Number((await run(["pgrep", "-n", "-f", `s3backer.* ${mnt}$`])).trim().split("\n")[0]);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
  const cpu = processCpu(pid).seconds;
  const started = performance.now();
  await run(["dd", `if=${join(mnt, "file")}`, "of=/dev/null", "bs=1M"]);
  const seconds = (performance.now() - started) / 1000;
  const used = processCpu(pid).seconds - cpu;
  await run(["umount", mnt]);
  await waitGone(mnt);
  const client = which === "ours" ? "s3backer mount, dd" : which === "debian" ? "Debian 1.5.4 mount, dd" : "upstream mount, dd";
  return { peer: peer.name, format: format.name, client, mbs: (MIB * 2 ** 20) / seconds / 1e6, cpuPerGiB: (used * 1024) / MIB };
}

/** The plain client's GETs with MD5s checked, over objects of its own (it PUTs them first). */
async function plainRow(peer: Peer, bucket: string, source: string): Promise<Row> {
  const p = spawn([process.execPath, join(import.meta.dir, "plain-client.ts"), peer.url, bucket, "plain-client/", source, "20", "16", "md5"], {
    stdout: "pipe", stderr: "inherit", env: { ...(process.env as Record<string, string>), AWS_ACCESS_KEY_ID: peer.access, AWS_SECRET_ACCESS_KEY: peer.secret },
  });
  const [out] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  const read = Number(out.trim().split(/\s+/)[1]);
  // Its CPU would count its PUTs too: not shown.
  return { peer: peer.name, format: "plain", client: "plain S3 client, 16 GETs in flight, MD5s checked", mbs: read, cpuPerGiB: Number.NaN };
}

rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });
writeFileSync(password, "bench password\n");
const source = join(work, "source.bin");
await run(["dd", "if=/dev/urandom", `of=${source}`, "bs=1M", `count=${MIB}`]);

async function bundled(): Promise<{ peer: Peer; stop(): Promise<void> }> {
  const { url, stop } = await bundledServer(OURS, "BENCH", "bench-secret");
  return { peer: { name: "bundled server", url: url.replace(/\/?$/, "/"), access: "BENCH", secret: "bench-secret" }, stop };
}

const servers = [bundled];
const rgw = process.env.S3_RGW_URL;
if (rgw) servers.push(async () => ({ peer: { name: "Ceph RGW", url: rgw, access: process.env.S3_RGW_ACCESS_KEY!, secret: process.env.S3_RGW_SECRET_KEY! }, stop: async () => {} }));

const rows: Row[] = [];
try {
  for (const open of servers) {
    const { peer, stop } = await open();
    const bucket = `bench-scrub-${Date.now()}`;
    const aws = new AwsClient({ accessKeyId: peer.access, secretAccessKey: peer.secret, service: "s3", region: "us-east-1", retries: 0 });
    await (await aws.fetch(`${peer.url}${bucket}`, { method: "PUT" })).arrayBuffer();
    try {
      for (const format of FORMATS) await fill(peer, bucket, format, source);
      const kinds: (() => Promise<Row>)[] = [() => plainRow(peer, bucket, source)];
      for (const format of FORMATS) {
        kinds.push(() => scrubRow(peer, bucket, format), () => mountRow(peer, bucket, format, "ours"));
        if (format.original) kinds.push(() => mountRow(peer, bucket, format, "debian"));
        if (format.original && UPSTREAM) kinds.push(() => mountRow(peer, bucket, format, "upstream"));
      }
      for (let r = 0; r < RUNS; r++) {
        for (const kind of [...kinds.slice(r % kinds.length), ...kinds.slice(0, r % kinds.length)]) {
          const row = await kind();
          rows.push(row);
          console.error(`run ${r + 1}/${RUNS}  ${row.peer}, ${row.format}, ${row.client}: ${row.mbs.toFixed(0)} MB/s, ${row.cpuPerGiB.toFixed(1)} CPU-s/GiB`);
        }
      }
    } finally {
      await removeBucket(aws, peer.url, bucket);
      await stop();
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1]! : (s[(s.length >> 1) - 1]! + s[s.length >> 1]!) / 2;
};
const spread = (xs: number[], digits: number) => (xs.some(Number.isNaN) ? "-" : xs.length === 1 ? xs[0]!.toFixed(digits) : `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`);
const groups = new Map<string, Row[]>();
for (const r of rows) groups.set(`${r.peer}\0${r.format}\0${r.client}`, [...(groups.get(`${r.peer}\0${r.format}\0${r.client}`) ?? []), r]);
console.log(`\n${MIB} MiB of random bytes in 1 MiB blocks, ${RUNS} run(s) of each row; median (min-max)\n`);
console.log("| server | disk | reader | MB/s | CPU-s/GiB |\n|---|---|---|---|---|");
for (const runs of groups.values()) {
  const r = runs[0]!;
  console.log(`| ${r.peer} | ${r.format} | ${r.client} | ${spread(runs.map((x) => x.mbs), 0)} | ${spread(runs.map((x) => x.cpuPerGiB), 1)} |`);
}
