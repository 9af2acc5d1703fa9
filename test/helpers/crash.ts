/**
 * Crash consistency of a filesystem on the disk, shared by test/mount/crash.test.ts (a few rounds)
 * and bench/crash-soak.ts (as many as asked): ext4 on a loop device on the mounted file, served by
 * a real S3 server through the fault proxy. Each round mounts (after the first, taking over the
 * disk a kill left, and recovering a cache file's unsaved blocks), replays the journal, checks
 * every file the workload (crash-workload.py) recorded as fsynced, checks the filesystem with
 * e2fsck, lets the workload loose with faults injected, and kills s3backer with -9 at a random
 * moment.
 *
 * With a cache file, the blocks it holds unsaved at each kill are read from a copy of it, and
 * after the recovery mount the server must hold exactly those bytes: what was recovered is
 * compared, not counted from a log line.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { CacheFile } from "../../src/store/block-cache/cache-file.ts";
import { hex8 } from "../../src/object/block-names.ts";
import { isMounted, killHard, mountWith, runAsync, type Disk } from "./disk.ts";
import { seededRandom } from "./data.ts";
import { FaultProxy, type FaultName, type ProxyFaults } from "./fault-proxy.ts";
import { freshBucket, peerArgs, rawClient, type Peer } from "./s3.ts";

const WORKLOAD = join(import.meta.dir, "crash-workload.py");
export const SIZE = 128 << 20;
export const BLOCK_SIZE = 4096; // the default
const BLOCK_KEY = /^[0-9a-f]{8}$/;

export interface CrashSetup {
  peer: Peer;
  /** With --blockCacheFile (and --blockCacheRecoverDirtyBlocks after each kill). */
  cacheFile: boolean;
  /** Faults through the proxy while the workload runs (and a short outage now and then). */
  faults: boolean;
  rounds: number;
  seed: number;
  dir: string;
  /** The kill comes this long (ms, a range) after the workload starts. */
  killAfterMs?: [number, number];
  log?: (line: string) => void;
}

export interface RoundReport {
  round: number;
  killAfterMs: number;
  /** Files whose durable state the journal records, checked after the kill. */
  checked: number;
  /** Unsaved blocks in the cache file at the kill, and how many of them the server did not hold yet. */
  unsaved: number;
  unsavedNew: number;
  outage: string;
}

export interface CrashReport {
  rounds: RoundReport[];
  /** Everything that went wrong: lost or wrong files, e2fsck errors, recovered blocks not stored. */
  problems: string[];
  fired: Record<FaultName, number>;
}

/** The faults while the workload runs: rare enough that every request succeeds within the retry budget. */
const WORKLOAD_FAULTS: Partial<ProxyFaults> = {
  truncate: 0.03, wrongLength: 0.03, reset: 0.02, status503: 0.03, delay: 0.03, delayMs: [50, 1000], swap: 0.05, keyPattern: BLOCK_KEY,
};
/**
 * While the filesystem is recovered and checked (thousands of reads, mostly one after another):
 * fewer, and no delays, whose cost would add up.
 */
const CHECK_FAULTS: Partial<ProxyFaults> = {
  truncate: 0.01, wrongLength: 0.01, reset: 0.005, status503: 0.005, delay: 0, swap: 0.02, keyPattern: BLOCK_KEY,
};

