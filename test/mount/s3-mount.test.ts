/**
 * Real mounts against S3 servers: the embedded one (with counters and faults) and Ceph RGW when it
 * runs. Everything here is async: the embedded server lives in this process and must keep answering.
 */
import { afterAll, afterEach, describe, expect, test } from "bun:test";
import { readFile, rm, writeFile } from "node:fs/promises";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { BINARY, cleanupDisks, ddWrite, isMounted, killHard, mountWith, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, rawClient, rgwPeer, startEmbedded, type Peer } from "../helpers/s3.ts";

const server = startEmbedded();
const embedded = embeddedPeer(server);
const peers: Peer[] = [embedded, ...[rgwPeer()].filter((p): p is Peer => p !== undefined)];
const dirs: string[] = [];
afterEach(async () => {
  server.reset();
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
afterAll(() => {
  server.stop();
  rmSync(dirname(PASSWORD_FILE), { recursive: true, force: true });
});

const PASSWORD_FILE = join(tempDir("password"), "pw");
const UPSTREAM = process.env.UPSTREAM_S3BACKER;
if (!UPSTREAM) console.log("upstream s3backer compatibility: skipped (set UPSTREAM_S3BACKER to a build of upstream master, see the README)");
writeFileSync(PASSWORD_FILE, "correct horse battery staple\n");

function workDir(tag: string): string {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

for (const peer of peers) {
  describe(`s3backer on ${peer.name}`, () => {
    test("a disk remembers its sizes: auto-detected on remount, a mismatch refused unless --force", async () => {
      const bucket = await freshBucket(peer, "geom");
      const dir = workDir("geom");
      const data = pattern(256 * 1024, 1);
      let disk = await mountWith([...peerArgs(peer), "--blockSize=64k", "--size=8M", bucket], dir, true);
      await ddWrite(disk.file, 0, data);
      await disk.unmount();

      disk = await mountWith([...peerArgs(peer), bucket], dir, true);
      expect((await readFile(disk.file)).length).toBe(8 << 20);
      expect(new Uint8Array((await readFile(disk.file)).subarray(0, data.length))).toEqual(data);
      await disk.unmount();

      const refused = await runAsync([BINARY, ...peerArgs(peer), "--size=16M", bucket, disk.mnt]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/--size=16M differs from the disk's own 8M; use --force/);
      disk = await mountWith([...peerArgs(peer), "--blockSize=64k", "--size=16M", "--force", bucket], dir, true);
      expect((await readFile(disk.file)).length).toBe(16 << 20);
      await disk.unmount();
    });

    test("the mounted flag: a second mount is refused; after kill -9 it stays until --reset-mounted-flag", async () => {
      const bucket = await freshBucket(peer, "flag");
      const s3 = rawClient(peer);
      const dir = workDir("flag");
      const disk = await mountWith([...peerArgs(peer), "--size=1M", bucket], dir, true);
      const flag = await s3("GET", `${bucket}/s3backer-mounted`);
      expect(flag.status).toBe(200);
      expect(new TextDecoder().decode(flag.body)).toMatch(/^.+\n\d{8}T\d{6}Z\n$/);
      const other = join(dir, "other");
      mkdirSync(other);
      const second = await runAsync([BINARY, ...peerArgs(peer), bucket, other]);
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/looks mounted elsewhere.*--force.*--reset-mounted-flag/);

      await killHard(disk.pid);
      dirs.push(dir);
      await runAsync(["umount", "-l", disk.mnt]);
      expect((await runAsync([BINARY, ...peerArgs(peer), bucket, other])).code).toBe(1);
      const reset = await runAsync([BINARY, ...peerArgs(peer), "--reset-mounted-flag", bucket]);
      expect(reset.code).toBe(0);
      expect(reset.stderr).toMatch(/cleared the mounted flag/);
      expect((await s3("GET", `${bucket}/s3backer-mounted`)).status).toBe(404);
      const again = await mountWith([...peerArgs(peer), bucket], join(dir, "again"), true);
      await again.unmount();
      expect((await s3("GET", `${bucket}/s3backer-mounted`)).status).toBe(404); // cleared at clean unmount
    });

    test("--readOnly writes nothing at all, not even the flag", async () => {
      const bucket = await freshBucket(peer, "ro");
      const dir = workDir("ro");
      let disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockSize=4k", bucket], dir, true);
      await ddWrite(disk.file, 4096, pattern(4096, 2));
      await disk.unmount();
      disk = await mountWith([...peerArgs(peer), "--readOnly", bucket], dir, true);
      expect((await rawClient(peer)("GET", `${bucket}/s3backer-mounted`)).status).toBe(404);
      const w = await runAsync(["dd", "if=/dev/zero", `of=${disk.file}`, "bs=4k", "count=1", "conv=notrunc"]);
      expect(w.code).not.toBe(0);
      expect(w.stderr).toMatch(/Read-only file system/);
      expect(new Uint8Array((await readFile(disk.file)).subarray(4096, 8192))).toEqual(pattern(4096, 2));
      await disk.unmount();
    });

    test("--erase --force deletes every block and the flag", async () => {
      const bucket = await freshBucket(peer, "erase");
      const dir = workDir("erase");
      const disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockSize=4k", bucket], dir, true);
      for (let i = 0; i < 5; i++) await ddWrite(disk.file, i * 8192, pattern(4096, i + 1));
      await disk.unmount();
      const r = await runAsync([BINARY, ...peerArgs(peer), "--erase", "--force", bucket]);
      expect(r.stderr).toMatch(/erased 5 blocks/);
      expect(r.code).toBe(0);
      const list = new TextDecoder().decode((await rawClient(peer)("GET", `${bucket}?list-type=2`)).body);
      expect(list).not.toContain("<Key>");
    });

    // The same image written by each program and read back by the other, for each format: Debian's
    // 1.5.4, and upstream master (built from source, see the README) where UPSTREAM_S3BACKER names it.
    const formats = [["plain", []], ["--compress", ["--compress=9"]], ["--encrypt", ["--encrypt", `--passwordFile=${PASSWORD_FILE}`]]] as const;
    const upstreamFormats = [["--compress=zstd", ["--compress=zstd"]], ["--compress=zstd --compress-level=19 --encrypt", ["--compress=zstd", "--compress-level=19", "--encrypt", `--passwordFile=${PASSWORD_FILE}`]]] as const;
    const programs = [
      ["Debian's s3backer 1.5.4", "s3backer", formats],
      ["upstream master", UPSTREAM ?? "", [...formats, ...upstreamFormats]],
    ] as const;
    for (const [program, binary, modes] of programs) for (const [mode, codecArgs] of modes) {
      test.skipIf(binary === "")(`format compatibility with ${program}, both ways: ${mode}`, async () => {
        const bucket = await freshBucket(peer, "compat");
        const dir = workDir("compat");
        // Half compressible text, half noise: both the deflated and the stored-raw paths.
        const image = pattern(2 << 20, 77);
        image.fill(0x61, 0, 1 << 20);
        const imageFile = join(dir, "image");
        await writeFile(imageFile, image);
        const original = (mnt: string, ...args: string[]) =>
          runAsync([binary, `--baseURL=${peer.url}`, `--accessId=${peer.accessKey}`, `--accessKey=${peer.secretKey}`, ...codecArgs, ...args, bucket, mnt]);
        const stopOriginal = async (mnt: string) => {
          await runAsync(["umount", mnt]);
          await waitFor("the original to exit", () => !isMounted(mnt));
          // Its unmount returns before its write-back finished: wait for the process to go.
          await waitFor("the original's process", () => {
            const r = Bun.spawnSync(["pgrep", "-f", `${binary} .* ${mnt}$`]);
            return r.stdout.toString().trim().split("\n").filter(Boolean).every((pid) => readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "));
          });
        };
        // The original writes, we read.
        const om = join(dir, "om");
        mkdirSync(om);
        const o = await original(om, "--prefix=orig/", "--blockSize=64k", "--size=4M");
        expect(o.code).toBe(0);
        expect((await runAsync(["dd", `if=${imageFile}`, `of=${join(om, "file")}`, "bs=1M", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
        await stopOriginal(om);
        const stored = new TextDecoder().decode((await rawClient(peer)("GET", `${bucket}?list-type=2&prefix=orig/`)).body);
        expect(stored).toContain("<Key>orig/0000001f</Key>");
        const encodings: Record<string, string> = {
          plain: "", "--compress": "deflate", "--encrypt": "deflate, encrypt-AES-128-CBC",
          "--compress=zstd": "zstd", "--compress=zstd --compress-level=19 --encrypt": "zstd, encrypt-AES-128-CBC",
        };
        // Block 1 is text: compressed by the original wherever it was asked to.
        expect((await rawClient(peer)("HEAD", `${bucket}/orig/00000001`)).headers.get("content-encoding") ?? "").toBe(encodings[mode]!);
        let disk = await mountWith([...peerArgs(peer), ...codecArgs, "--readOnly", "--blockSize=64k", "--size=4M", `${bucket}/orig`], join(dir, "a"), true);
        expect(new Uint8Array((await readFile(disk.file)).subarray(0, image.length))).toEqual(image);
        await disk.unmount();
        // We write, the original reads.
        disk = await mountWith([...peerArgs(peer), ...codecArgs, "--blockSize=64k", "--size=4M", `${bucket}/ours`], join(dir, "b"), true);
        expect((await runAsync(["dd", `if=${imageFile}`, `of=${disk.file}`, "bs=1M", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
        await disk.unmount();
        const head = await rawClient(peer)("HEAD", `${bucket}/ours/00000000`);
        expect(head.headers.get("content-encoding") ?? "").toBe(encodings[mode]!);
        const o2 = await original(om, "--prefix=ours/", "--readOnly");
        expect(o2.stderr).toMatch(/auto-detected block size=64k and total size=4m/);
        expect(new Uint8Array((await readFile(join(om, "file"))).subarray(0, image.length))).toEqual(image);
        await stopOriginal(om);
      });
    }
  });
}

for (const peer of peers) {
  test(`ext4 on a disk in ${peer.name}: e2fsck clean after remount, fstrim deletes the freed objects`, async () => {
    const bucket = await freshBucket(peer, "ext4");
    const dir = workDir("ext4s3");
    const count = async () => (new TextDecoder().decode((await rawClient(peer)("GET", `${bucket}?list-type=2&max-keys=1000`)).body).match(/<Key>[0-9a-f]{8}<\/Key>/g) ?? []).length;
    let disk = await mountWith([...peerArgs(peer), "--size=64M", "--blockSize=64k", bucket], dir, true);
    const loop = (await runAsync(["losetup", "-f", "--show", disk.file])).stdout.trim();
    const fs = join(dir, "fs");
    mkdirSync(fs);
    try {
      expect((await runAsync(["mkfs.ext4", "-q", "-F", loop])).code).toBe(0);
      expect((await runAsync(["mount", loop, fs])).code).toBe(0);
      await writeFile(join(fs, "data.bin"), pattern(16 << 20, 31));
      await runAsync(["umount", fs]);
      await runAsync(["losetup", "-d", loop]);
      await disk.unmount();
      const stored = await count();

      disk = await mountWith([...peerArgs(peer), bucket], dir, true);
      const loop2 = (await runAsync(["losetup", "-f", "--show", disk.file])).stdout.trim();
      try {
        const fsck = await runAsync(["e2fsck", "-fn", loop2]);
        expect(fsck.code).toBe(0);
        expect((await runAsync(["mount", loop2, fs])).code).toBe(0);
        expect(new Uint8Array(await readFile(join(fs, "data.bin")))).toEqual(pattern(16 << 20, 31));
        // Async: a synchronous call would block the S3 server living in this process, which ext4
        // (through the mount) needs to answer.
        await rm(join(fs, "data.bin"));
        await runAsync(["sync"]);
        expect((await runAsync(["fstrim", fs])).code).toBe(0);
        await runAsync(["umount", fs]);
      } finally {
        await runAsync(["losetup", "-d", loop2]);
      }
      await disk.unmount();
      // The file's 256 blocks of 64k were freed by fstrim; metadata blocks stay.
      expect(stored - (await count())).toBeGreaterThan(200);
    } finally {
      if (isMounted(fs)) await runAsync(["umount", fs]);
      await runAsync(["losetup", "-d", loop]);
    }
  });
}

test("ext4 with a few hundred MiB through the block cache; a fresh mount with an empty cache reads it all back", async () => {
  const bucket = await freshBucket(embedded, "big");
  const dir = workDir("big");
  const fs = join(dir, "fs");
  mkdirSync(fs);
  const src = join(dir, "src");
  mkdirSync(src);
  for (let i = 0; i < 12; i++) await writeFile(join(src, `f${i}.bin`), pattern(16 << 20, 900 + i)); // 192 MiB
  for (let i = 0; i < 200; i++) await writeFile(join(src, `small${i}.txt`), `file ${i}\n`.repeat(i + 1));
  const args = [...peerArgs(embedded), "--blockSize=1M", "--blockCacheSize=64", "--md5CacheSize=0"];
  let disk = await mountWith([...args, "--size=512M", bucket], dir, true);
  let loop = (await runAsync(["losetup", "-f", "--show", disk.file])).stdout.trim();
  try {
    expect((await runAsync(["mkfs.ext4", "-q", "-F", loop])).code).toBe(0);
    expect((await runAsync(["mount", loop, fs])).code).toBe(0);
    expect((await runAsync(["cp", "-a", `${src}/.`, fs])).code).toBe(0);
    expect((await runAsync(["umount", fs])).code).toBe(0);
    await runAsync(["losetup", "-d", loop]);
    loop = "";
    await disk.unmount();

    disk = await mountWith([...args, bucket], dir, true); // a new process: nothing cached
    loop = (await runAsync(["losetup", "-f", "--show", disk.file])).stdout.trim();
    const fsck = await runAsync(["e2fsck", "-fn", loop]);
    expect(fsck.code).toBe(0);
    expect((await runAsync(["mount", "-o", "ro", loop, fs])).code).toBe(0);
    const diff = await runAsync(["diff", "-r", "--exclude=lost+found", src, fs]);
    expect(diff.stdout).toBe("");
    expect(diff.code).toBe(0);
    await runAsync(["umount", fs]);
  } finally {
    if (isMounted(fs)) await runAsync(["umount", fs]);
    if (loop) await runAsync(["losetup", "-d", loop]);
  }
  await disk.unmount();
});

