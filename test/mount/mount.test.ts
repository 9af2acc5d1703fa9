/** Real mounts of dist/s3backer in --test mode: the single-file filesystem through the kernel. */
import { afterEach, expect, test } from "bun:test";
import { chmodSync, closeSync, constants, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, unlinkSync, writeFileSync, writeSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { blockFiles, cleanupDisks, isMounted, mountDisk, pattern, pread, pwrite, run, runAsync, sh, tempDir, waitFor } from "../helpers/disk.ts";

afterEach(cleanupDisks);

const BS = 64 * 1024;
const SIZE = 4 * 1024 * 1024;


test("the mount holds the file and the stats file with the right size and mode", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "--fileMode=0640"]);
  expect(readdirSync(disk.mnt).sort()).toEqual(["file", "stats"]);
  const st = statSync(disk.file);
  expect(st.size).toBe(SIZE);
  expect(st.mode & 0o7777).toBe(0o640);
  expect(st.isFile()).toBe(true);
  expect(st.blksize).toBe(BS);
  expect(readFileSync(disk.stats, "utf8")).toContain("[local directory]");
  const df = sh(["stat", "-f", "-c", "%S %b", disk.mnt]).trim();
  expect(df).toBe(`${BS} ${SIZE / BS}`);
  await disk.unmount();
  expect(isMounted(disk.mnt)).toBe(false);
});

