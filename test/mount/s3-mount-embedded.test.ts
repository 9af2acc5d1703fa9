/**
 * Real mounts against the embedded S3 server alone, whose counters and faults they need: encryption
 * end to end, absent blocks, credentials from the environment, failing and slow servers, interrupts.
 * Everything here is async: the server lives in this process and must keep answering.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFile } from "node:fs/promises";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { BINARY, ddWrite, isMounted, mountWith, pattern, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { freshBucket, peerArgs, rawClient } from "../helpers/s3.ts";
import { embeddedSuite } from "../helpers/suite.ts";

const { server, peer: embedded, workDir } = embeddedSuite();
const PASSWORD_FILE = join(tempDir("password"), "pw");
writeFileSync(PASSWORD_FILE, "correct horse battery staple\n");
afterAll(() => rmSync(dirname(PASSWORD_FILE), { recursive: true, force: true }));

describe("embedded server only", () => {
  test("--encrypt with a cache file: cached blocks are checked against the decrypted objects on reload and kept", async () => {
    const bucket = await freshBucket(embedded, "enccache");
    const dir = workDir("enccache");
    const args = [...peerArgs(embedded), "--encrypt", `--passwordFile=${PASSWORD_FILE}`, `--blockCacheFile=${join(dir, "cache")}`];
    let disk = await mountWith([...args, "--size=1M", "--blockSize=64k", bucket], dir, true);
    await ddWrite(disk.file, 0, pattern(3 * 65536, 6));
    await disk.unmount();
    disk = await mountWith([...args, bucket], dir, true);
    // Checked in the background, once the mount answers.
    await waitFor("the check of the cache file", () => /cache file: [34] clean blocks verified\n/.test(readFileSync(join(dir, "log"), "utf8")));
    await disk.unmount();
  });

  test("--encrypt through the mount: a block changed in the bucket reads as EIO (logged with its number), the rest as written", async () => {
    const bucket = await freshBucket(embedded, "tamper");
    const dir = workDir("tamper");
    const enc = ["--encrypt", `--passwordFile=${PASSWORD_FILE}`];
    let disk = await mountWith([...peerArgs(embedded), ...enc, "--size=1M", "--blockSize=64k", bucket], dir, true);
    await ddWrite(disk.file, 0, pattern(4 * 65536, 4));
    await disk.unmount();
    const key = `${bucket}/00000002`;
    const object = await rawClient(embedded)("GET", key);
    object.body[object.body.length - 20]! ^= 1;
    const headers = { "content-encoding": object.headers.get("content-encoding")!, "x-amz-meta-s3backer-hmac": object.headers.get("x-amz-meta-s3backer-hmac")! };
    expect((await rawClient(embedded)("PUT", key, { body: object.body, headers })).status).toBe(200);
    disk = await mountWith([...peerArgs(embedded), ...enc, "--blockCacheSize=0", bucket], dir, true);
    const bad = await runAsync(["dd", `if=${disk.file}`, "of=/dev/null", "bs=64k", "skip=2", "count=1", "iflag=direct", "status=none"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/Input\/output error/);
    const good = await runAsync(["dd", `if=${disk.file}`, `of=${join(dir, "out")}`, "bs=64k", "skip=3", "count=1", "iflag=direct", "status=none"]);
    expect(good.code).toBe(0);
    expect(new Uint8Array(await readFile(join(dir, "out")))).toEqual(pattern(4 * 65536, 4).subarray(3 * 65536));
    await disk.unmount();
    expect(await readFile(join(dir, "log"), "utf8")).toMatch(/block 2 refused: its signature does not verify/);
  });

  test("--encrypt: a wrong password or a missing --encrypt is refused at start-up, before anything is written", async () => {
    const bucket = await freshBucket(embedded, "enc");
    const dir = workDir("enc");
    let disk = await mountWith([...peerArgs(embedded), "--size=1M", "--blockSize=64k", "--encrypt", `--passwordFile=${PASSWORD_FILE}`, "--debug", "--debug-http", bucket], dir, true);
    await ddWrite(disk.file, 65536, pattern(65536, 3));
    const stats = await readFile(disk.stats, "utf8");
    await disk.unmount();
    // The password is in no log line and no counter, even with every debug flag on.
    const log = await readFile(join(dir, "log"), "utf8");
    expect(log).toMatch(/PUT/);
    for (const text of [log, stats]) expect(text).not.toMatch(/horse|battery/);
    server.counters.reset();
    const wrong = await runAsync([BINARY, ...peerArgs(embedded), "--encrypt", "--password=guess", bucket, disk.mnt]);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/warning: --password is visible to other users/);
    expect(wrong.stderr).toMatch(/s3backer: cannot mount: block 0 refused: its signature does not verify \(wrong password/);
    expect(wrong.stderr).not.toMatch(/guess/);
    const clear = await runAsync([BINARY, ...peerArgs(embedded), bucket, disk.mnt]);
    expect(clear.code).toBe(1);
    expect(clear.stderr).toBe("s3backer: the disk is encrypted (block 0 is 'deflate, encrypt-AES-128-CBC'): mount it with --encrypt and its password\n");
    expect(server.counters.requests.PUT).toBe(0);
    expect(server.counters.requests.DELETE).toBe(0);
    expect(isMounted(disk.mnt)).toBe(false);

    // Asked on a terminal (echo off), then handed to the background process.
    const prompt = await runAsync(["sh", "-c", `(sleep 1; echo 'correct horse battery staple') | script -qec '${[BINARY, ...peerArgs(embedded), "--encrypt", `--pidFile=${join(dir, "pid")}`, bucket, disk.mnt].join(" ")}' /dev/null`]);
    try {
      expect(prompt.stdout).toMatch(/Password:/);
      expect(prompt.stdout).not.toMatch(/battery/);
      await waitFor("the mount", () => isMounted(disk.mnt));
      expect(new Uint8Array((await readFile(disk.file)).subarray(65536, 131072))).toEqual(pattern(65536, 3));
      expect(await readFile(disk.stats, "utf8")).toMatch(/cipher\s+AES-128-CBC \(webcrypto\)/);
    } finally {
      await runAsync(["umount", "-l", disk.mnt]);
      await waitFor("exit", () => !existsSync(join(dir, "pid")));
    }
  });

  test("--listBlocks: reading absent blocks and writing zeros to them costs no request", async () => {
    const bucket = await freshBucket(embedded, "list");
    const dir = workDir("list");
    let disk = await mountWith([...peerArgs(embedded), "--size=4M", "--blockSize=64k", bucket], dir, true);
    await ddWrite(disk.file, 65536, pattern(65536, 5));
    await disk.unmount();
    disk = await mountWith([...peerArgs(embedded), "--listBlocks", "--directIO", bucket], dir, true);
    await waitFor("the listing", async () => /listing\s+done/.test(await readFile(disk.stats, "utf8")));
    server.counters.reset();
    const whole = await readFile(disk.file);
    expect(new Uint8Array(whole.subarray(65536, 131072))).toEqual(pattern(65536, 5));
    // 64 blocks: block 1, and block 0 which is stored (zeros) to keep the sizes; the rest cost nothing.
    expect(server.counters.requests.GET).toBe(2);
    expect(await readFile(disk.stats, "utf8")).toMatch(/zero reads avoided\s+\d+/);
    await disk.unmount();
  });

  test("credentials and endpoint from the AWS environment variables alone", async () => {
    const bucket = await freshBucket(embedded, "env");
    const dir = workDir("env");
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    const env = { PATH: process.env.PATH!, HOME: dir, AWS_ACCESS_KEY_ID: embedded.accessKey, AWS_SECRET_ACCESS_KEY: embedded.secretKey, AWS_ENDPOINT_URL: embedded.url, AWS_REGION: "us-east-1" };
    const r = await runAsync([BINARY, "--size=1M", `--pidFile=${join(dir, "pid")}`, bucket, mnt], { env });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(isMounted(mnt)).toBe(true);
    await runAsync(["umount", mnt]);
    await waitFor("exit", () => !existsSync(join(dir, "pid")));
  });

  test("a server that fails half the time: writes and reads through the mount still come back exact", async () => {
    const bucket = await freshBucket(embedded, "flaky");
    const dir = workDir("flaky");
    const disk = await mountWith([...peerArgs(embedded), "--size=4M", "--blockSize=64k", "--initialRetryPause=5", bucket], dir, true);
    server.setFaults({ errorRate: 0.3, dropRate: 0.1, corruptRate: 0.1, keyPattern: /^[0-9a-f]{8}$/ });
    const data = pattern(4 << 20, 9);
    await ddWrite(disk.file, 0, data).catch(async (e) => {
      console.log(await readFile(join(dir, "log"), "utf8"));
      throw e;
    });
    await runAsync(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"]);
    expect(new Uint8Array(await readFile(disk.file))).toEqual(data);
    expect(server.counters.injectedErrors).toBeGreaterThan(0);
    server.reset();
    await disk.unmount();
  });

  test("a server that always fails: the read gets EIO, never data", async () => {
    const bucket = await freshBucket(embedded, "dead");
    const dir = workDir("dead");
    // No block cache: the read must go to the server.
    const disk = await mountWith([...peerArgs(embedded), "--size=1M", "--blockSize=64k", "--maxRetryPause=100", "--initialRetryPause=10", "--blockCacheSize=0", bucket], dir, true);
    await ddWrite(disk.file, 0, pattern(65536, 3));
    await runAsync(["sh", "-c", "echo 1 > /proc/sys/vm/drop_caches"]);
    server.setFaults({ errorRate: 1, keyPattern: /^[0-9a-f]{8}$/ });
    const r = await runAsync(["dd", `if=${disk.file}`, "of=/dev/null", "bs=64k", "count=1"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Input\/output error/);
    server.reset();
    expect(await readFile(join(dir, "log"), "utf8")).toMatch(/gave up after \d+ attempts/);
    await disk.unmount();
  });
});

describe("embedded server only, more", () => {
  test("--noAutoDetect ignores the disk's sizes; --md5CacheTime=0 needs every block in the MD5 cache", async () => {
    const bucket = await freshBucket(embedded, "noauto");
    const dir = workDir("noauto");
    let disk = await mountWith([...peerArgs(embedded), "--size=1M", "--blockSize=4k", bucket], dir, true);
    await disk.unmount();
    const noSize = await runAsync([BINARY, ...peerArgs(embedded), "--noAutoDetect", bucket, disk.mnt]);
    expect(noSize.code).toBe(1);
    expect(noSize.stderr).toMatch(/--size is required/);
    disk = await mountWith([...peerArgs(embedded), "--noAutoDetect", "--size=2M", "--blockSize=4k", bucket], dir, true);
    expect((await readFile(disk.file)).length).toBe(2 << 20); // no mismatch error: the metadata was not read
    await disk.unmount();
    const forever = await runAsync([BINARY, ...peerArgs(embedded), "--md5CacheTime=0", "--md5CacheSize=10", bucket, disk.mnt]);
    expect(forever.code).toBe(1);
    expect(forever.stderr).toMatch(/--md5CacheTime=0 \(forever\) needs --md5CacheSize of at least the 256 blocks/);
    disk = await mountWith([...peerArgs(embedded), "--md5CacheTime=0", "--md5CacheSize=256", bucket], dir, true);
    await disk.unmount();
  });

  test("an fsync interrupted while the server is slow returns at once (FUSE INTERRUPT)", async () => {
    const bucket = await freshBucket(embedded, "intr");
    const dir = workDir("intr");
    const disk = await mountWith([...peerArgs(embedded), "--size=1M", "--blockSize=64k", "--md5CacheSize=0", bucket], dir, true);
    server.setFaults({ latencyMs: 4000, keyPattern: /^[0-9a-f]{8}$/ });
    // The write lands in the cache; the fsync then waits for a PUT that takes 4 s, until a signal
    // (whose handler raises) interrupts it: the kernel sends INTERRUPT and we answer EINTR.
    const script = [
      "import os, signal, sys",
      "def stop(s, f): raise KeyboardInterrupt",
      "signal.signal(signal.SIGUSR1, stop)",
      `fd = os.open(${JSON.stringify(disk.file)}, os.O_WRONLY)`,
      "os.pwrite(fd, os.urandom(65536), 3 * 65536)",
      "print('syncing', flush=True)",
      "try:\n  os.fsync(fd)\nexcept KeyboardInterrupt:\n  print('interrupted', flush=True)\n  sys.exit(42)",
    ].join("\n");
    const writer = Bun.spawn(["python3", "-c", script], { stdout: "pipe", stderr: "pipe" });
    const reader = writer.stdout.getReader();
    await reader.read(); // "syncing"
    await Bun.sleep(300);
    const started = performance.now();
    writer.kill("SIGUSR1");
    let out = "";
    let seenAfter = Infinity;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
      if (out.includes("interrupted")) {
        seenAfter = performance.now() - started;
        break;
      }
    }
    // (Its exit then waits for the FLUSH of close(), which does wait for the PUT.)
    expect(out).toContain("interrupted");
    expect(seenAfter).toBeLessThan(2000); // not the 4 s the server takes
    expect(await writer.exited).toBe(42);
    server.reset();
    await disk.unmount(); // the block is stored all the same
  });

  test("O_DIRECT writers run side by side: one waiting for a block from a slow server holds up no other", async () => {
    const bucket = await freshBucket(embedded, "odirect");
    const dir = workDir("odirect");
    const args = [...peerArgs(embedded), "--size=1M", "--blockSize=64k", "--md5CacheSize=0", bucket];
    let disk = await mountWith(args, dir, true);
    await ddWrite(disk.file, 0, pattern(64 * 1024, 7)); // block 0 is stored, then not cached after the remount
    await disk.unmount();
    disk = await mountWith(args, dir, true);
    server.setFaults({ latencyMs: 2000 });
    // Two read-write O_DIRECT handles (as fio and databases open a disk): a 4 KiB write into block
    // 0, which must fetch the block first (2 s), then a whole-block write into block 5, which needs
    // nothing from the server. Each prints how long its write took, in ms.
    const script = [
      "import mmap, os, threading, time",
      "def write(offset, length, name):",
      `  fd = os.open(${JSON.stringify(disk.file)}, os.O_RDWR | os.O_DIRECT)`,
      "  buf = mmap.mmap(-1, length)",
      "  buf.write(os.urandom(length))",
      "  t = time.monotonic()",
      "  os.pwrite(fd, buf, offset)",
      "  print(name, round((time.monotonic() - t) * 1000), flush=True)",
      "slow = threading.Thread(target=write, args=(8192, 4096, 'partial'))",
      "slow.start()",
      "time.sleep(0.2)",
      "write(5 * 65536, 65536, 'whole')",
      "slow.join()",
    ].join("\n");
    const r = await runAsync(["python3", "-c", script]);
    server.reset();
    expect(r.stderr).toBe("");
    const ms = Object.fromEntries(r.stdout.trim().split("\n").map((l) => l.split(" ")).map(([k, v]) => [k, Number(v)]));
    expect(ms.partial).toBeGreaterThanOrEqual(1500);
    expect(ms.whole).toBeLessThan(1000);
    await disk.unmount();
  });

  test("in the background without --logFile the log goes to the system log", async () => {
    const bucket = await freshBucket(embedded, "syslog");
    const dir = workDir("syslog");
    const mnt = join(dir, "mnt");
    mkdirSync(mnt);
    const r = await runAsync([BINARY, ...peerArgs(embedded), "--size=1M", `--pidFile=${join(dir, "pid")}`, bucket, mnt]);
    expect(r.code).toBe(0);
    expect((await readFile(join(mnt, "file"))).length).toBe(1 << 20);
    await runAsync(["umount", mnt]);
    await waitFor("exit", () => !existsSync(join(dir, "pid")));
  });
});
