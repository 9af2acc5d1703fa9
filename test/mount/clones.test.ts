/**
 * Clones (--base) as CI uses them: a golden ext4 disk cloned ten times at once, each clone mounted,
 * written, checked and unmounted, the golden disk's objects untouched; zeros, TRIM and
 * WRITE_ZEROES in a clone; a clone of a clone of a clone; a base protected from read-write mounts
 * and --erase; bad input refused in one line, changing nothing. Against the embedded server, and
 * Ceph RGW where it runs (`. /opt/rgw.env`).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BINARY, cleanupDisks, mountWith, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { cleanupNbd, serveNbd } from "../helpers/nbd.ts";
import { embeddedPeer, freshBucket, peerArgs, rawClient, rgwPeer, startEmbedded, type Peer } from "../helpers/s3.ts";
import { dropBucket, objectsOf, s3backer, sh, Undo } from "../helpers/layers.ts";

const server = startEmbedded();
const embedded = embeddedPeer(server);
const rgw = rgwPeer();
const peers: Peer[] = [embedded, ...(rgw ? [rgw] : [])];
const undo = new Undo();
const dirs: string[] = [];
const buckets: [Peer, string][] = [];
afterEach(async () => {
  await undo.run();
  await cleanupDisks();
  await cleanupNbd();
  for (const [peer, bucket] of buckets.splice(0)) await dropBucket(peer, bucket).catch(() => {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  server.reset();
}, 300_000);
afterAll(() => server.stop());

function workDir(tag: string): string {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

async function bucketOn(peer: Peer, tag: string): Promise<string> {
  const bucket = await freshBucket(peer, tag);
  buckets.push([peer, bucket]);
  return bucket;
}

const GOLDEN_FILES = 8;
const goldenFile = (k: number) => pattern(512 * 1024, 1000 + k);
const ownFile = (i: number) => pattern(768 * 1024, 5000 + i);
const blockKeys = (objects: Map<string, { etag: string }>) => [...objects].filter(([k]) => /\/[0-9a-f]{8}$/.test(k));

for (const peer of peers) {
  describe(`clones on ${peer.name}`, () => {
    test("a 1 GiB ext4 golden disk cloned 10 times at once: each clone sees the golden files and its own, never another's; the golden objects are untouched; e2fsck is clean on every clone", async () => {
      const bucket = await bucketOn(peer, "ten");
      const dir = workDir("ten");
      const flags = peerArgs(peer);
      // 64 KiB blocks: each 4 KiB write of ext4 in a clone is part of a block its base holds (read
      // from the base, merged, written up), in 16 times fewer requests than 4 KiB blocks.
      const golden = await mountWith([...flags, "--size=1G", "--blockSize=64k", `${bucket}/golden`], join(dir, "golden"), true);
      const gdev = await undo.loop(golden.file);
      await sh(["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", gdev]);
      const gfs = join(dir, "golden-fs");
      await undo.mountExt4(gdev, gfs);
      for (let k = 0; k < GOLDEN_FILES; k++) await writeFile(join(gfs, `golden-${k}.bin`), goldenFile(k));
      await sh(["umount", gfs]);
      await sh(["losetup", "-d", gdev]);
      await golden.unmount();
      const before = blockKeys(await objectsOf(peer, bucket, "golden/"));
      expect(before.length).toBeGreaterThan(GOLDEN_FILES * 8);

      const clone = async (i: number) => {
        const cdir = join(dir, `clone${i}`);
        const disk = await mountWith([...flags, `--base=${bucket}/golden`, `${bucket}/jobs/${i}`], cdir, true);
        const dev = await undo.loop(disk.file);
        const fs = join(cdir, "fs");
        await undo.mountExt4(dev, fs);
        for (let k = 0; k < GOLDEN_FILES; k++) expect(new Uint8Array(await readFile(join(fs, `golden-${k}.bin`)))).toEqual(goldenFile(k));
        await writeFile(join(fs, `own-${i}.bin`), ownFile(i));
        await sh(["umount", fs]);
        const fsck = await runAsync(["e2fsck", "-fn", dev]);
        expect(fsck.code).toBe(0);
        await sh(["losetup", "-d", dev]);
        await disk.unmount();
      };
      await Promise.all(Array.from({ length: 10 }, (_, i) => clone(i)));

      // Read back from S3 by fresh mounts, read-only: golden files, its own, nobody else's.
      const check = async (i: number) => {
        const cdir = join(dir, `check${i}`);
        const disk = await mountWith([...flags, "--readOnly", `${bucket}/jobs/${i}`], cdir, true);
        const dev = await undo.loop(disk.file, true);
        expect((await runAsync(["e2fsck", "-fn", dev])).code).toBe(0);
        const fs = join(cdir, "fs");
        await undo.mountExt4(dev, fs, "ro,noload");
        const names = (await readdir(fs)).filter((n) => n.endsWith(".bin")).sort();
        expect(names).toEqual([...Array.from({ length: GOLDEN_FILES }, (_, k) => `golden-${k}.bin`), `own-${i}.bin`].sort());
        expect(new Uint8Array(await readFile(join(fs, `own-${i}.bin`)))).toEqual(ownFile(i));
        expect(new Uint8Array(await readFile(join(fs, "golden-3.bin")))).toEqual(goldenFile(3));
        await sh(["umount", fs]);
        await sh(["losetup", "-d", dev]);
        await disk.unmount();
      };
      await Promise.all(Array.from({ length: 10 }, (_, i) => check(i)));

      expect(blockKeys(await objectsOf(peer, bucket, "golden/"))).toEqual(before); // same keys, same ETags
      expect([...(await objectsOf(peer, bucket, "golden/")).keys()].filter((k) => !/[0-9a-f]{8}$/.test(k))).toEqual([]); // nothing else added under it
      const info = await s3backer(peer, "info", `${bucket}/golden`);
      expect(info.stdout).toMatch(new RegExp(`dependents +${bucket}/jobs/\\d`));
      expect(info.stdout.match(/reads the live layer/g)?.length).toBe(10);
    }, 600_000);
  });
}

/** qemu-io commands on an NBD export; throws with its output when one fails (qemu-io exits 0 on a failed -P check, so the output is read). */
async function qemuIo(target: string, ...commands: string[]): Promise<string> {
  const readOnly = commands.every((c) => c.startsWith("read"));
  const r = await runAsync(["qemu-io", "-f", "raw", ...(readOnly ? ["-r"] : []), ...commands.flatMap((c) => ["-c", c]), target]);
  if (r.code !== 0 || /Pattern verification failed|failed:|error/i.test(r.stdout + r.stderr)) throw new Error(`qemu-io ${commands.join("; ")}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

const K64 = 65536;
const at = (block: number) => block * K64;

describe("layers on embedded", () => {
  const peer = embedded;
  const flags = () => peerArgs(peer);

  test("zeros, TRIM and WRITE_ZEROES in a clone read back as zeros (markers), the base keeps its data; --listBlocks knows markers as zeros", async () => {
    const bucket = await bucketOn(peer, "zeros");
    const base = await serveNbd([...flags(), "--blockSize=64k", "--size=1M"], { source: `${bucket}/base` });
    await qemuIo(base.qemu, "write -P 0x5a 0 1M", "flush");
    await base.stop();
    const baseObjects = await objectsOf(peer, bucket, "base/");

    let clone = await serveNbd([...flags(), `--base=${bucket}/base`], { source: `${bucket}/clone` });
    // WRITE_ZEROES on block 0, TRIM on block 1, plain zero bytes over block 2, a partial zero write in block 3.
    await qemuIo(clone.qemu, `write -z 0 ${K64}`, `discard ${at(1)} ${K64}`, `write -P 0 ${at(2)} ${K64}`, `write -P 0 ${at(3)} 4096`, "flush");
    await qemuIo(clone.qemu, `read -P 0 0 ${at(3) + 4096}`, `read -P 0x5a ${at(3) + 4096} ${K64 - 4096}`, `read -P 0x5a ${at(4)} ${at(12)}`);
    await clone.stop();
    const objects = await objectsOf(peer, bucket, "clone/");
    expect([...objects].filter(([k, o]) => /[0-9a-f]{8}$/.test(k) && o.size === 0).map(([k]) => k).sort()).toEqual(["clone/00000001", "clone/00000002"]);
    // Block 0 keeps the disk's sizes: stored as a zero block, never a marker.
    expect(objects.get("clone/00000000")!.size).toBeGreaterThan(0);
    expect(await objectsOf(peer, bucket, "base/")).toEqual(baseObjects);

    // A fresh process reads the markers from S3; with --listBlocks, once listed, they cost no GET.
    const stats = join(workDir("zstats"), "stats");
    clone = await serveNbd([...flags(), "--listBlocks", "--readAhead=0", `--statsFileMirror=${stats}`, "--statsFileMirrorInterval=50"], { source: `${bucket}/clone` });
    await waitFor("the listing", async () => /listing +done/.test(await readFile(stats, "utf8").catch(() => "")));
    server.counters.reset();
    await qemuIo(clone.qemu, `read -P 0 ${at(1)} ${at(2)}`);
    expect(server.counters.requests.GET).toBe(0);
    await qemuIo(clone.qemu, `read -P 0 0 ${K64}`, `read -P 0x5a ${at(5)} ${K64}`);
    await clone.stop();
    // The same through FUSE: a punched hole and zeros written with dd.
    const disk = await mountWith([...flags(), `${bucket}/clone`], workDir("zfuse"), true);
    await sh(["fallocate", "--punch-hole", "--keep-size", "-o", String(at(6)), "-l", String(K64), disk.file]);
    await sh(["dd", "if=/dev/zero", `of=${disk.file}`, "bs=64k", "seek=7", "count=1", "conv=notrunc,fsync", "status=none"]);
    await disk.unmount();
    const again = await mountWith([...flags(), "--readOnly", `${bucket}/clone`], workDir("zfuse2"), true);
    const bytes = new Uint8Array(await readFile(again.file));
    expect(bytes.subarray(at(6), at(8))).toEqual(new Uint8Array(2 * K64));
    expect(bytes.subarray(at(8), at(9))).toEqual(new Uint8Array(K64).fill(0x5a));
    await again.unmount();
    expect(await objectsOf(peer, bucket, "base/")).toEqual(baseObjects);
  }, 120_000);

  test("a clone of a clone of a clone reads every level right: data, markers over data, data over markers", async () => {
    const bucket = await bucketOn(peer, "chain");
    const write = async (disk: string, base: string | undefined, ops: string[]) => {
      const nbd = await serveNbd([...flags(), ...(base ? [`--base=${bucket}/${base}`] : ["--blockSize=64k", "--size=1M"])], { source: `${bucket}/${disk}` });
      await qemuIo(nbd.qemu, ...ops, "flush");
      await nbd.stop();
    };
    const fill = (block: number, byte: number) => `write -P ${byte} ${at(block)} ${K64}`;
    const zero = (block: number) => `write -z ${at(block)} ${K64}`;
    await write("a", undefined, Array.from({ length: 8 }, (_, i) => fill(i, 0xa0 + i)));
    await write("b", "a", [fill(1, 0xb1), zero(2), fill(8, 0xb8)]);
    await write("c", "b", [fill(3, 0xc3), zero(8), fill(2, 0xc2)]);
    await write("d", "c", [fill(4, 0xd4), zero(0)]);
    const expected: Record<string, number[]> = {
      a: [0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0, 0],
      b: [0xa0, 0xb1, 0, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xb8, 0],
      c: [0xa0, 0xb1, 0xc2, 0xc3, 0xa4, 0xa5, 0xa6, 0xa7, 0, 0],
      d: [0, 0xb1, 0xc2, 0xc3, 0xd4, 0xa5, 0xa6, 0xa7, 0, 0],
    };
    for (const [disk, bytes] of Object.entries(expected)) {
      // Bases are frozen: read-only. Each read twice: before and after the levels are listed.
      const nbd = await serveNbd([...flags(), ...(disk === "d" ? [] : ["--readOnly"])], { source: `${bucket}/${disk}` });
      const reads = bytes.map((byte, block) => `read -P ${byte} ${at(block)} ${K64}`);
      await qemuIo(nbd.qemu, ...reads);
      await Bun.sleep(200);
      await qemuIo(nbd.qemu, ...reads);
      await nbd.stop();
    }
    const info = await s3backer(peer, "info", `${bucket}/d`);
    // Zeros over block 0 are a zero block, not a marker: block 0 keeps the disk's sizes.
    expect(info.stdout).toMatch(/layers +d\/ \[live layer\]: 2 blocks, 0 zero markers/);
    expect(info.stdout).toMatch(/c\/ \[of [^\]]+\/c\]: 2 blocks, 1 zero markers/);
    expect(info.stdout).toMatch(/a\/ \[of [^\]]+\/a\]: 8 blocks, 0 zero markers/);
  }, 120_000);

  test("a base is frozen: a read-write mount and --erase are refused naming a dependent; a stale record is not; once the clone is erased the base is free", async () => {
    const bucket = await bucketOn(peer, "frozen");
    const dir = workDir("frozen");
    const base = await mountWith([...flags(), "--size=1M", `${bucket}/base`], join(dir, "base"), true);
    await writeFile(base.file, pattern(K64, 7), { flag: "r+" });
    await base.unmount();
    const clone = await mountWith([...flags(), `--base=${bucket}/base`, `${bucket}/clone`], join(dir, "clone"), true);
    await clone.unmount();
    const before = await objectsOf(peer, bucket);

    mkdirSync(join(dir, "mnt"));
    undo.unmountIfMounted(join(dir, "mnt")); // where a refusal that failed would have mounted
    const rw = await runAsync([BINARY, ...flags(), `${bucket}/base`, join(dir, "mnt")]);
    expect(rw.code).toBe(1);
    expect(rw.stderr.trim().split("\n")).toEqual([`s3backer: ${bucket}/base is the base of ${bucket}/clone, so it is read-only: mount it with --readOnly (or flatten or erase ${bucket}/clone first)`]);
    const erase = await runAsync([BINARY, ...flags(), "--erase", "--force", `${bucket}/base`]);
    expect(erase.code).toBe(1);
    expect(erase.stderr).toMatch(new RegExp(`^s3backer: ${bucket}/base is the base of ${bucket}/clone: --erase is refused while disks read through it`));
    expect(await objectsOf(peer, bucket)).toEqual(before); // the flag set for the check is cleared again
    const ro = await mountWith([...flags(), "--readOnly", `${bucket}/base`], join(dir, "ro"), true);
    expect(new Uint8Array(await readFile(ro.file)).subarray(0, K64)).toEqual(pattern(K64, 7));
    await ro.unmount();

    // A record left by a crash: one without its disk counts while young (a clone being made), not when old.
    const s3 = rawClient(peer);
    // Record keys hold the disks' names URI-encoded ("other%2F"), and the URL encodes them once more.
    const twice = (name: string) => encodeURIComponent(encodeURIComponent(name));
    const stale = `s3backer-dependents/${twice("other/")}`;
    await s3("PUT", `${bucket}/${stale}/${twice("ghost/")}`, { body: JSON.stringify({ disk: "ghost/", created: new Date().toISOString(), host: "h" }) });
    expect((await runAsync([BINARY, ...flags(), "--erase", "--force", `${bucket}/other`])).stderr).toMatch(/is the base of .*\/ghost/);
    await s3("PUT", `${bucket}/${stale}/${twice("ghost/")}`, { body: JSON.stringify({ disk: "ghost/", created: "2020-01-01T00:00:00Z", host: "h" }) });
    expect((await runAsync([BINARY, ...flags(), "--erase", "--force", `${bucket}/other`])).stderr).toMatch(/record of .*\/ghost is stale/);
    expect((await s3("GET", `${bucket}/${stale}/${twice("ghost/")}`)).status).toBe(404);

    const erased = await runAsync([BINARY, ...flags(), "--erase", "--force", `${bucket}/clone`]);
    expect(erased.code).toBe(0);
    expect([...(await objectsOf(peer, bucket)).keys()].filter((k) => !k.startsWith("base/"))).toEqual([]);
    const free = await mountWith([...flags(), `${bucket}/base`], join(dir, "free"), true);
    await free.unmount();
  }, 120_000);

  test("bad input is one line and changes nothing", async () => {
    const bucket = await bucketOn(peer, "bad");
    const dir = workDir("bad");
    const pw = join(dir, "pw");
    await writeFile(pw, "right\n");
    await writeFile(join(dir, "wrong"), "wrong\n");
    const make = async (disk: string, extra: string[]) => {
      const d = await mountWith([...flags(), "--size=1M", ...extra, `${bucket}/${disk}`], join(dir, disk), true);
      await writeFile(d.file, pattern(3 * 4096, 3), { flag: "r+" });
      await d.unmount();
    };
    await make("plain", []);
    await make("secret", ["--encrypt", `--passwordFile=${pw}`]);
    await (await mountWith([...flags(), `--base=${bucket}/plain`, `${bucket}/child`], join(dir, "child"), true)).unmount();
    await s3backer(peer, "snapshot", `${bucket}/child`, `${bucket}/child@one`);
    await make("busy", []);
    const busy = await mountWith([...flags(), `${bucket}/busy`], join(dir, "busy"), true); // read-write, all along
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    undo.unmountIfMounted(mnt);
    const cases: [string[], RegExp][] = [
      [[`--base=${bucket}/nothing`, `${bucket}/new`, mnt], /there is no disk at .*\/nothing/],
      [[`--base=${bucket}/child@nope`, `${bucket}/new`, mnt], /^s3backer: --base=[^:]*: .*\/child has no snapshot 'nope' \(its snapshots: one\)/],
      [[`--base=${bucket}/plain@nope`, `${bucket}/new`, mnt], /there is no disk at .*\/plain@nope/],
      [[`--base=${bucket}/new`, `${bucket}/new`, mnt], /cannot be its own base \(a cycle\)/],
      [[`--base=${bucket}/child`, `${bucket}/plain`, mnt], /reads through .*\/plain itself: a disk cannot be its own base \(a cycle\)/],
      [[`--base=${bucket}/plain`, "--blockSize=8k", `${bucket}/new`, mnt], /the base .*\/plain has blocks of 4K, and a clone has its base's block size/],
      [[`--base=${bucket}/secret`, `${bucket}/new`, mnt], /\/secret: the disk is encrypted .*mount it with --encrypt/],
      [[`--base=${bucket}/secret`, "--encrypt", `--passwordFile=${join(dir, "wrong")}`, `${bucket}/new`, mnt], /\/secret: cannot mount: block 0 refused: its signature does not verify/],
      [[`--base=${bucket}/plain`, "--encrypt", `--passwordFile=${pw}`, `${bucket}/new`, mnt], /--encrypt was given but the disk is not encrypted/],
      [[`--base=${bucket}/plain`, `${bucket}/secret`, mnt], /already holds blocks of a disk of its own/],
      [[`--base=other-bucket/plain`, `${bucket}/new`, mnt], /a base must be in the same bucket/],
      [[`--base=${bucket}/busy`, `${bucket}/new`, mnt], /\/busy is mounted read-write \(.*\), and a base must not change under its clones/],
      [["snapshot", `${bucket}/child`, `${bucket}/child@one`], /already has a snapshot named 'one'/],
      [["snapshot", `${bucket}/child`, `${bucket}/child@-x`], /is not a snapshot name/],
      [["snapshot", `${bucket}/child`, `${bucket}/other@x`], /the snapshot is named .*\/child@NAME/],
      [["snapshot", `${bucket}/nothing`, `${bucket}/nothing@x`], /there is no disk at .*\/nothing/],
      [["resize", `${bucket}/child`, "4k"], /holds data past 4K \(block 1, in plain\/\): shrinking would drop it; --force drops it/],
      [["resize", `${bucket}/plain`, "8k"], /\/plain is the base of .*\/child: a resize is refused while disks read through it/],
      [["resize", `${bucket}/child`, "1000"], /not a whole number of the disk's 4K blocks/],
      [[`${bucket}/child@one`, mnt], /is a snapshot, which is read-only: mount it with --readOnly/],
      [["flatten", `${bucket}/plain`], /has no base: it is a plain disk already/],
      [["flatten", `${bucket}/nothing`], /^s3backer: there is no disk at .*\/nothing/],
      [["flatten", `${bucket}/child`], /has snapshots \(one\)/],
    ];
    const before = await objectsOf(peer, bucket);
    for (const [args, message] of cases) {
      const r = ["snapshot", "resize", "flatten"].includes(args[0]!) ? await s3backer(peer, ...args) : await runAsync([BINARY, ...flags(), ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: r.code === 2 ? 2 : 1 });
      const lines = r.stderr.trim().split("\n");
      expect({ args, lines: lines.length }).toEqual({ args, lines: 1 });
      expect(lines[0]).toMatch(message);
      expect(lines[0]).toStartWith("s3backer: ");
    }
    expect(await objectsOf(peer, bucket)).toEqual(before);
    await busy.unmount();
    // A manifest whose chain comes back to its own live layer.
    const s3 = rawClient(peer);
    const m = JSON.parse(new TextDecoder().decode((await s3("GET", `${bucket}/child/s3backer-layers`)).body));
    m.chain.push({ layer: m.live, disk: "child/", blocks: 16 });
    await s3("PUT", `${bucket}/child/s3backer-layers`, { body: JSON.stringify(m) });
    const cycle = await runAsync([BINARY, ...flags(), "--readOnly", `${bucket}/child`, mnt]);
    expect(cycle.stderr.trim()).toMatch(/^s3backer: .*child\/s3backer-layers: the chain of layers has a cycle \(child\/s3backer-layer-1\/ comes twice\)$/);
  }, 120_000);
});