test("unaligned writes across block boundaries read back equal to a reference, also after remount", async () => {
  const dir = tempDir("pattern");
  try {
    const args = [`--blockSize=${BS}`, `--size=${SIZE}`];
    const reference = new Uint8Array(SIZE);
    let disk = await mountDisk(args, { dir });
    // (offset, length): inside one block, across one boundary, across many, the very end, 1 MiB at odd offset.
    const writes: [number, number][] = [
      [100, 50], [BS - 10, 20], [3 * BS + 7, 5 * BS + 3], [SIZE - 33, 33], [12345, 1 << 20], [0, 1], [2 * BS, BS],
    ];
    writes.forEach(([offset, length], i) => {
      const data = pattern(length, i + 1);
      pwrite(disk.file, offset, data);
      reference.set(data, offset);
    });
    for (const [offset, length] of [[0, SIZE], [BS - 100, 300], [SIZE - 50, 50], [777, 3 * BS]]) {
      expect(pread(disk.file, offset!, length!)).toEqual(reference.subarray(offset!, offset! + length!));
    }
    // Reads past the end return what exists; writes past the end fail.
    expect(pread(disk.file, SIZE - 10, 100).length).toBe(10);
    const fd = openSync(disk.file, "r+");
    expect(() => writeSync(fd, new Uint8Array(10), 0, 10, SIZE)).toThrow(/ENOSPC|EFBIG|No space/);
    closeSync(fd);
    await disk.unmount();
    disk = await mountDisk(args, { dir });
    expect(readFileSync(disk.file)).toEqual(Buffer.from(reference));
    await disk.unmount();
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("new block buffers come faulted in ahead by a thread of the binary's own; what lands in them is stored as written", async () => {
  const dir = tempDir("ahead");
  try {
    const args = [`--blockSize=${BS}`, `--size=${SIZE}`];
    let disk = await mountDisk(args, { dir });
    pwrite(disk.file, 0, pattern(BS, 100)); // the first new buffer is made where it is used, and more are asked for
    await new Promise((r) => setTimeout(r, 300));
    for (let b = 1; b < 32; b++) pwrite(disk.file, b * BS, pattern(BS, 100 + b));
    expect(Number(/buffers faulted in ahead\s+(\d+)/.exec(readFileSync(disk.stats, "utf8"))![1])).toBeGreaterThan(0);
    await disk.unmount();
    disk = await mountDisk(args, { dir });
    for (let b = 0; b < 32; b++) expect(pread(disk.file, b * BS, BS)).toEqual(pattern(BS, 100 + b));
    await disk.unmount();
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("zero blocks are not stored: writing zeros over a block deletes its file", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`]);
  pwrite(disk.file, 5 * BS, pattern(BS, 9));
  expect(blockFiles(disk.blocks)).toEqual(["00000005"]);
  pwrite(disk.file, 5 * BS, new Uint8Array(BS));
  expect(blockFiles(disk.blocks)).toEqual([]);
  pwrite(disk.file, 5 * BS + 10, pattern(10, 3));
  pwrite(disk.file, 5 * BS + 10, new Uint8Array(10)); // a partial write that leaves only zeros
  expect(blockFiles(disk.blocks)).toEqual([]);
  await disk.unmount();
});

test("fallocate punch-hole deletes whole blocks and zeroes the edges", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`]);
  pwrite(disk.file, 0, pattern(8 * BS, 4));
  expect(blockFiles(disk.blocks).length).toBe(8);
  sh(["fallocate", "--punch-hole", "--offset", String(BS + 100), "--length", String(4 * BS), disk.file]);
  // Blocks 2..4 lie wholly inside the hole; blocks 1 and 5 keep their outer parts.
  expect(blockFiles(disk.blocks)).toEqual(["00000000", "00000001", "00000005", "00000006", "00000007"]);
  const expected = pattern(8 * BS, 4);
  expected.fill(0, BS + 100, 5 * BS + 100);
  expect(pread(disk.file, 0, 8 * BS)).toEqual(expected);
  await disk.unmount();
});

test("truncate is refused, chmod and touch work, deleting stats resets the counters", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`]);
  expect(() => truncateSync(disk.file, 0)).toThrow(/EPERM|not permitted/);
  expect(statSync(disk.file).size).toBe(SIZE);
  sh(["chmod", "0604", disk.file]);
  expect(statSync(disk.file).mode & 0o777).toBe(0o604);
  sh(["touch", "-d", "2020-01-02T03:04:05Z", disk.file]);
  expect(statSync(disk.file).mtime.toISOString()).toBe("2020-01-02T03:04:05.000Z");
  pwrite(disk.file, 0, pattern(BS, 2));
  expect(readFileSync(disk.stats, "utf8")).toMatch(/writes\s+1\n/);
  unlinkSync(disk.stats);
  expect(readFileSync(disk.stats, "utf8")).toMatch(/writes\s+0\n/);
  expect(() => unlinkSync(disk.file)).toThrow();
  expect(() => writeFileSync(join(disk.mnt, "new"), "x")).toThrow();
  await disk.unmount();
});

test("--readOnly refuses writes with EROFS and mounts read-only", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "--readOnly"]);
  expect(() => openSync(disk.file, "r+")).toThrow(/EROFS|read-only/i);
  expect(statSync(disk.file).mode & 0o777).toBe(0o400);
  expect(pread(disk.file, 0, 10)).toEqual(new Uint8Array(10));
  expect(readFileSync("/proc/self/mountinfo", "utf8")).toMatch(new RegExp(`${disk.mnt} \\S*\\bro\\b`));
  await disk.unmount();
});

test("--statsFilename= (empty) hides the stats file; --filename renames the file", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "--statsFilename=", "--filename=disk.img"]);
  expect(readdirSync(disk.mnt)).toEqual(["disk.img"]);
  await disk.unmount();
});

test("a second mount on a live mount point is refused with a clear message", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`]);
  const again = run(["dist/s3backer", "--test", `--size=${SIZE}`, disk.blocks, disk.mnt]);
  expect(again.code).toBe(1);
  expect(again.stderr).toMatch(/already a mount point/);
  await disk.unmount();
});

