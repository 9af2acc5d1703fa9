/**
 * Clones (--base) as CI uses them: a golden ext4 disk cloned ten times at once, each clone mounted,
 * written, checked and unmounted, the golden disk's objects untouched; zeros, TRIM and
 * WRITE_ZEROES in a clone; a clone of a clone of a clone; a base protected from read-write mounts
 * and --erase; bad input refused in one line, changing nothing. Against the embedded server, and
 * Ceph RGW where it runs (`. /opt/rgw.env`).
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { readFile, readdir, writeFile } from "node:fs/promises";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BINARY, cleanupDisks, mountWith, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
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
      const golden = await mountWith([...flags, "--size=1G", `${bucket}/golden`], join(dir, "golden"), true);
      const gdev = await undo.loop(golden.file);
      await sh(["mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", gdev]);
      const gfs = join(dir, "golden-fs");
      await undo.mountExt4(gdev, gfs);
      for (let k = 0; k < GOLDEN_FILES; k++) await writeFile(join(gfs, `golden-${k}.bin`), goldenFile(k));
      await sh(["umount", gfs]);
      await sh(["losetup", "-d", gdev]);
      await golden.unmount();
      const before = blockKeys(await objectsOf(peer, bucket, "golden/"));
      expect(before.length).toBeGreaterThan(GOLDEN_FILES * 128);

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
