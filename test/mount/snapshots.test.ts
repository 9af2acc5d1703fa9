/**
 * Snapshots of a live disk and resizes, through real mounts: a snapshot taken while fio writes and
 * verifies and a writer whose every write is known writes records (helpers/snapshot-writer.py);
 * kill -9 of the mount (or of the command) in the middle of a snapshot leaves the old
 * state or the new one, and no block ever reaches a layer after it was frozen; ext4 grown online
 * (losetup -c, resize2fs); an NBD client sees the new size at its next connection; an offline
 * shrink drops what lies past the end only with --force.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { spawn } from "bun";
import { S3Server } from "../../src/s3server/s3-server.ts";
import { MemoryStorage, type ServerObject } from "../../src/s3server/objects.ts";
import { BINARY, cleanupDisks, killHard, mountWith, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { ACCESS, SECRET, embeddedPeer, freshBucket, peerArgs } from "../helpers/s3.ts";
import { seededRandom } from "../helpers/data.ts";
import { objectsOf, s3backer, sh, Undo } from "../helpers/layers.ts";

/** Storage that logs every change, in the order the server makes them. */
class LoggedStorage extends MemoryStorage {
  readonly changes: string[] = [];
  override put(bucket: string, key: string, object: ServerObject) {
    this.changes.push(`${bucket}/${key}`);
    super.put(bucket, key, object);
  }
  override delete(bucket: string, key: string) {
    this.changes.push(`${bucket}/${key}`);
    super.delete(bucket, key);
  }
}

const storage = new LoggedStorage();
const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } }, objects: storage });
server.start();
const peer = embeddedPeer(server);
const undo = new Undo();
const dirs: string[] = [];
const children: { kill(): void; exitCode: number | null }[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill();
  await undo.run();
  await cleanupDisks();
  await cleanupNbd();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  server.reset();
}, 120_000);
afterAll(() => server.stop());

