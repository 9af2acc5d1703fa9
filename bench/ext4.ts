/**
 * The workload users run: ext4 on a loop device (--direct-io=on) on the mount, against the bundled
 * server in this process (so every client's requests are counted alike), and against Ceph RGW too
 * when S3_RGW_URL/S3_RGW_ACCESS_KEY/S3_RGW_SECRET_KEY are set (scripts/rgw.sh). For each tree
 * (--tree=synthetic|real|both, see ext4-trees.ts), a row of its own on a fresh bucket and ext4;
 * per row and phase: the time, the PUT/GET/DELETE requests (the bundled server's count), and the
 * CPU-seconds of the mount process (its own rusage: it runs in the foreground as our child) and of
 * the server (for RGW: its radosgw, OSD and monitor processes):
 *   copy    the tree, cp -a, then sync, then umount of ext4, the loop device and the mount, until
 *           the process has exited (each step's seconds are printed with the round, and for the
 *           sync the CPU-seconds the machine left idle: the kernel sends nothing while a flush
 *           waits for the uploads);
 *   cold    a fresh mount, the tree read back with tar;
 *   fio     4 KiB random read/write, 4 jobs, O_DIRECT, 10 s, on a file inside the ext4 (in the
 *           last tree's row only: it does not depend on the tree).
 * Rows take turns, --runs=N rounds (3); medians and ranges. Rows: ours (dist/s3backer), Debian's
 * s3backer (/usr/bin/s3backer) when installed, and upstream's when UPSTREAM_S3BACKER=/path/to/it.
 * Extra flags for ours: OURS_FLAGS="--minWriteDelay=0 ...".
 *
 *   bun bench/ext4.ts [--runs=N] [--tree=synthetic|real|both] [--no-debian]        (as root)
 */
import { spawn, type Subprocess } from "bun";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { AwsClient } from "aws4fetch";
import { join } from "node:path";
import { S3Server } from "../src/s3server/s3-server.ts";
import { describe, makeTrees, TREE_NAMES, type Tree, type TreeName } from "./ext4-trees.ts";
import { childCpu, fio, idleCpu, median, processCpu, removeBucket, run } from "./helpers.ts";

const flag = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const fail = (line: string): never => (console.error(line), process.exit(2));
const RUNS = Number(flag("runs") ?? 3);
if (!Number.isInteger(RUNS) || RUNS < 1) fail(`--runs=${flag("runs")}: expected a whole number of rounds, 1 or more`);
const TREE = flag("tree") ?? "both";
const TREES = TREE === "both" ? TREE_NAMES : TREE_NAMES.filter((name) => name === TREE);
if (TREES.length === 0) fail(`--tree=${TREE}: expected synthetic, real or both`);
const work = "/dev/shm/s3b-ext4bench";
const ACCESS = "EXT4BENCH";
const SECRET = "ext4-bench-secret";
const GEOMETRY = ["--blockSize=1M", "--size=4G"];

interface Client { name: string; binary: string; flags: string[] }
const clients: Client[] = [{ name: "ours", binary: join(import.meta.dir, "../dist/s3backer"), flags: ["--listBlocks", ...(process.env.OURS_FLAGS ?? "").split(" ").filter(Boolean)] }];
if (process.env.UPSTREAM_S3BACKER) clients.push({ name: "upstream", binary: process.env.UPSTREAM_S3BACKER, flags: ["--listBlocks"] });
if (existsSync("/usr/bin/s3backer") && !process.argv.includes("--no-debian")) clients.push({ name: "Debian 1.5.4", binary: "/usr/bin/s3backer", flags: ["--listBlocks"] });

/** A server the rows run against. */
interface Target {
  name: string; url: string; access: string; secret: string;
  createBucket(bucket: string): Promise<void>;
  removeBucket(bucket: string): Promise<void>;
  /** Requests served so far, where the server counts them. */
  requests(): { PUT: number; GET: number; DELETE: number } | undefined;
  /** CPU-seconds the server has used so far. */
  cpu(): number;
}

