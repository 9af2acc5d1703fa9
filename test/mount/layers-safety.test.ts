/**
 * What keeps one layered disk from changing another's data: flatten and resize of a disk others
 * read through are refused; a disk may not be named inside another disk's own objects, and a
 * snapshot takes a new layer only where nothing lies; the snapshot command finds the mount by the
 * disk's flag however --baseURL is spelled, and never advises clearing the flag of a live process.
 * Small disks (4 KiB blocks, 1 MiB) on the embedded server.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { BINARY, cleanupDisks, mountWith, pattern, runAsync, tempDir } from "../helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, rawClient, startEmbedded } from "../helpers/s3.ts";
import { objectsOf, s3backer, Undo } from "../helpers/layers.ts";

const server = startEmbedded();
const peer = embeddedPeer(server);
const flags = peerArgs(peer);
const undo = new Undo();
const dirs: string[] = [];
afterEach(async () => {
  await undo.run();
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  server.reset();
}, 60_000);
afterAll(() => server.stop());

const K4 = 4096;
const SMALL = ["--blockSize=4k", "--size=1M"];

function workDir(tag: string): string {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

/** Writes `data` at `offset` of a mounted disk's file, asynchronously (the S3 server runs in this process), and syncs. */
async function writeAt(file: string, offset: number, data: Uint8Array): Promise<void> {
  const fd = await open(file, "r+");
  try {
    await fd.write(data, 0, data.length, offset);
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/** Mounts `args` (ending with the disk), writes each [offset, data], unmounts. */
async function make(dir: string, args: string[], writes: [number, Uint8Array][] = []): Promise<void> {
  const disk = await mountWith([...flags, ...args], join(dir, args.at(-1)!.replace(/\W/g, "_")), true);
  for (const [offset, data] of writes) await writeAt(disk.file, offset, data);
  await disk.unmount();
}

/** The disk's bytes, through a read-only mount. */
async function readDisk(dir: string, disk: string): Promise<Uint8Array> {
  const ro = await mountWith([...flags, "--readOnly", disk], join(dir, `ro-${disk.replace(/\W/g, "_")}`), true);
  const bytes = new Uint8Array(await readFile(ro.file));
  await ro.unmount();
  return bytes;
}

/** One line on stderr, exit code 1. */
function refused(r: { code: number; stderr: string }, message: RegExp): void {
  expect({ code: r.code, lines: r.stderr.trim().split("\n") }).toEqual({ code: 1, lines: [expect.stringMatching(message)] });
}

test("flatten of a disk that others read through is refused naming one of them, and they keep reading what they did", async () => {
  const bucket = await freshBucket(peer, "flatdep");
  const dir = workDir("flatdep");
  const g = pattern(K4, 1);
  await make(dir, [...SMALL, `${bucket}/g`], [[K4, g]]);
  await make(dir, [`--base=${bucket}/g`, `${bucket}/c1`], [[K4, new Uint8Array(K4)]]); // zeros over block 1: a marker
  await make(dir, [`--base=${bucket}/c1`, `${bucket}/c2`]);
  const before = await objectsOf(peer, bucket);

  refused(await s3backer(peer, "flatten", `${bucket}/c1`), new RegExp(`^s3backer: ${bucket}/c1 is the base of ${bucket}/c2: flatten is refused while disks read through it \\(flatten or erase ${bucket}/c2 first\\)$`));
  expect(await objectsOf(peer, bucket)).toEqual(before); // the markers too, and the flag taken for the check is cleared
  expect((await readDisk(dir, `${bucket}/c2`)).subarray(K4, 2 * K4)).toEqual(new Uint8Array(K4));
  // The leaf itself flattens.
  expect((await s3backer(peer, "flatten", `${bucket}/c2`)).code).toBe(0);
}, 60_000);

test("resize of a base is refused, grow or shrink, --force or not; a disk whose dependents read only its snapshots resizes", async () => {
  const bucket = await freshBucket(peer, "resizebase");
  const dir = workDir("resizebase");
  const data = pattern(K4, 2);
  await make(dir, [...SMALL, `${bucket}/g`], [[0, data], [200 * K4, data]]);
  await make(dir, [`--base=${bucket}/g`, `${bucket}/c`]);
  expect((await s3backer(peer, "snapshot", `${bucket}/c`, `${bucket}/c@s`)).code).toBe(0);
  await make(dir, [`--base=${bucket}/c@s`, `${bucket}/e`]);
  const before = await objectsOf(peer, bucket);

  const base = new RegExp(`^s3backer: ${bucket}/g is the base of ${bucket}/c: a resize is refused while disks read through it`);
  refused(await s3backer(peer, "resize", "--force", `${bucket}/g`, "512K"), base);
  refused(await s3backer(peer, "resize", `${bucket}/g`, "2M"), base);
  expect(await objectsOf(peer, bucket)).toEqual(before); // block 0 not stored again, block 200 not deleted
  expect((await readDisk(dir, `${bucket}/c`)).subarray(200 * K4, 201 * K4)).toEqual(data);

  const grown = await s3backer(peer, "resize", `${bucket}/c`, "2M"); // e reads c@s, which never changes
  expect(grown.stderr).toMatch(/c grew from 1M to 2M/);
  expect((await readDisk(dir, `${bucket}/e`)).length).toBe(1 << 20);
}, 60_000);

test("a disk cannot be named inside another disk's own objects; a snapshot takes a new layer only where nothing lies; disks may nest otherwise", async () => {
  const bucket = await freshBucket(peer, "reserved");
  const dir = workDir("reserved");
  await make(dir, [...SMALL, `${bucket}/g`], [[0, pattern(K4, 3)]]);
  const mnt = join(dir, "mnt");
  mkdirSync(mnt);
  undo.unmountIfMounted(mnt);
  const before = await objectsOf(peer, bucket);
  const cases: [string[], RegExp][] = [
    [[`--base=${bucket}/g`, `${bucket}/g/s3backer-layer-1`, mnt], /^s3backer: '.*\/g\/s3backer-layer-1': 's3backer-layer-1' is a name s3backer keeps for a disk's own objects/],
    [[...SMALL, `${bucket}/g/s3backer-layers/x`, mnt], /'s3backer-layers' is a name s3backer keeps/],
    [[...SMALL, `${bucket}/s3backer-dependents/x`, mnt], /'s3backer-dependents' is a name s3backer keeps/],
    [[...SMALL, `--prefix=s3backer-layer-2/`, bucket, mnt], /^s3backer: '[^']*' with --prefix=s3backer-layer-2\/: 's3backer-layer-2' is a name/],
    [[`--base=${bucket}/g/s3backer-layer-1`, `${bucket}/new`, mnt], /^s3backer: --base=[^:]*\/g\/s3backer-layer-1: 's3backer-layer-1' is a name/],
    [["--erase", "--force", `${bucket}/g/s3backer-mounted`], /'s3backer-mounted' is a name/],
  ];
  for (const [args, message] of cases) refused(await runAsync([BINARY, ...flags, ...args]), message);
  refused(await s3backer(peer, "info", `${bucket}/g/s3backer-key`), /'s3backer-key' is a name/);
  expect(await objectsOf(peer, bucket)).toEqual(before);

  // Something already where the next layer would go (put there by hand, or by an older version): refused, offline and mounted.
  const s3 = rawClient(peer);
  expect((await s3("PUT", `${bucket}/g/s3backer-layer-1/00000000`, { body: pattern(K4, 4) })).status).toBe(200);
  const planted = await objectsOf(peer, bucket);
  const taken = /^s3backer: .*\/g: its next layer g\/s3backer-layer-1\/ already holds objects \(g\/s3backer-layer-1\/00000000\) that are not this disk's: nothing done/;
  refused(await s3backer(peer, "snapshot", `${bucket}/g`, `${bucket}/g@s1`), taken);
  const live = await mountWith([...flags, `${bucket}/g`], join(dir, "live"), true);
  refused(await s3backer(peer, "snapshot", `${bucket}/g`, `${bucket}/g@s1`), taken);
  await live.unmount();
  expect(await objectsOf(peer, bucket)).toEqual(planted);

  // Nested disks are two disks: erasing the outer one leaves the inner one whole.
  const inner = pattern(2 * K4, 5);
  await make(dir, [...SMALL, `${bucket}/g/cafe`], [[0, inner]]);
  expect((await runAsync([BINARY, ...flags, "--erase", "--force", `${bucket}/g`])).code).toBe(0);
  expect([...(await objectsOf(peer, bucket, "g/")).keys()].filter((k) => /^g\/[0-9a-f]{8}$/.test(k))).toEqual([]);
  expect((await readDisk(dir, `${bucket}/g/cafe`)).subarray(0, 2 * K4)).toEqual(inner);
}, 60_000);

test("snapshot reaches the mount however --baseURL is spelled, and is frozen; with no mount answering it advises clearing the flag only when its process is gone", async () => {
  const bucket = await freshBucket(peer, "control");
  const dir = workDir("control");
  const first = pattern(K4, 6);
  await make(dir, [...SMALL, `${bucket}/d`], [[0, first]]);
  const disk = await mountWith([...flags, `${bucket}/d`], join(dir, "d"), true);
  const localhost = `--baseURL=${peer.url.replace("127.0.0.1", "localhost")}`;
  expect(localhost).toContain("localhost");
  const snap = await runAsync([BINARY, "snapshot", localhost, `--accessId=${peer.accessKey}`, `--accessKey=${peer.secretKey}`, `${bucket}/d`, `${bucket}/d@s1`]);
  expect({ code: snap.code, stderr: snap.stderr }).toEqual({ code: 0, stderr: expect.stringMatching(/d@s1: snapshot taken; writes now go to d\/s3backer-layer-1\//) });
  await writeAt(disk.file, 0, pattern(K4, 7)); // after the snapshot: not in it
  expect((await readDisk(dir, `${bucket}/d@s1`)).subarray(0, K4)).toEqual(first);
  await disk.unmount();

  // A flag of this host that no mount answers for: by a running process, by one gone, by one that records no process.
  const s3 = rawClient(peer);
  const flag = (pid: number | undefined) =>
    s3("PUT", `${bucket}/d/s3backer-mounted`, {
      body: `${hostname()}\n20250101T000000Z\n`,
      headers: { "x-amz-meta-s3backer-mount-token": "1234abcd", ...(pid === undefined ? {} : { "x-amz-meta-s3backer-pid": String(pid) }) },
    });
  const exited = Bun.spawn(["true"]);
  await exited.exited;
  const runs: [number | undefined, RegExp][] = [
    [process.pid, new RegExp(`no mount answers at .*: process ${process.pid}, which set the flag, is running .*: unmount it or let it finish first$`)],
    [undefined, /no mount answers at .*: a mount on this host may hold it .*: unmount it first$/],
    [exited.pid, new RegExp(`and process ${exited.pid}, which set the flag, is gone: if that was a mount that crashed, clear the flag \\(--reset-mounted-flag\\) first$`)],
  ];
  for (const [pid, message] of runs) {
    expect((await flag(pid)).status).toBe(200);
    const before = await objectsOf(peer, bucket);
    const r = await s3backer(peer, "snapshot", `${bucket}/d`, `${bucket}/d@s2`);
    refused(r, message);
    if (pid !== exited.pid) expect(r.stderr).not.toContain("--reset-mounted-flag");
    expect(await objectsOf(peer, bucket)).toEqual(before);
  }
}, 60_000);
