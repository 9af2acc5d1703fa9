/**
 * Real mounts with what an upstream 2.x user brings: a config file and an fstab line written from
 * upstream's man page mount unchanged; libfuse's -o options are applied; and the zeros upstream
 * allows mean what they mean there, with no busy loop (traced through the code paths they reach).
 */
import { expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Backoff } from "../../src/util/backoff.ts";
import { BINARY, isMounted, mountDisk, mountWith, pattern, run, runAsync, sh, waitFor } from "../helpers/disk.ts";
import { ACCESS, SECRET, freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, peer, workDir: work } = embeddedSuite();

/** Writes 1 MiB at `offset` of the disk's file and reads it back past the kernel's cache. */
async function roundTrip(file: string, offset: number, seed: number): Promise<void> {
  const data = join(work("data"), "d");
  writeFileSync(data, pattern(1 << 20, seed));
  expect((await runAsync(["dd", `if=${data}`, `of=${file}`, "bs=1M", `seek=${offset}`, "oflag=seek_bytes", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  const back = await runAsync(["sh", "-c", `dd if=${file} bs=1M skip=${offset} iflag=skip_bytes,direct count=1 status=none | cmp - ${data}`]);
  expect(back.code).toBe(0);
}

const waitExit = (pid: string) => waitFor("s3backer to exit", () => !existsSync(pid));

test("a config file as upstream's man page describes it (one argument a line, bucket and mount point too) mounts unchanged", async () => {
  const bucket = await freshBucket(peer, "conf");
  const dir = work("conf");
  const [passwd, conf, mnt, pid] = ["passwd", "conf", "mnt", "pid"].map((n) => join(dir, n)) as [string, string, string, string];
  sh(["mkdir", mnt]);
  writeFileSync(passwd, `# accessID:accessKey\n${ACCESS}:${SECRET}\n`, { mode: 0o600 });
  writeFileSync(conf, [
    "# s3backer flags, one a line",
    `--accessFile=${passwd}`,
    `--baseURL=${peer.url}`,
    "  --blockSize=128k  ",
    "--size=16M",
    "--listBlocks",
    "--blockCacheSize=100",
    "--blockCacheThreads=4",
    "--maxUploadSpeed=1G",
    "--maxDownloadSpeed=1G",
    "--timeout=30",
    "--md5CacheSize=0",
    "--md5CacheTime=0",
    "--fileMode=0644",
    "",
    `${bucket}/disks/one`,
    mnt,
  ].join("\n"));
  const r = await runAsync([BINARY, `--pidFile=${pid}`, `--logFile=${join(dir, "log")}`, "-F", conf]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(statSync(join(mnt, "file")).size).toBe(16 << 20);
  expect(statSync(join(mnt, "file")).mode & 0o7777).toBe(0o644);
  await roundTrip(join(mnt, "file"), 3 << 20, 1);
  sh(["umount", mnt]);
  await waitExit(pid);
  const list = new TextDecoder().decode((await rawClient(peer)("GET", `${bucket}?list-type=2`)).body);
  expect(list).toContain("<Key>disks/one/00000018</Key>"); // 3M is block 24 of 128k
});

test("an fstab line with upstream's documented -o options mounts unchanged through mount(8)", async () => {
  const bucket = await freshBucket(peer, "fstab");
  const dir = work("fstab");
  const [passwd, mnt, pid] = ["passwd", "mnt", "pid"].map((n) => join(dir, n)) as [string, string, string];
  sh(["mkdir", mnt]);
  writeFileSync(passwd, `${ACCESS}:${SECRET}\n`, { mode: 0o600 });
  // mount.fuse looks for `s3backer` on its own PATH: ours goes first there for this test only.
  const link = "/usr/local/bin/s3backer";
  const linked = !existsSync(link);
  if (linked) sh(["ln", "-s", BINARY, link]);
  try {
    // The s3backer flags, the FUSE options its man page lists, and the ones it passes by default.
    const options = [
      `accessFile=${passwd}`, `baseURL=${peer.url}`, "blockSize=64k", "size=8M", "listBlocks", "blockCacheSize=50",
      "uid=0", "gid=0", "sync_read", "max_readahead=0",
      "kernel_cache", "use_ino", "entry_timeout=31536000", "negative_timeout=31536000", "attr_timeout=0",
      "default_permissions", "allow_other", "nodev", "nosuid", "_netdev", `pidFile=${pid}`,
    ];
    const r = await runAsync(["mount", "-t", "fuse.s3backer", "-o", options.join(","), `${bucket}/vm`, mnt]);
    expect(r.code).toBe(0);
    // Only the one warning for what has no effect here.
    expect(r.stderr.trimEnd()).toBe("s3backer: warning: -o kernel_cache,use_ino: accepted, no effect here (libfuse options this program has no use for)");
    expect(statSync(join(mnt, "file")).size).toBe(8 << 20);
    await roundTrip(join(mnt, "file"), 1 << 20, 2);
    sh(["umount", mnt]);
    await waitExit(pid);
  } finally {
    if (linked) rmSync(link, { force: true });
    if (isMounted(mnt)) run(["umount", "-l", mnt]);
  }
});

/** The super-options of a mount as /proc/self/mountinfo shows them. */
const superOptions = (mnt: string) => readFileSync("/proc/self/mountinfo", "utf8").split("\n").find((l) => l.includes(` ${mnt} `))!.split(" ").at(-1)!;

test("FUSE -o options are applied: umask, max_read, max_write, negative_timeout, and -s", async () => {
  const disk = await mountDisk(["--size=4M", "-s", "--debug", "-o", "umask=027,max_read=65536,max_write=131072,entry_timeout=0.5,attr_timeout=2,negative_timeout=30"]);
  expect(statSync(disk.file).mode & 0o7777).toBe(0o750); // as libfuse: 0777 & ~umask, every inode
  expect(statSync(disk.stats).mode & 0o7777).toBe(0o750);
  expect(superOptions(disk.mnt)).toContain("max_read=65536");
  const log = () => readFileSync(join(disk.dir, "log"), "utf8");
  expect(log()).toContain("(128 KiB transfers)");
  // A name known absent is remembered: the kernel asks once, and this answer is not an error.
  for (let i = 0; i < 2; i++) expect(existsSync(join(disk.mnt, "missing"))).toBe(false);
  expect(log().match(/op 1 on inode 1: no missing/g)).toBeNull();
  await Promise.all([roundTrip(disk.file, 0, 3), roundTrip(disk.file, 2 << 20, 4)]); // -s: one request at a time, all answered
  await disk.unmount();

  const plain = await mountDisk(["--size=4M", "--debug"]);
  for (let i = 0; i < 2; i++) expect(existsSync(join(plain.mnt, "missing"))).toBe(false);
  expect(readFileSync(join(plain.dir, "log"), "utf8").match(/op 1 on inode 1: no missing/g)?.length).toBe(2);
  await plain.unmount();
});

test("-o allow_root: the kernel lets everyone in (allow_other), and only root and the owner are served", async () => {
  for (const [option, othersServed] of [["allow_other", true], ["allow_root", false]] as const) {
    const dir = work("allow");
    chmodSync(dir, 0o755); // for the other user to reach the mount point
    const disk = await mountDisk(["--size=1M", "-o", option], { dir });
    expect(superOptions(disk.mnt)).toContain("allow_other");
    const nobody = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "stat", disk.file]);
    expect([option, nobody.code === 0]).toEqual([option, othersServed]);
    if (!othersServed) expect(nobody.stderr).toContain("Permission denied");
    expect(statSync(disk.file).size).toBe(1 << 20); // root is served
    await disk.unmount();
  }
});

test("--timeout=0 is no time limit (as curl's): slow answers are waited for, where --timeout=1 gives up", async () => {
  const bucket = await freshBucket(peer, "timeout");
  const dir = work("timeout");
  for (const [timeout, ok] of [["0", true], ["1", false]] as const) {
    const disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockCacheSize=0", `--timeout=${timeout}`, "--initialRetryPause=0", "--maxRetryPause=0", bucket], join(dir, timeout), true);
    server.setFaults({ latencyMs: 1500 });
    const read = await runAsync(["dd", `if=${disk.file}`, "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none"]);
    server.reset();
    expect([timeout, read.code === 0]).toEqual([timeout, ok]);
    await disk.unmount();
  }
});

test("--initialRetryPause=0: the first retry at once, then from 1 ms, within --maxRetryPause (never a loop without pauses)", async () => {
  const backoff = new Backoff(0, 50);
  const pauses: number[] = [];
  while (backoff.canWait() && pauses.length < 1000) {
    pauses.push(backoff.nextMs);
    await backoff.wait();
  }
  expect(pauses).toEqual([0, 1, 2, 4, 8, 16]);

  const bucket = await freshBucket(peer, "retry");
  const disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockCacheSize=0", "--initialRetryPause=0", "--maxRetryPause=200", bucket], work("retry"), true);
  server.setFaults({ errorRate: 1 });
  const started = performance.now();
  const read = await runAsync(["dd", `if=${disk.file}`, "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none"]);
  const injected = server.counters.injectedErrors;
  server.reset();
  expect(read.code).not.toBe(0); // EIO once the 200 ms of pauses are spent
  expect(performance.now() - started).toBeLessThan(5000);
  expect(injected).toBeGreaterThan(3); // the fault fired, and was retried
  expect(injected).toBeLessThan(40); // pauses of 0, 1, 2 ... 64 ms: about 9 attempts, not a loop
  await disk.unmount();
});

test("--listBlocksThreads=0 (accepted without --listBlocks): --erase still lists and deletes every block", async () => {
  const bucket = await freshBucket(peer, "erase0");
  const disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockSize=4k", bucket], work("erase0"), true);
  await roundTrip(disk.file, 0, 5);
  await disk.unmount();
  const r = await runAsync([BINARY, ...peerArgs(peer), "--erase", "--force", "--listBlocksThreads=0", bucket]);
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/erased \d+ blocks/);
  expect(new TextDecoder().decode((await rawClient(peer)("GET", `${bucket}?list-type=2`)).body)).not.toContain("<Key>");
});

test("--readAheadTrigger=0 reads ahead from the first read; --statsFileMirrorInterval=0 rewrites the mirror every 10 ms, not without pause", async () => {
  const bucket = await freshBucket(peer, "trigger");
  const dir = work("trigger");
  const mirror = join(dir, "stats.txt");
  const disk = await mountWith([...peerArgs(peer), "--size=1M", "--blockSize=4k", "--readAheadTrigger=0", `--statsFileMirror=${mirror}`, "--statsFileMirrorInterval=0", bucket], dir, true);
  expect(disk.startup).toContain("--statsFileMirrorInterval=0: rewritten every 10 ms");
  expect((await runAsync(["dd", `if=${disk.file}`, "of=/dev/null", "bs=4k", "count=1", "iflag=direct", "status=none"])).code).toBe(0);
  await waitFor("read-ahead past the first block", () => /read-ahead fetches\s+[1-9]/.test(readFileSync(disk.stats, "utf8")));
  const times = new Set<number>();
  const until = performance.now() + 300;
  while (performance.now() < until) {
    if (existsSync(mirror)) times.add(statSync(mirror).mtimeMs);
    await Bun.sleep(1);
  }
  expect(times.size).toBeGreaterThan(3);
  expect(times.size).toBeLessThan(60); // 300 ms at 10 ms at most: never a rewrite every millisecond
  await disk.unmount();
});