const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } } });
server.start();
const targets: Target[] = [{
  name: "bundled", url: server.url, access: ACCESS, secret: SECRET,
  createBucket: async (bucket) => server.objects.createBucket(bucket),
  removeBucket: async (bucket) => {
    for (const key of server.objects.keys(bucket)) server.objects.delete(bucket, key);
  },
  requests: () => ({ ...server.counters.requests }),
  cpu: () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  },
}];
if (process.env.S3_RGW_URL) {
  const url = process.env.S3_RGW_URL.replace(/\/?$/, "/");
  const access = process.env.S3_RGW_ACCESS_KEY!;
  const secret = process.env.S3_RGW_SECRET_KEY!;
  const aws = new AwsClient({ accessKeyId: access, secretAccessKey: secret, service: "s3", region: "us-east-1", retries: 0 });
  targets.push({
    name: "Ceph RGW", url, access, secret,
    createBucket: async (bucket) => void (await (await aws.fetch(`${url}${bucket}`, { method: "PUT" })).arrayBuffer()),
    removeBucket: (bucket) => removeBucket(aws, url, bucket),
    requests: () => undefined,
    cpu: () => cephCpu(),
  });
}

/** CPU-seconds of the Ceph processes serving RGW (radosgw, OSDs, monitors). */
function cephCpu(): number {
  let seconds = 0;
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const p = processCpu(Number(pid));
      if (/^(radosgw|ceph-osd|ceph-mon)$/.test(p.name)) seconds += p.seconds;
    } catch {
      // gone meanwhile
    }
  }
  return seconds;
}

interface Phase { seconds: number; puts: number; gets: number; deletes: number; mountCpu: number; serverCpu: number; steps?: string }

/** Starts a mount in the foreground as our child; resolves once mounted. */
async function startMount(t: Target, c: Client, bucket: string, mnt: string) {
  const creds = [`--baseURL=${t.url}`, `--accessId=${t.access}`, `--accessKey=${t.secret}`];
  const proc = spawn([c.binary, "-f", ...creds, ...c.flags, ...GEOMETRY, bucket, mnt], { stdout: "ignore", stderr: "pipe" });
  const until = Date.now() + 60_000;
  while (!readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === mnt)) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`${c.name} did not mount: ${await new Response(proc.stderr).text()}`);
    await Bun.sleep(20);
  }
  return proc;
}

async function phase(t: Target, body: () => Promise<void>, proc: Subprocess, procCpuBefore: number): Promise<Phase> {
  const r0 = t.requests();
  const s0 = t.cpu();
  const started = performance.now();
  await body();
  const seconds = (performance.now() - started) / 1000;
  const r = t.requests();
  const count = (k: "PUT" | "GET" | "DELETE") => (r && r0 ? r[k] - r0[k] : NaN);
  return { seconds, puts: count("PUT"), gets: count("GET"), deletes: count("DELETE"), mountCpu: childCpu(proc) - procCpuBefore, serverCpu: t.cpu() - s0 };
}

/** One tree on a fresh bucket and ext4: copy until exited, cold tar after a fresh mount, and fio if asked. */
async function row(t: Target, c: Client, tree: Tree, round: number, withFio: boolean): Promise<Record<string, Phase>> {
  const bucket = `ext4-${c.name.replace(/[^a-z0-9]/gi, "").toLowerCase()}-${tree.name}-${round}-${Date.now()}`;
  await t.createBucket(bucket);
  const mnt = join(work, "mnt");
  const fs = join(work, "fs");
  mkdirSync(mnt, { recursive: true });
  mkdirSync(fs, { recursive: true });
  const phases: Record<string, Phase> = {};
  let proc = await startMount(t, c, bucket, mnt);
  let loop = (await run(["losetup", "-f", "--show", "--direct-io=on", join(mnt, "file")])).trim();
  await run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", loop]);
  await run(["mount", loop, fs]);
  let before = childCpu(proc);
  const steps: string[] = [];
  const step = async (name: string, body: () => Promise<unknown>, showIdle = false) => {
    const started = performance.now();
    const idle = idleCpu();
    await body();
    steps.push(`${name} ${((performance.now() - started) / 1000).toFixed(1)}${showIdle ? ` (idle ${(idleCpu() - idle).toFixed(1)} CPU-s)` : ""}`);
  };
  phases.copy = await phase(t, async () => {
    await step("cp", () => run(["cp", "-a", `${tree.path}/.`, fs]));
    await step("sync", () => run(["sync"]), true);
    await step("umount ext4", () => run(["umount", fs]));
    await step("exit", async () => {
      await run(["losetup", "-d", loop]);
      await run(["umount", mnt]);
      await proc.exited;
    });
  }, proc, before);
  phases.copy.steps = steps.join(", ");

  proc = await startMount(t, c, bucket, mnt);
  loop = (await run(["losetup", "-f", "--show", "--direct-io=on", join(mnt, "file")])).trim();
  await run(["mount", loop, fs]);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
  before = childCpu(proc);
  phases.cold = await phase(t, async () => void (await run(["sh", "-c", `tar -C ${fs} -cf - . | wc -c`])), proc, before);
  if (withFio) {
    before = childCpu(proc);
    phases.fio = await phase(t, async () => {
      const job = await fio(["--name=r", `--filename=${join(fs, "fio.bin")}`, "--rw=randrw", "--bs=4k", "--numjobs=4", "--size=64M",
        "--direct=1", "--ioengine=psync", "--time_based", "--runtime=10"]);
      iops.push([`${t.name}\0${c.name}`, Math.round(job.read.iops + job.write.iops)]);
    }, proc, before);
  }
  await run(["umount", fs]);
  await run(["losetup", "-d", loop]);
  await run(["umount", mnt]);
  await proc.exited;
  await t.removeBucket(bucket);
  return phases;
}