export async function crashRun(s: CrashSetup): Promise<CrashReport> {
  const log = s.log ?? (() => {});
  const random = seededRandom(s.seed);
  const [killLo, killHi] = s.killAfterMs ?? [1500, 4000];
  const proxy = await FaultProxy.start({ upstream: s.peer.url, credentials: { accessKey: s.peer.accessKey, secretKey: s.peer.secretKey }, random: seededRandom(s.seed + 1) });
  const bucket = await freshBucket(s.peer, "crash");
  const cache = join(s.dir, "cache");
  const flags = [...peerArgs({ ...s.peer, url: proxy.url }), `--size=${SIZE}`, ...(s.cacheFile ? [`--blockCacheFile=${cache}`, "--blockCacheRecoverDirtyBlocks"] : [])];
  const journal = join(s.dir, "journal");
  const fs = join(s.dir, "ext4");
  mkdirSync(fs, { recursive: true });
  const report: CrashReport = { rounds: [], problems: [], fired: proxy.fired };
  // Faults all along: the workload's writes, and the reads of the recovery, the replay and e2fsck.
  if (s.faults) proxy.set(CHECK_FAULTS);
  let disk: Disk | undefined;
  let loop: string | undefined;
  let workload: ReturnType<typeof Bun.spawn> | undefined;
  let unsaved = new Map<number, Uint8Array | null>();
  try {
    for (let round = 0; ; round++) {
      disk = await mountWith([...flags, ...(round > 0 ? ["--force"] : []), bucket], join(s.dir, `r${round}`), true);
      if (unsaved.size > 0) report.problems.push(...(await recoveredStored(s.peer, bucket, disk, unsaved)).map((p) => `round ${round}: ${p}`));
      loop = (await must(["losetup", "--direct-io=on", "-f", "--show", disk.file])).trim();
      if (round === 0) await must(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard", loop]);
      await must(["mount", "-t", "ext4", loop, fs]); // replays the journal
      const checked = round === 0 ? [] : await checkFiles(fs, journal);
      report.problems.push(...checked.filter((c) => c.problem).map((c) => `round ${round}: ${c.problem}`));
      await must(["umount", fs]);
      const fsck = await runAsync(["e2fsck", "-fn", loop]);
      if (fsck.code !== 0) report.problems.push(`round ${round}: e2fsck -fn exited ${fsck.code}: ${(fsck.stdout + fsck.stderr).slice(0, 2000)}`);
      if (round > 0) report.rounds[round - 1]!.checked = checked.length;
      if (round === s.rounds) {
        await must(["losetup", "-d", loop]);
        loop = undefined;
        break;
      }

      await must(["mount", "-t", "ext4", loop, fs]);
      workload = Bun.spawn(["python3", WORKLOAD, fs, journal, String(s.seed * 1000 + round)], { stdout: "ignore", stderr: "pipe" });
      const killAfterMs = Math.round(killLo + random() * (killHi - killLo));
      let outage = "";
      if (s.faults) {
        proxy.set(WORKLOAD_FAULTS);
        if (random() < 0.5) {
          const kind = random() < 0.5 ? "blackhole" : "refuse";
          const at = Math.round(random() * killAfterMs);
          const ms = Math.round(500 + random() * 2000);
          outage = `${kind} ${ms} ms at ${at} ms`;
          setTimeout(() => void proxy.during(ms, { outage: kind }), at);
        }
      }
      await Bun.sleep(killAfterMs);
      if (workload.exitCode !== null) report.problems.push(`round ${round}: the workload ended before the kill: ${await new Response(workload.stderr as ReadableStream).text()}`);
      await killHard(disk.pid);
      workload.kill("SIGKILL");
      await workload.exited;
      if (s.faults) proxy.set({ ...CHECK_FAULTS, outage: "none" });
      // What a kill leaves: the filesystem and the loop device on a dead mount.
      await runAsync(["umount", "-l", fs]);
      await runAsync(["losetup", "-d", loop]);
      loop = undefined;
      await runAsync(["umount", "-l", disk.mnt]);
      unsaved = s.cacheFile ? await unsavedBlocks(cache, join(s.dir, "cache-copy")) : new Map();
      const unsavedNew = await differFromServer(s.peer, bucket, unsaved);
      report.rounds.push({ round, killAfterMs, checked: 0, unsaved: unsaved.size, unsavedNew, outage });
      log(`round ${round}: ${checked.length} files checked, e2fsck ${fsck.code === 0 ? "clean" : "NOT clean"}; killed after ${killAfterMs} ms${outage ? ` (outage: ${outage})` : ""}${s.cacheFile ? `; ${unsaved.size} blocks unsaved in the cache file, ${unsavedNew} of them not on the server` : ""}`);
    }
    log(`after the last kill: ${report.rounds.at(-1)?.checked ?? 0} files checked`);
    await disk.unmount();
  } finally {
    if (workload && workload.exitCode === null) {
      workload.kill("SIGKILL");
      await workload.exited;
    }
    if (isMounted(fs)) await runAsync(["umount", "-l", fs]);
    if (loop) await runAsync(["losetup", "-d", loop]);
    if (disk && existsSync(`/proc/${disk.pid}`)) await killHard(disk.pid);
    if (disk && isMounted(disk.mnt)) await runAsync(["umount", "-l", disk.mnt]);
    await proxy.stop();
    await dropBucket(s.peer, bucket);
  }
  return report;
}

async function must(cmd: string[]): Promise<string> {
  const r = await runAsync(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

interface Expected {
  /** SHA-256 hex of the versions the file may hold; null: it may be absent. */
  allowed: Set<string | null>;
  /** A file whose first version was being written: it may hold anything. */
  any: boolean;
}

/** Every file the journal names, against what it may hold after the crash. */
async function checkFiles(fs: string, journal: string): Promise<{ name: string; problem?: string }[]> {
  const expected = new Map<string, Expected>();
  const lines = existsSync(journal) ? readFileSync(journal, "utf8").split("\n").filter(Boolean) : [];
  for (const line of lines) {
    const [what, name, digest] = line.split(" ") as [string, string, string | undefined];
    const e = expected.get(name);
    if (what === "begin") {
      if (e) e.allowed.add(digest!);
      else expected.set(name, { allowed: new Set([digest!]), any: true });
    } else if (what === "done") expected.set(name, { allowed: new Set([digest!]), any: false });
    else if (what === "unlink") e?.allowed.add(null);
    else if (what === "gone") expected.set(name, { allowed: new Set([null]), any: false });
  }
  // Hashed by a child: reading the disk from this process could wait on a server it runs.
  const script = "import hashlib, json, os, sys\nd = sys.argv[1]\nout = {}\nfor n in sys.argv[2:]:\n    p = os.path.join(d, n)\n    out[n] = hashlib.sha256(open(p, 'rb').read()).hexdigest() if os.path.exists(p) else None\nprint(json.dumps(out))";
  const names = [...expected.keys()];
  const found = JSON.parse(await must(["python3", "-c", script, fs, ...names])) as Record<string, string | null>;
  return names.map((name) => {
    const e = expected.get(name)!;
    const got = found[name] ?? null;
    if (e.any || e.allowed.has(got)) return { name };
    return { name, problem: `${name}: ${got === null ? "missing" : `holds ${got.slice(0, 12)}`}, fsynced as ${[...e.allowed].map((d) => (d === null ? "deleted" : d.slice(0, 12))).join(" or ")}` };
  });
}

/** The blocks a cache file holds unsaved (null: the zero block), read from a copy of it. */
export async function unsavedBlocks(cache: string, copy: string): Promise<Map<number, Uint8Array | null>> {
  const out = new Map<number, Uint8Array | null>();
  if (!existsSync(cache)) return out;
  copyFileSync(cache, copy);
  // As many slots as blocks: the copy is rewritten with that count, keeping every block it holds
  // (a torn slot is dropped then: it is no version of anything).
  const { file, blocks } = CacheFile.open(copy, BLOCK_SIZE, SIZE / BLOCK_SIZE, SIZE / BLOCK_SIZE);
  try {
    for (const b of blocks.filter((b) => b.dirty)) {
      const bytes = b.zero ? null : new Uint8Array(BLOCK_SIZE);
      if (bytes && !(await file.readSlot(b.slot, b.crc, bytes))) throw new Error(`cache file copy: block ${b.block} fails its CRC`);
      out.set(b.block, bytes);
    }
  } finally {
    file.close();
    rmSync(copy, { force: true });
  }
  return out;
}

/** A block as the server holds it (zeros when there is no object). */
async function stored(peer: Peer, bucket: string, block: number): Promise<Uint8Array> {
  const r = await rawClient(peer)("GET", `${bucket}/${hex8(block)}`);
  if (r.status === 404) return new Uint8Array(BLOCK_SIZE);
  if (r.status !== 200) throw new Error(`GET block ${block}: HTTP ${r.status}`);
  return r.body;
}

const same = (a: Uint8Array, b: Uint8Array | null) => (b === null ? a.every((x) => x === 0) : Buffer.compare(a, b) === 0);

export async function differFromServer(peer: Peer, bucket: string, blocks: Map<number, Uint8Array | null>): Promise<number> {
  let n = 0;
  for (const [block, data] of blocks) if (!same(await stored(peer, bucket, block), data)) n++;
  return n;
}

/** After a recovery mount: once it has flushed, the server holds every recovered block's bytes. */
export async function recoveredStored(peer: Peer, bucket: string, disk: Disk, blocks: Map<number, Uint8Array | null>): Promise<string[]> {
  await must(["python3", "-c", "import os, sys; os.fsync(os.open(sys.argv[1], os.O_RDWR))", disk.file]);
  const wrong: string[] = [];
  for (const [block, data] of blocks) if (!same(await stored(peer, bucket, block), data)) wrong.push(`block ${block} was unsaved in the cache file, and after recovery the server does not hold its bytes`);
  return wrong;
}

/** Deletes a bucket and its objects (a real server keeps them otherwise). */
export async function dropBucket(peer: Peer, bucket: string): Promise<void> {
  const s3 = rawClient(peer);
  for (;;) {
    const xml = new TextDecoder().decode((await s3("GET", `${bucket}?list-type=2&max-keys=1000`)).body);
    const keys = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!);
    if (keys.length === 0) break;
    for (let i = 0; i < keys.length; i += 32) await Promise.all(keys.slice(i, i + 32).map((k) => s3("DELETE", `${bucket}/${encodeURIComponent(k)}`)));
  }
  await s3("DELETE", bucket);
}