test("as a non-root user the mount goes through fusermount3", async () => {
  const dir = tempDir("user");
  // Distributions make /dev/fuse 0666 (fusermount3 opens it as the user); some sandboxes leave it 0600.
  const fuseMode = statSync("/dev/fuse").mode & 0o777;
  chmodSync("/dev/fuse", 0o666);
  try {
    sh(["mkdir", "-p", join(dir, "b"), join(dir, "m")]);
    sh(["chown", "-R", "nobody:nogroup", dir]);
    sh(["chmod", "755", dir]);
    const as = (cmd: string[]) => run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", ...cmd]);
    const binCopy = join(dir, "s3backer");
    sh(["cp", "dist/s3backer", binCopy]);
    const r = as([binCopy, "--test", `--size=${SIZE}`, `--blockSize=${BS}`, "--debug", join(dir, "b"), join(dir, "m")]);
    expect(r.stderr).not.toMatch(/WARN|ERROR/);
    expect(r.code).toBe(0);
    // A descriptor fusermount3 passed can be cloned too: the main thread reads requests itself.
    expect(r.stderr).toContain("the main thread reads requests itself while busy");
    expect(isMounted(join(dir, "m"))).toBe(true);
    expect(as(["dd", "if=/dev/zero", `of=${join(dir, "m", "file")}`, "bs=64k", "count=1", "seek=2", "conv=notrunc"]).code).toBe(0);
    expect(as(["sh", "-c", `printf hello | dd of=${join(dir, "m", "file")} bs=1 seek=100 conv=notrunc`]).code).toBe(0);
    expect(as(["fusermount3", "-u", join(dir, "m")]).code).toBe(0);
    await waitFor("the user's s3backer to exit", () => run(["pgrep", "-f", binCopy]).code !== 0);
    expect(blockFiles(join(dir, "b"))).toEqual(["00000000"]);
  } finally {
    if (isMounted(join(dir, "m"))) run(["umount", "-l", join(dir, "m")]);
    run(["pkill", "-9", "-f", join(dir, "s3backer")]);
    chmodSync("/dev/fuse", fuseMode);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("-o uid=,gid= set the owner; fsname and subtype show in the mount table; allow_other opens it to other users", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "-o", "uid=1234,gid=5678,allow_other", "--fileMode=0666"]);
  const st = statSync(disk.file);
  expect([st.uid, st.gid]).toEqual([1234, 5678]);
  const line = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.includes(` ${disk.mnt} `))!;
  expect(line).toContain(` fuse.s3backer test:${disk.blocks} `);
  expect(line).toMatch(/allow_other/);
  chmodSync(disk.dir, 0o755); // so that only FUSE's own check can stop another user
  const asNobody = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "stat", "-c", "%s", disk.file]);
  expect(asNobody.stdout.trim()).toBe(String(SIZE));
  await disk.unmount();

  const closed = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`]);
  chmodSync(closed.dir, 0o755);
  const denied = run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "stat", closed.file]);
  expect(denied.code).not.toBe(0);
  expect(denied.stderr).toMatch(/Permission denied/);
  await closed.unmount();
});

test("the page cache serves repeated reads; --directIO sends every read to the store", async () => {
  const reads = (stats: string) => Number(/^reads\s+(\d+)/m.exec(readFileSync(stats, "utf8"))![1]);
  for (const [args, expected] of [[[], 1], [["--directIO"], 3]] as const) {
    // No block cache, so that the store's counter sees what the kernel asks for.
    const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "--blockCacheSize=0", ...args]);
    pwrite(disk.file, 0, pattern(BS, 5));
    writeFileSync("/proc/sys/vm/drop_caches", "1");
    for (let i = 0; i < 3; i++) expect(pread(disk.file, 0, BS)).toEqual(pattern(BS, 5));
    expect(reads(disk.stats)).toBe(expected);
    await disk.unmount();
  }
});

test("a write-only open goes around the page cache; every reader still sees every write", async () => {
  const reads = (stats: string) => Number(/^reads\s+(\d+)/m.exec(readFileSync(stats, "utf8"))![1]);
  const openWrite = (path: string, offset: number, data: Uint8Array, flags: number) => {
    const fd = openSync(path, flags);
    try {
      expect(writeSync(fd, data, 0, data.length, offset)).toBe(data.length);
    } finally {
      closeSync(fd);
    }
  };
  const readAt = (fd: number, length: number) => {
    const buf = new Uint8Array(length);
    expect(readSync(fd, buf, 0, length, 0)).toBe(length);
    return buf;
  };
  // No block cache: the store's read counter sees every READ the kernel sends.
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "--blockCacheSize=0"]);
  // Written read-write, the block stays in the page cache: reading it asks the store nothing.
  openWrite(disk.file, 0, pattern(BS, 1), constants.O_RDWR);
  let before = reads(disk.stats);
  expect(pread(disk.file, 0, BS)).toEqual(pattern(BS, 1));
  expect(reads(disk.stats)).toBe(before);
  // Written write-only (as dd does), it is not cached: the next reader gets it from the store, once.
  openWrite(disk.file, 0, pattern(BS, 2), constants.O_WRONLY);
  before = reads(disk.stats);
  expect(pread(disk.file, 0, BS)).toEqual(pattern(BS, 2));
  expect(pread(disk.file, 0, BS)).toEqual(pattern(BS, 2));
  expect(reads(disk.stats)).toBe(before + 1);
  // A reader open across a write-only writer sees the write.
  const reader = openSync(disk.file, constants.O_RDONLY);
  try {
    expect(readAt(reader, BS)).toEqual(pattern(BS, 2));
    openWrite(disk.file, 0, pattern(BS, 3), constants.O_WRONLY);
    expect(readAt(reader, BS)).toEqual(pattern(BS, 3));
  } finally {
    closeSync(reader);
  }
  // A reader opened while a write-only writer is open sees its writes too.
  const writer = openSync(disk.file, constants.O_WRONLY);
  try {
    const late = openSync(disk.file, constants.O_RDONLY);
    try {
      expect(readAt(late, BS)).toEqual(pattern(BS, 3));
      expect(writeSync(writer, pattern(BS, 4), 0, BS, 0)).toBe(BS);
      expect(readAt(late, BS)).toEqual(pattern(BS, 4));
    } finally {
      closeSync(late);
    }
  } finally {
    closeSync(writer);
  }
  expect(pread(disk.file, 0, BS)).toEqual(pattern(BS, 4));
  await disk.unmount();
});

test("a sequential read comes as one request per MiB: the mount's kernel read-ahead is raised to max_readahead", async () => {
  const readAheadKb = (mnt: string) => Number(readFileSync(`/sys/class/bdi/${sh(["mountpoint", "-d", mnt]).trim()}/read_ahead_kb`, "utf8"));
  const reads = (stats: string) => Number(/^reads\s+(\d+)/m.exec(readFileSync(stats, "utf8"))![1]);
  // [extra flags, read_ahead_kb, store reads for 4 MiB]: the default is 1 MiB; the kernel's own default is 128 KiB.
  for (const [args, kb, expected] of [[[], 1024, 4], [["-o", "max_readahead=131072"], 128, 32]] as const) {
    const disk = await mountDisk(["--blockSize=1M", "--size=4M", "--blockCacheSize=0", ...args]);
    expect(readAheadKb(disk.mnt)).toBe(kb);
    for (let i = 0; i < 4; i++) pwrite(disk.file, i << 20, pattern(1 << 20, i));
    writeFileSync("/proc/sys/vm/drop_caches", "1");
    const before = reads(disk.stats);
    expect((await runAsync(["dd", `if=${disk.file}`, "of=/dev/null", "bs=1M"])).code).toBe(0);
    expect(reads(disk.stats) - before).toBe(expected);
    await disk.unmount();
  }
});

test("from /etc/fstab: mount -t fuse.s3backer, and mount -t fuse with 'program#source', hand -o options to s3backer", async () => {
  const dir = tempDir("fstab");
  // mount.fuse looks for `s3backer` on its own PATH, where /usr/local/bin comes before /usr/bin
  // (Debian's s3backer): put ours there for this test only.
  const link = "/usr/local/bin/s3backer";
  const linked = !existsSync(link);
  if (linked) sh(["ln", "-s", join(import.meta.dir, "../../dist/s3backer"), link]);
  try {
    const [blocks, mnt, pid] = [join(dir, "b"), join(dir, "m"), join(dir, "pid")];
    sh(["mkdir", "-p", blocks, mnt]);
    for (const [type, source] of [["fuse.s3backer", blocks], ["fuse", `${join(import.meta.dir, "../../dist/s3backer")}#${blocks}`]]) {
      const r = run(["mount", "-t", type!, "-o", `test,size=1M,blockSize=64k,pidFile=${pid},_netdev,nofail`, source!, mnt]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(statSync(join(mnt, "file")).size).toBe(1 << 20);
      // Ours, not Debian's: only ours names the source "test:DIR" (and knows pidFile).
      const line = readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.includes(` ${mnt} `));
      expect(line).toContain(` - fuse.s3backer test:${blocks} `);
      sh(["umount", mnt]);
      await waitFor("exit", () => !existsSync(pid));
    }
  } finally {
    if (linked) rmSync(link, { force: true });
    if (isMounted(join(dir, "m"))) run(["umount", "-l", join(dir, "m")]);
    rmSync(dir, { recursive: true, force: true });
  }
});