const iops: [string, number][] = [];
rmSync(work, { recursive: true, force: true });
const trees = await makeTrees(work, TREES);
console.log(`${trees.map(describe).join("\n")}\n${RUNS} round${RUNS === 1 ? "" : "s"}, rows in turns; servers: ${targets.map((t) => t.name).join(", ")} (bundled: in this process)\n`);
const results = new Map<string, Record<string, Phase>[]>();
const requests = (p: Phase) => (Number.isNaN(p.puts) ? "" : `, ${p.puts} PUT ${p.gets} GET ${p.deletes} DELETE`);
for (let round = 0; round < RUNS; round++) {
  for (const t of targets) {
    for (const tree of trees) {
      // Each round starts at another row: the first row after a pause is often the slowest.
      for (let i = 0; i < clients.length; i++) {
        const c = clients[(i + round) % clients.length]!;
        const phases = await row(t, c, tree, round, tree === trees.at(-1));
        const key = `${t.name}\0${tree.name}\0${c.name}`;
        results.set(key, [...(results.get(key) ?? []), phases]);
        console.log(`round ${round + 1} ${t.name} ${tree.name} ${c.name}: ${Object.entries(phases).map(([k, p]) => `${k} ${p.seconds.toFixed(1)} s${p.steps ? ` [${p.steps}]` : ""} (mount ${p.mountCpu.toFixed(1)} CPU-s${requests(p)})`).join("; ")}`);
      }
    }
  }
}

const fmt = (xs: number[], digits = 1) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;
console.log("\n| server | tree | row | copy until exited (s) | mount CPU-s, per GiB | server CPU-s/GiB | PUT / GET / DELETE | cold tar (s) | mount CPU-s, per GiB | GET / PUT | fio IOPS |");
console.log("|---|---|---|---|---|---|---|---|---|---|---|");
for (const [key, rs] of results) {
  const [target, treeName, name] = key.split("\0") as [string, TreeName, string];
  const GiB = trees.find((tree) => tree.name === treeName)!.shape.bytes / 2 ** 30;
  const col = (k: string, f: (p: Phase) => number) => rs.map((r) => f(r[k]!));
  const cpu = (k: string) => `${fmt(col(k, (p) => p.mountCpu))}, ${(median(col(k, (p) => p.mountCpu)) / GiB).toFixed(2)}`;
  const counts = (k: string, of: ("puts" | "gets" | "deletes")[]) => (Number.isNaN(rs[0]![k]!.puts) ? "-" : of.map((n) => median(col(k, (p) => p[n]))).join(" / "));
  const fioOf = rs.some((r) => r.fio) ? fmt(iops.filter(([n]) => n === `${target}\0${name}`).map(([, v]) => v), 0) : "-";
  console.log(`| ${target} | ${treeName} | ${name} | ${fmt(col("copy", (p) => p.seconds))} | ${cpu("copy")} | ${fmt(col("copy", (p) => p.serverCpu / GiB), 2)} | ` +
    `${counts("copy", ["puts", "gets", "deletes"])} | ${fmt(col("cold", (p) => p.seconds))} | ${cpu("cold")} | ${counts("cold", ["gets", "puts"])} | ${fioOf} |`);
}
await server.stop();
rmSync(work, { recursive: true, force: true });