function workDir(tag: string): string {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

const CAP_SYS_RESOURCE = 24;
const hasCapability = (cap: number) => (BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(readFileSync("/proc/self/status", "utf8"))![1]}`) >> BigInt(cap)) & 1n;

const fioArgs = (file: string, name: string, extra: string[]) => [
  "fio", `--name=${name}`, `--filename=${file}`, "--ioengine=psync", "--direct=1", "--verify=crc32c", "--verify_fatal=1",
  "--do_verify=1", "--verify_state_save=0", "--randseed=4242", "--output-format=terse", ...extra,
];

const WRITER = join(import.meta.dir, "../helpers/snapshot-writer.py");

/** Follows the writer's "wrote/fsynced/mark/done SEQ" lines: the last of each kind seen so far. */
function follow(stdout: ReadableStream<Uint8Array>) {
  const seen: Record<string, number> = {};
  const done = (async () => {
    const decoder = new TextDecoder();
    let rest = "";
    for await (const chunk of stdout) {
      const lines = (rest + decoder.decode(chunk, { stream: true })).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        const [kind, seq] = line.split(" ");
        seen[kind!] = Number(seq);
      }
    }
  })();
  return { seen, done };
}

test("a snapshot taken while fio writes and verifies: the snapshot holds every write that returned before it began, none started after it returned; the live disk's verification holds", async () => {
  const seed = Number(process.env.SEED ?? Date.now() % 100000);
  console.log(`snapshot under load: writer seed ${seed}`);
  const bucket = await freshBucket(peer, "fiosnap");
  const dir = workDir("fiosnap");
  const disk = await mountWith([...peerArgs(peer), "--size=256M", "--blockSize=64k", `${bucket}/db`], join(dir, "db"), true);
  const before = ["--rw=write", "--bs=64k", "--offset=0", "--size=32M", "--end_fsync=1"];
  expect((await runAsync(fioArgs(disk.file, "before", before))).code).toBe(0);

  // While fio writes and verifies its own region, the writer writes 4 KiB records whose every
  // write is known (slot and sequence number) into 4 MiB at 128M, an fsync every 64 writes; none
  // from write 320 until the snapshot returned, so only the snapshot's flush stores those.
  const region = [String(128 << 20), "1024", String(seed)];
  const mark = join(dir, "snapshot-returned");
  const during = spawn(fioArgs(disk.file, "during", ["--rw=randwrite", "--bs=4k", "--offset=64M", "--size=24M", "--end_fsync=1"]), { stdout: "pipe", stderr: "pipe" });
  const writer = spawn(["python3", WRITER, "write", disk.file, ...region, "64", "320", mark, "200"], { stdout: "pipe", stderr: "pipe" });
  children.push(during, writer);
  const { seen, done } = follow(writer.stdout);
  await waitFor("the writer's first 400 writes", () => (seen.wrote ?? 0) >= 400 || writer.exitCode !== null);
  expect(during.exitCode).toBeNull(); // both still writing
  expect(writer.exitCode).toBeNull();
  // Every write that returned before the snapshot began must be in it: the mount stores its dirty
  // blocks first (fsynced ones were stored already). Writes started after it returned must not be.
  const began = { wrote: seen.wrote!, fsynced: seen.fsynced ?? 0 };
  const snap = await s3backer(peer, "snapshot", `${bucket}/db`, `${bucket}/db@mid`);
  await writeFile(mark, "");
  expect(snap.stderr).toMatch(/db@mid: snapshot taken; writes now go to db\/s3backer-layer-1\//);
  expect(snap.code).toBe(0);
  const code = await during.exited;
  expect(`${await new Response(during.stderr).text()} exit ${code} ${code ? await new Response(during.stdout).text() : ""}`).toBe(" exit 0 ");
  expect(`${await new Response(writer.stderr).text()}exit ${await writer.exited}`).toBe("exit 0");
  await done;
  const returned = seen.mark!;
  expect(returned).toBeGreaterThanOrEqual(began.wrote);

  // Written after the snapshot: only the live disk has it.
  await writeFile(join(dir, "after"), pattern(1 << 20, 9));
  await sh(["dd", `if=${join(dir, "after")}`, `of=${disk.file}`, "bs=1M", "seek=200", "conv=notrunc,fsync", "status=none"]);
  const ro = await mountWith([...peerArgs(peer), "--readOnly", `${bucket}/db@mid`], join(dir, "snap"), true);
  // A read job verifies each block's checksummed header: what the sequential job fsynced before.
  const verified = await runAsync(fioArgs(ro.file, "before", ["--rw=read", "--bs=64k", "--offset=0", "--size=32M", "--readonly"]));
  expect(`${verified.stderr} exit ${verified.code}`).toBe(" exit 0");
  const check = async (file: string, low: number, high: number, synced: number) => {
    const r = await runAsync(["python3", WRITER, "check", file, ...region, String(low), String(high), String(synced)]);
    expect(r.stderr).toBe("");
    return JSON.parse(r.stdout) as { records: number; zeros: number; newer: number; unsynced: number; bad: number; problems: string[] };
  };
  const inSnapshot = await check(ro.file, began.wrote, returned, began.fsynced);
  console.log(`writer at ${began.wrote} (fsynced ${began.fsynced}) when the snapshot began, ${returned} when it returned, ${seen.done} at the end; the snapshot: ${JSON.stringify(inSnapshot)}`);
  expect(inSnapshot.problems).toEqual([]);
  const after = Buffer.alloc(1 << 20);
  const fd = await import("node:fs/promises").then((f) => f.open(ro.file, "r"));
  await fd.read(after, 0, after.length, 200 << 20);
  await fd.close();
  expect(after.equals(Buffer.alloc(1 << 20))).toBe(true);
  await ro.unmount();
  expect((await runAsync(fioArgs(disk.file, "before", [...before, "--verify_only"]))).code).toBe(0);
  // The live disk holds every slot's last write.
  expect((await check(disk.file, seen.done!, seen.done!, seen.done!)).problems).toEqual([]);
  await disk.unmount();
  const info = await s3backer(peer, "info", `${bucket}/db`);
  expect(info.stdout).toMatch(/snapshots +mid \(/);
}, 300_000);

test("kill -9 in the middle of a snapshot (of the mount taking it, or of the command alone) leaves the old state or the new one; no block reaches a layer once frozen", async () => {
  const seed = Number(process.env.SEED ?? Date.now() % 100000);
  console.log(`kill -9 during snapshots: seed ${seed}`);
  const random = seededRandom(seed);
  const bucket = await freshBucket(peer, "snapkill");
  const dir = workDir("snapkill");
  server.setFaults({ latencyMs: [0, 8] }); // widens every window a kill may land in
  const outcomes: string[] = [];
  // The first round of each kind is not killed: it measures how long a snapshot takes, and the
  // kills of the next rounds land anywhere in that time (and a little after).
  const took: Record<string, number> = {};
  for (let round = 0; round < 9; round++) {
    const disk = `d${round}`;
    const mounted = round < 5;
    const kind = mounted ? "mount" : "command";
    const calibrating = took[kind] === undefined;
    let pid = 0;
    let writer: ReturnType<typeof spawn> | undefined;
    const d = await mountWith([...peerArgs(peer), "--size=64M", "--blockSize=16k", `${bucket}/${disk}`], join(dir, `r${round}`), true);
    if (mounted) {
      pid = d.pid;
      writer = spawn(["fio", "--name=w", "--thread", `--filename=${d.file}`, "--rw=randwrite", "--bs=16k", "--direct=1", "--time_based", "--runtime=20", "--size=64M", "--output-format=terse"], { stdout: "ignore", stderr: "ignore" });
      children.push(writer);
      await Bun.sleep(300);
    } else {
      await writeFile(d.file, pattern(1 << 20, round), { flag: "r+" });
      await d.unmount();
    }
    const start = storage.changes.length;
    const began = performance.now();
    const command = spawn([BINARY, "snapshot", ...peerArgs(peer), `${bucket}/${disk}`, `${bucket}/${disk}@s`], { stdout: "ignore", stderr: "pipe" });
    children.push(command);
    const delay = calibrating ? 0 : Math.floor(random() * 1.2 * took[kind]!);
    if (calibrating) {
      expect(await command.exited).toBe(0);
      took[kind] = performance.now() - began;
    } else {
      await Bun.sleep(delay);
      if (mounted) await killHard(pid);
      else command.kill("SIGKILL");
    }
    const said = (await command.exited) === 0;
    writer?.kill("SIGKILL");
    if (mounted && !calibrating) await runAsync(["umount", "-l", d.mnt]);
    if (mounted && calibrating) {
      await writer!.exited;
      await d.unmount();
    }

    const manifest = `${bucket}/${disk}/s3backer-layers`;
    const changes = storage.changes.slice(start);
    const commit = changes.indexOf(manifest);
    const stored = server.objects.get(bucket, `${disk}/s3backer-layers`);
    expect(commit >= 0).toBe(stored !== undefined); // the log and the bucket agree
    if (said) expect(stored).toBeDefined(); // a snapshot said taken was taken
    const frozen = new RegExp(`^${bucket}/${disk}/[0-9a-f]{8}$`);
    const late = commit < 0 ? [] : changes.slice(commit + 1).filter((k) => frozen.test(k));
    expect({ round, late }).toEqual({ round, late: [] });
    outcomes.push(calibrating ? `${kind}: a snapshot takes ${Math.round(took[kind]!)} ms` : `${kind} killed after ${delay} ms: ${stored ? "new state" : "old state"}`);

    // Either state mounts once the flag the kill left is cleared; the snapshot reads as frozen.
    await runAsync([BINARY, ...peerArgs(peer), "--reset-mounted-flag", `${bucket}/${disk}`]);
    const again = await mountWith([...peerArgs(peer), `${bucket}/${disk}`], join(dir, `a${round}`), true);
    await again.unmount();
    if (stored) {
      const blocks = async () => [...(await objectsOf(peer, bucket, `${disk}/`))].filter(([k]) => /\/[0-9a-f]{8}$/.test(k));
      const layer = await blocks();
      const snap = await mountWith([...peerArgs(peer), "--readOnly", `${bucket}/${disk}@s`], join(dir, `s${round}`), true);
      await snap.unmount();
      expect(await blocks()).toEqual(layer);
    }
  }
  console.log(outcomes.join("\n"));
}, 300_000);

test("ext4 grown online: s3backer resize, losetup -c, resize2fs, the new space written, then read back after a remount", async () => {
  const bucket = await freshBucket(peer, "grow");
  const dir = workDir("grow");
  // The kernel keeps the file's size for an hour: only the mount's notice of the resize renews it.
  let disk = await mountWith([...peerArgs(peer), "-o", "attr_timeout=3600", "--size=32M", `${bucket}/vol`], join(dir, "vol"), true);
  let dev = await undo.loop(disk.file);
  await sh(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", dev]);
  const fs = join(dir, "fs");
  await undo.mountExt4(dev, fs);
  await writeFile(join(fs, "first"), pattern(8 << 20, 1));
  expect((await stat(disk.file)).size).toBe(32 << 20);
  const r = await s3backer(peer, "resize", `${bucket}/vol`, "96M");
  expect(r.stderr.trim()).toBe(`s3backer: ${bucket}/vol grew from 32M to 96M`);
  expect((await stat(disk.file)).size).toBe(96 << 20);
  await sh(["losetup", "-c", dev]);
  expect((await sh(["blockdev", "--getsize64", dev])).trim()).toBe(String(96 << 20));
  const online = await runAsync(["resize2fs", dev]);
  if (online.code !== 0) {
    // ext4's online resize needs CAP_SYS_RESOURCE, which root may lack in a container: then the
    // filesystem is grown unmounted, on the same loop device over the same (grown) mounted file.
    expect(online.stderr).toMatch(/Permission denied to resize filesystem/);
    expect(hasCapability(CAP_SYS_RESOURCE)).toBe(0n);
    console.log("resize2fs: online resize refused (no CAP_SYS_RESOURCE here): grown with the filesystem unmounted, the disk still mounted");
    await sh(["umount", fs]);
    await runAsync(["e2fsck", "-fp", dev]);
    await sh(["resize2fs", dev]);
    await undo.mountExt4(dev, fs);
  }
  expect(Number((await sh(["df", "-B1", "--output=size", fs])).split("\n")[1])).toBeGreaterThan(80 << 20);
  await writeFile(join(fs, "second"), pattern(40 << 20, 2)); // more than the old disk had room for
  await sh(["umount", fs]);
  await sh(["losetup", "-d", dev]);
  await disk.unmount();

  disk = await mountWith([...peerArgs(peer), `${bucket}/vol`], join(dir, "again"), true);
  expect((await stat(disk.file)).size).toBe(96 << 20); // block 0 says so
  dev = await undo.loop(disk.file);
  expect((await runAsync(["e2fsck", "-fn", dev])).code).toBe(0);
  await undo.mountExt4(dev, fs);
  expect(new Uint8Array(await readFile(join(fs, "second")))).toEqual(pattern(40 << 20, 2));
  expect(new Uint8Array(await readFile(join(fs, "first")))).toEqual(pattern(8 << 20, 1));
  await sh(["umount", fs]);
  await sh(["losetup", "-d", dev]);
  await disk.unmount();
}, 300_000);

test("resize: an NBD client sees the new size at its next connection; a clone grows by its manifest; an offline shrink drops data only with --force", async () => {
  const bucket = await freshBucket(peer, "resize");
  const base = await serveNbd([...peerArgs(peer), "--size=1M", "--blockSize=64k"], { source: `${bucket}/base` });
  await runAsync(["qemu-io", "-f", "raw", "-c", "write -P 7 0 1M", base.qemu]);
  await base.stop();
  const clone = await serveNbd([...peerArgs(peer), `--base=${bucket}/base`], { source: `${bucket}/clone` });
  expect((await sh(["nbdinfo", "--size", clone.uri])).trim()).toBe(String(1 << 20));
  expect((await s3backer(peer, "resize", `${bucket}/clone`, "3M")).code).toBe(0);
  expect((await sh(["nbdinfo", "--size", clone.uri])).trim()).toBe(String(3 << 20));
  const io = await runAsync(["qemu-io", "-f", "raw", "-c", "read -P 7 0 1M", "-c", "read -P 0 1M 2M", "-c", "write -P 9 2M 64k", clone.qemu]);
  expect(io.stdout).not.toMatch(/fail/i);
  // Growing is allowed while mounted, shrinking is not.
  const shrink = await s3backer(peer, "resize", `${bucket}/clone`, "1M");
  expect(shrink.stderr.trim()).toMatch(/is mounted: it can grow now, but shrinking needs it unmounted$/);
  await clone.stop();
  const refused = await s3backer(peer, "resize", `${bucket}/clone`, "1M");
  expect(refused.stderr.trim()).toMatch(/holds data past 1M \(block 32, in clone\/\)/);
  const forced = await s3backer(peer, "resize", "--force", `${bucket}/clone`, "512k");
  expect(forced.stderr.trim()).toBe(`s3backer: ${bucket}/clone shrank from 3M to 512K`);
  await s3backer(peer, "resize", `${bucket}/clone`, "3M");
  // What lay past the end is gone for good: the clone's block deleted, the base's hidden.
  const again = await serveNbd([...peerArgs(peer), "--readOnly"], { source: `${bucket}/clone` });
  const back = await runAsync(["qemu-io", "-f", "raw", "-r", "-c", "read -P 7 0 512k", "-c", "read -P 0 512k 2560k", again.qemu]);
  expect(back.stdout).not.toMatch(/fail/i);
  await again.stop();
  expect(existsSync(join(again.dir, "socket"))).toBe(false);
}, 120_000);
