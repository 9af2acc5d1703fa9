/**
 * The workload users run: ext4 on a loop device (--direct-io=on) on the mount, against the bundled
 * server in this process (so every client's requests are counted alike). Per row and phase: the
 * time, the PUT/GET/DELETE requests, and the CPU-seconds of the mount process (its own rusage: it
 * runs in the foreground as our child) and of the server:
 *   copy    a tree of 9,349 small files and one 256 MiB file (~500 MB), cp -a, then sync, then
 *           umount of ext4, the loop device and the mount, until the process has exited (each
 *           step's seconds are printed with the round);
 *   cold    a fresh mount, the tree read back with tar;
 *   fio     4 KiB random read/write, 4 jobs, O_DIRECT, 10 s, on a file inside the ext4.
 * Rows take turns, --runs=N rounds (3); medians and ranges. Rows: ours (dist/s3backer), Debian's
 * s3backer (/usr/bin/s3backer) when installed, and upstream's when UPSTREAM_S3BACKER=/path/to/it.
 * Extra flags for ours: OURS_FLAGS="--minWriteDelay=0 ...".
 *
 *   bun bench/ext4.ts [--runs=N] [--no-debian]        (as root)
 */
import { spawn, type Subprocess } from "bun";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { S3Server } from "../src/s3server/s3-server.ts";
import { seededRandom } from "../test/helpers/data.ts";
import { run } from "./helpers.ts";

const RUNS = Number(/^--runs=(\d+)$/.exec(process.argv.find((a) => a.startsWith("--runs=")) ?? "")?.[1] ?? 3);
const work = "/dev/shm/s3b-ext4bench";
const tree = join(work, "tree");
const ACCESS = "EXT4BENCH";
const SECRET = "ext4-bench-secret";
const GEOMETRY = ["--blockSize=1M", "--size=4G"];

interface Client { name: string; binary: string; flags: string[] }
const clients: Client[] = [{ name: "ours", binary: join(import.meta.dir, "../dist/s3backer"), flags: ["--listBlocks", ...(process.env.OURS_FLAGS ?? "").split(" ").filter(Boolean)] }];
if (process.env.UPSTREAM_S3BACKER) clients.push({ name: "upstream", binary: process.env.UPSTREAM_S3BACKER, flags: ["--listBlocks"] });
if (existsSync("/usr/bin/s3backer") && !process.argv.includes("--no-debian")) clients.push({ name: "Debian 1.5.4", binary: "/usr/bin/s3backer", flags: ["--listBlocks"] });

/** The source tree: deterministic, on tmpfs, made once. */
async function makeTree(): Promise<number> {
  const random = seededRandom(1);
  let bytes = 0;
  for (let d = 0; d < 100; d++) mkdirSync(join(tree, `d${d}`), { recursive: true });
  for (let f = 0; f < 9349; f++) {
    const size = 1024 + Math.floor(random() * 48 * 1024);
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i += 4096) data[i] = Math.floor(random() * 256);
    writeFileSync(join(tree, `d${f % 100}`, `f${f}`), data);
    bytes += size;
  }
  await run(["dd", "if=/dev/urandom", `of=${join(tree, "big.bin")}`, "bs=1M", "count=256", "status=none"]);
  return bytes + 256 * 2 ** 20;
}

const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } } });
server.start();

const cpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

interface Phase { seconds: number; puts: number; gets: number; deletes: number; mountCpu: number; serverCpu: number; steps?: string }

/** Starts a mount in the foreground as our child; resolves once mounted. */
async function startMount(c: Client, bucket: string, mnt: string) {
  const creds = [`--baseURL=${server.url}`, `--accessId=${ACCESS}`, `--accessKey=${SECRET}`];
  const proc = spawn([c.binary, "-f", ...creds, ...c.flags, ...GEOMETRY, bucket, mnt], { stdout: "ignore", stderr: "pipe" });
  const until = Date.now() + 60_000;
  while (!readFileSync("/proc/self/mountinfo", "utf8").split("\n").some((l) => l.split(" ")[4] === mnt)) {
    if (proc.exitCode !== null || Date.now() > until) throw new Error(`${c.name} did not mount: ${await new Response(proc.stderr).text()}`);
    await Bun.sleep(20);
  }
  return proc;
}

async function phase(body: () => Promise<void>, proc: Subprocess, procCpuBefore: number): Promise<Phase> {
  const r0 = { ...server.counters.requests };
  const s0 = cpu();
  const started = performance.now();
  await body();
  const seconds = (performance.now() - started) / 1000;
  const r = server.counters.requests;
  return { seconds, puts: r.PUT - r0.PUT, gets: r.GET - r0.GET, deletes: r.DELETE - r0.DELETE, mountCpu: procCpu(proc) - procCpuBefore, serverCpu: cpu() - s0 };
}

