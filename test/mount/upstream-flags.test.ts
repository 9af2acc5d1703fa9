/**
 * A drop-in for the original's 2.x command lines: every flag of upstream master's option table
 * (s3b_config.c) is known here, each flag with a behaviour is tested (this file, or the file named
 * in COVERED), and config files are read as upstream reads them.
 */
import { afterAll, afterEach, expect, test } from "bun:test";
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "../../src/cli/parse.ts";
import { FLAG_BY_NAME } from "../../src/cli/flags.ts";
import { buildConfig } from "../../src/config/build-config.ts";
import { S3Server } from "../../src/s3server/s3-server.ts";
import { BINARY, cleanupDisks, mountDisk, mountWith, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { ACCESS, SECRET } from "../helpers/s3.ts";

/** Upstream master's option table, in its order (the NBD and config-file flags are parsed apart). */
const UPSTREAM = [
  "accessFile", "accessId", "accessKey", "accessKeyEnv", "accessType", "accessEC2IAM", "accessEC2IAM-IMDSv2", "authVersion",
  "listBlocks", "listBlocksThreads", "baseURL", "region", "sse", "sse-key-id", "blockCacheSize", "blockCacheSync",
  "blockCacheThreads", "blockCacheTimeout", "blockCacheWriteDelay", "blockCacheMaxDirty", "blockCacheRecoverDirtyBlocks",
  "readAhead", "readAheadTrigger", "blockCacheNumProtected", "blockCacheFile", "blockCacheNoVerify", "blockCacheFileAdvise",
  "blockSize", "maxUploadSpeed", "maxDownloadSpeed", "md5CacheSize", "md5CacheTime", "debug", "debug-http", "http11",
  "noCurlCache", "quiet", "erase", "reset-mounted-flag", "vhost", "no-vhost", "fileMode", "filename", "force", "noAutoDetect",
  "initialRetryPause", "maxRetryPause", "minWriteDelay", "blockHashPrefix", "prefix", "defaultContentEncoding", "readOnly",
  "size", "statsFilename", "statsFileMirror", "statsFileMirrorInterval", "storageClass", "ssl", "cacert", "insecure",
  "compress", "compress-level", "encrypt", "keyLength", "password", "passwordFile", "test", "test-errors", "test-delays",
  "test-discard", "timeout", "directIO", "sharedDiskMode", "ipTOS", "configFile", "nbd", "nbd-flag", "nbd-param",
];

/** Where each flag is tested; the flags accepted as no-ops are tested to be accepted. */
const COVERED: Record<string, string> = {
  accessFile: "unit/credentials:accessFile", accessId: "mount/s3-mount",
  accessKey: "unit/credentials:accessKey", accessKeyEnv: "mount/upstream-flags",
  accessType: "mount/s3-options", accessEC2IAM: "component/credentials:accessEC2IAM",
  "accessEC2IAM-IMDSv2": "mount/upstream-flags", authVersion: "component/cli", listBlocks: "mount/s3-mount-embedded",
  listBlocksThreads: "mount/upstream-flags", baseURL: "mount/s3-mount", region: "mount/upstream-flags",
  sse: "mount/s3-options", "sse-key-id": "mount/s3-options", blockCacheSize: "unit/block-cache:size: 4",
  blockCacheSync: "unit/block-cache", blockCacheThreads: "unit/block-cache:threads: 2",
  blockCacheTimeout: "unit/block-cache", blockCacheWriteDelay: "unit/block-cache:writeDelayMs: 60_000",
  blockCacheMaxDirty: "unit/block-cache", blockCacheRecoverDirtyBlocks: "mount/cache-file",
  readAhead: "unit/block-cache:readAhead: 4", readAheadTrigger: "unit/block-cache:readAheadTrigger: 2",
  blockCacheNumProtected: "unit/block-cache", blockCacheFile: "mount/s3-mount-embedded",
  blockCacheNoVerify: "mount/upstream-flags", blockCacheFileAdvise: "mount/upstream-flags",
  blockSize: "mount/consistency-guard", maxUploadSpeed: "component/s3-options",
  maxDownloadSpeed: "component/s3-options", md5CacheSize: "component/consistency-guard:cacheSize: 2",
  md5CacheTime: "component/consistency-guard", debug: "mount/s3-mount-embedded", "debug-http": "mount/s3-mount-embedded",
  http11: "mount/upstream-flags", noCurlCache: "mount/upstream-flags", quiet: "component/cli",
  erase: "mount/s3-mount", "reset-mounted-flag": "mount/s3-mount", vhost: "unit/s3-client",
  "no-vhost": "unit/flag-values", fileMode: "mount/mount", filename: "mount/fio", force: "mount/s3-mount",
  noAutoDetect: "mount/s3-mount-embedded", initialRetryPause: "mount/consistency-guard",
  maxRetryPause: "component/consistency-guard", minWriteDelay: "component/consistency-guard",
  blockHashPrefix: "component/s3-store:hashPrefix: true", prefix: "mount/s3-mount",
  defaultContentEncoding: "component/codec", readOnly: "mount/s3-mount", size: "mount/consistency-guard",
  statsFilename: "mount/mount", statsFileMirror: "mount/nbd", statsFileMirrorInterval: "mount/nbd",
  storageClass: "mount/s3-options", ssl: "mount/s3-options", cacert: "mount/s3-options",
  insecure: "mount/s3-options", compress: "mount/s3-mount", "compress-level": "component/cli",
  encrypt: "mount/s3-mount", keyLength: "unit/codec-vectors", password: "mount/s3-mount",
  passwordFile: "mount/s3-mount", test: "mount/mount", "test-errors": "mount/upstream-flags",
  "test-delays": "mount/upstream-flags", "test-discard": "mount/upstream-flags", timeout: "component/s3-store",
  directIO: "mount/s3-mount-embedded", sharedDiskMode: "mount/mount-flag", ipTOS: "component/cli",
  configFile: "mount/upstream-flags", nbd: "mount/nbd", "nbd-flag": "mount/nbd", "nbd-param": "mount/nbd",
};

const dirs: string[] = [];
afterEach(async () => {
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const work = (tag: string) => {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
};

test("every flag of upstream master's option table is one of ours, and each is tested somewhere", () => {
  for (const name of UPSTREAM) {
    const flag = FLAG_BY_NAME.get(name);
    expect(flag, `--${name}`).toBeDefined();
    expect(COVERED[name], `--${name} has no test listed`).toBeDefined();
    // "file" names the flag itself; "file:text", the layer option the flag becomes.
    const [where, token] = COVERED[name]!.split(/:(.*)/) as [string, string | undefined];
    const text = readFileSync(join(import.meta.dir, "..", `${where}.test.ts`), "utf8");
    const mentioned = token !== undefined ? text.includes(token) : text.includes(`--${name}`) || text.includes(`"${name}"`);
    expect(mentioned, `--${name} in test/${where}.test.ts`).toBe(true);
  }
});

test("the binary takes every one of them (each given to it, with --help so nothing else runs)", async () => {
  const results = await Promise.all(
    UPSTREAM.map(async (name) => {
      const flag = FLAG_BY_NAME.get(name)!;
      const arg = name === "configFile" ? "--configFile=/dev/null" : flag.value && !flag.optionalValue ? `--${name}=1` : `--${name}`;
      const r = await runAsync([BINARY, arg, "--help"]);
      return { arg, code: r.code, stderr: r.stderr };
    }),
  );
  expect(results.filter((r) => r.code !== 0 || r.stderr !== "")).toEqual([]);
});

test("--configFile / -F / -o configFile=: one argument a line, comments and blanks skipped, nested, in place", () => {
  const dir = work("conf");
  writeFileSync(join(dir, "inner"), "# sizes\n  --blockSize=8k  \n\n--size=1M\n");
  writeFileSync(join(dir, "outer"), `--test\n--configFile=${join(dir, "inner")}\n--prefix=with space\n`);
  const args = parseArgs(["-F", join(dir, "outer"), "--size=2M", "blocks", "mnt"]);
  expect(args.values.get("blockSize")?.value).toBe("8k");
  expect(args.values.get("prefix")?.value).toBe("with space");
  expect(args.values.get("size")?.value).toBe("2M"); // the later flag wins: the file stands where -F stood
  expect(args.positionals).toEqual(["blocks", "mnt"]);
  const viaO = parseArgs(["-o", `allow_other,configFile=${join(dir, "inner")},ro`, "--test", "b", "m"]);
  expect(viaO.values.get("blockSize")?.value).toBe("8k");
  expect(viaO.mountOptions.map((o) => o.option)).toEqual(["allow_other", "ro"]);
  writeFileSync(join(dir, "loop"), `-F\n${join(dir, "loop")}\n`);
  expect(() => parseArgs([`--configFile=${join(dir, "loop")}`])).toThrow(/more than 100 files/);
});

test("--compress as upstream reads it: bare is deflate, a number is a deflate level, zstd with --compress-level", () => {
  const config = (...flags: string[]) => buildConfig(parseArgs([...flags, "--size=1M", "bucket", "mnt"]), { uid: 0, gid: 0 }, {}).codec.compression;
  expect(config("--compress")).toEqual({ algorithm: "deflate", level: 6 });
  expect(config("--compress=9")).toEqual({ algorithm: "deflate", level: 9 });
  expect(config("--compress=zstd")).toEqual({ algorithm: "zstd", level: 3 });
  expect(config("--compress=ZSTD", "--compress-level=19")).toEqual({ algorithm: "zstd", level: 19 });
  expect(config("--compress=zstd:-5")).toEqual({ algorithm: "zstd", level: -5 });
  expect(config("--compress=deflate", "--compress-level=1")).toEqual({ algorithm: "deflate", level: 1 });
  expect(config()).toBeUndefined();
});

test("--accessKeyEnv takes the secret from the variable; --accessEC2IAM-IMDSv2 and --http11 are accepted", () => {
  const c = buildConfig(parseArgs(["--accessId=AK", "--accessKeyEnv=MY_SECRET", "--accessEC2IAM-IMDSv2", "--http11", "--size=1M", "bucket", "mnt"]), { uid: 0, gid: 0 }, { MY_SECRET: "s3cr3t" });
  expect([c.s3.accessId, c.s3.accessKey]).toEqual(["AK", "s3cr3t"]);
});

test("--region signs for it and picks its endpoint; --listBlocksThreads sets the parallel listings", () => {
  const c = buildConfig(parseArgs(["--region=eu-west-3", "--listBlocksThreads=3", "--size=1M", "bucket", "mnt"]), { uid: 0, gid: 0 }, {});
  expect([c.s3.region, c.s3.baseURL, c.s3.listBlocksThreads]).toEqual(["eu-west-3", "https://s3.eu-west-3.amazonaws.com/", 3]);
});

test("--test-discard: nothing is stored, every block reads as zeros; --test-errors fails some I/O with EIO; --test-delays slows it", async () => {
  const discard = await mountDisk(["--size=1M", "--blockSize=4k", "--test-discard", "--blockCacheSize=0"]);
  expect((await runAsync(["dd", "if=/dev/urandom", `of=${discard.file}`, "bs=64k", "count=4", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  expect(readFileSync(discard.file).every((b) => b === 0)).toBe(true);
  expect(readdirSync(discard.blocks).filter((f) => /^[0-9a-f]{8}$/.test(f))).toEqual([]);
  expect(readFileSync(discard.stats, "utf8")).toMatch(/writes discarded\s+\d+/);
  await discard.unmount();

  const errors = await mountDisk(["--size=4M", "--blockSize=4k", "--test-errors", "--blockCacheSize=0", "--directIO"]);
  expect((await runAsync(["dd", "if=/dev/urandom", `of=${errors.file}`, "bs=4k", "count=1024", "conv=notrunc", "oflag=direct", "status=none"])).code).not.toBe(0);
  expect(readFileSync(errors.stats, "utf8")).toMatch(/errors injected\s+[1-9]/);
  await errors.unmount();

  const delays = await mountDisk(["--size=1M", "--blockSize=4k", "--test-delays", "--blockCacheSize=0", "--directIO"]);
  const started = performance.now();
  expect((await runAsync(["dd", `if=${delays.file}`, "of=/dev/null", "bs=4k", "count=20", "iflag=direct", "status=none"])).code).toBe(0);
  expect(performance.now() - started).toBeGreaterThan(20 * 20); // 20 reads at 0-200 ms each: ~2 s
  expect(readFileSync(delays.stats, "utf8")).toMatch(/delays injected\s+[1-9]/);
  await delays.unmount();
});

test("--blockCacheFileAdvise: the cache file's pages leave the page cache after each write", async () => {
  const resident = async (path: string) => Number((await runAsync(["fincore", "-nb", "-o", "RES", path])).stdout.trim());
  const dir = work("advise");
  for (const advise of [false, true]) {
    const cache = join(dir, `cache-${advise}`);
    const disk = await mountDisk(["--size=8M", "--blockSize=64k", `--blockCacheFile=${cache}`, ...(advise ? ["--blockCacheFileAdvise"] : [])], { dir: join(dir, String(advise)) });
    expect((await runAsync(["dd", "if=/dev/urandom", `of=${disk.file}`, "bs=64k", "count=64", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
    await Bun.sleep(2500); // the advice is renewed every second, once the pages are written out
    const bytes = await resident(cache);
    if (advise) expect(bytes).toBeLessThan(512 * 1024); // the records' pages at most
    else expect(bytes).toBeGreaterThan(4 * 2 ** 20);
    await disk.unmount();
  }
});

test("--blockCacheNoVerify: a reloaded cache file is trusted without a request per block", async () => {
  const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } }, buckets: ["noverify"] });
  server.start();
  try {
    const dir = work("noverify");
    const cache = join(dir, "cache");
    const args = [`--baseURL=${server.url}`, `--accessId=${ACCESS}`, `--accessKey=${SECRET}`, "--size=1M", "--blockSize=4k", `--blockCacheFile=${cache}`];
    const first = await mountWith([...args, "noverify"], join(dir, "a"), true);
    expect((await runAsync(["dd", "if=/dev/urandom", `of=${first.file}`, "bs=4k", "count=32", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
    await first.unmount();
    for (const [noVerify, most] of [[false, Infinity], [true, 8]] as const) {
      server.counters.reset();
      const again = await mountWith([...args, ...(noVerify ? ["--blockCacheNoVerify"] : []), "noverify"], join(dir, `b${noVerify}`), true);
      // HEADs and GETs: block 0's sizes and the disk's manifest at start; a check adds one per block.
      const readsNow = () => server.counters.requests.HEAD + server.counters.requests.GET;
      // The check runs in the background once the mount answers (its requests are counted as they come, among others).
      if (!noVerify) await waitFor("the check of 32 blocks", () => readsNow() >= 32);
      else await Bun.sleep(500);
      const reads = readsNow();
      await again.unmount();
      if (noVerify) expect(reads).toBeLessThan(most);
      else expect(reads).toBeGreaterThanOrEqual(32);
    }
  } finally {
    await server.stop();
  }
});

test("--noCurlCache: every request asks for its connection to be closed", async () => {
  const seen: (string | null)[] = [];
  const server = new S3Server({ credentials: { [ACCESS]: { secretAccessKey: SECRET } }, buckets: ["nocurl"], onRequest: (_m, _k, headers) => seen.push(headers.get("connection")) });
  server.start();
  try {
    const dir = work("nocurl");
    mkdirSync(dir, { recursive: true });
    const args = [`--baseURL=${server.url}`, `--accessId=${ACCESS}`, `--accessKey=${SECRET}`, "--size=1M"];
    const disk = await mountWith([...args, "--noCurlCache", "nocurl"], join(dir, "a"), true);
    await disk.unmount();
    expect(seen.length).toBeGreaterThan(2);
    expect(seen.every((c) => c === "close")).toBe(true);
    seen.length = 0;
    const keep = await mountWith([...args, "nocurl"], join(dir, "b"), true);
    await keep.unmount();
    expect(seen.some((c) => c === "close")).toBe(false);
  } finally {
    await server.stop();
  }
});

afterAll(() => cleanupDisks());