/** CPU-seconds of a mount process: from /proc while it runs, from its rusage once it has exited. */
function procCpu(proc: Subprocess): number {
  if (proc.exitCode !== null) return Number(proc.resourceUsage()?.cpuTime.total ?? 0) / 1e6;
  const f = readFileSync(`/proc/${proc.pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

async function row(c: Client, round: number): Promise<Record<string, Phase>> {
  const bucket = `ext4-${c.name.replace(/[^a-z0-9]/gi, "").toLowerCase()}-${round}`;
  server.objects.createBucket(bucket);
  const mnt = join(work, "mnt");
  const fs = join(work, "fs");
  mkdirSync(mnt, { recursive: true });
  mkdirSync(fs, { recursive: true });
  const phases: Record<string, Phase> = {};
  let proc = await startMount(c, bucket, mnt);
  let loop = (await run(["losetup", "-f", "--show", "--direct-io=on", join(mnt, "file")])).trim();
  await run(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", loop]);
  await run(["mount", loop, fs]);
  let before = procCpu(proc);
  const steps: string[] = [];
  const step = async (name: string, body: () => Promise<unknown>) => {
    const started = performance.now();
    await body();
    steps.push(`${name} ${((performance.now() - started) / 1000).toFixed(1)}`);
  };
  phases.copy = await phase(async () => {
    await step("cp", () => run(["cp", "-a", `${tree}/.`, fs]));
    await step("sync", () => run(["sync"]));
    await step("umount ext4", () => run(["umount", fs]));
    await step("exit", async () => {
      await run(["losetup", "-d", loop]);
      await run(["umount", mnt]);
      await proc.exited;
    });
  }, proc, before);
  phases.copy.steps = steps.join(", ");

  proc = await startMount(c, bucket, mnt);
  loop = (await run(["losetup", "-f", "--show", "--direct-io=on", join(mnt, "file")])).trim();
  await run(["mount", loop, fs]);
  writeFileSync("/proc/sys/vm/drop_caches", "3");
  before = procCpu(proc);
  phases.cold = await phase(async () => void (await run(["sh", "-c", `tar -C ${fs} -cf - . | wc -c`])), proc, before);
  before = procCpu(proc);
  phases.fio = await phase(async () => {
    const out = await run(["fio", "--name=r", `--filename=${join(fs, "fio.bin")}`, "--rw=randrw", "--bs=4k", "--numjobs=4", "--size=64M",
      "--direct=1", "--ioengine=psync", "--time_based", "--runtime=10", "--group_reporting", "--output-format=json"]);
    const job = JSON.parse(out.slice(out.indexOf("{"))).jobs[0];
    iops.push([c.name, Math.round(job.read.iops + job.write.iops)]);
  }, proc, before);
  await run(["umount", fs]);
  await run(["losetup", "-d", loop]);
  await run(["umount", mnt]);
  await proc.exited;
  for (const key of server.objects.keys(bucket)) server.objects.delete(bucket, key);
  return phases;
}

const iops: [string, number][] = [];
rmSync(work, { recursive: true, force: true });
const treeBytes = await makeTree();
console.log(`tree: 9,350 files, ${(treeBytes / 1e6).toFixed(0)} MB; ${RUNS} rounds, rows in turns; bundled server in this process\n`);
const results = new Map<string, Record<string, Phase>[]>();
for (let round = 0; round < RUNS; round++) {
  // Each round starts at another row: the first row after a pause is often the slowest.
  for (let i = 0; i < clients.length; i++) {
    const c = clients[(i + round) % clients.length]!;
    const phases = await row(c, round);
    results.set(c.name, [...(results.get(c.name) ?? []), phases]);
    console.log(`round ${round + 1} ${c.name}: ${Object.entries(phases).map(([k, p]) => `${k} ${p.seconds.toFixed(1)} s${p.steps ? ` [${p.steps}]` : ""} (mount ${p.mountCpu.toFixed(1)} CPU-s, ${p.puts} PUT ${p.gets} GET ${p.deletes} DELETE)`).join("; ")}`);
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (xs: number[], digits = 1) => `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}-${Math.max(...xs).toFixed(digits)})`;
const GiB = treeBytes / 2 ** 30;
console.log("\n| row | copy until exited (s) | mount CPU-s/GiB copied | server CPU-s/GiB | cold tar (s) | mount CPU-s/GiB read | fio IOPS | PUT / GET / DELETE (copy) |");
console.log("|---|---|---|---|---|---|---|---|");
for (const c of clients) {
  const rs = results.get(c.name)!;
  const col = (k: string, f: (p: Phase) => number) => rs.map((r) => f(r[k]!));
  const fioOf = iops.filter(([n]) => n === c.name).map(([, v]) => v);
  console.log(`| ${c.name} | ${fmt(col("copy", (p) => p.seconds))} | ${fmt(col("copy", (p) => p.mountCpu / GiB), 2)} | ${fmt(col("copy", (p) => p.serverCpu / GiB), 2)} | ${fmt(col("cold", (p) => p.seconds))} | ${fmt(col("cold", (p) => p.mountCpu / GiB), 2)} | ${fmt(fioOf, 0)} | ${median(col("copy", (p) => p.puts))} / ${median(col("copy", (p) => p.gets))} / ${median(col("copy", (p) => p.deletes))} |`);
}
await server.stop();
rmSync(work, { recursive: true, force: true });
