/** The command line, through the built binary: bad input gets one line and the right exit code. */
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FLAGS } from "../../src/cli/flags.ts";
import { BINARY, run, tempDir } from "../helpers/disk.ts";

const dir = tempDir("cli");
const blocks = join(dir, "blocks");
const mnt = join(dir, "mnt");
mkdirSync(blocks);
mkdirSync(mnt);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ok = ["--test", "--size=1M", blocks, mnt];
// An S3 disk whose server is never reached: each of these fails before any request.
const s3 = ["--size=1M", "--baseURL=http://127.0.0.1:1/", "bucket", mnt];

// [arguments, exit code, what the one line must say]
const BAD: [string[], number, RegExp][] = [
  [["--bogus", ...ok], 2, /unknown flag '--bogus'/],
  [["--test", "--size=1M", blocks], 2, /missing argument/],
  [["--test", "--size=1M", blocks, mnt, "extra"], 2, /too many arguments: extra/],
  [[], 2, /missing argument/],
  [["--blockSize", ...ok.slice(1), "--test"], 2, /value is missing|needs a value/],
  [["--readOnly=yes", ...ok], 2, /--readOnly takes no value/],
  [["--blockSize=3k", ...ok], 1, /power of two/],
  [["--blockSize=256", ...ok], 1, /--blockSize=256: must be from 512 to 2G/],
  [["--blockSize=4G", ...ok], 1, /--blockSize=4G: must be from 512 to 2G/],
  [["--blockSize=lots", ...ok], 1, /not a size/],
  [["--test", "--size=1.5M", blocks, mnt], 1, /not a size/],
  [["--test", "--size=0", blocks, mnt], 1, /greater than zero/],
  [["--test", "--size=6k", "--blockSize=4k", blocks, mnt], 1, /not a multiple of the block size/],
  [["--test", "--size=32T", "--blockSize=512", blocks, mnt], 1, /blocks of 512; at most 4294967296 fit/],
  [["--test", blocks, mnt], 1, /--size is required/],
  [["--filename=a/b", ...ok], 1, /not a valid file name/],
  [["--filename=..", ...ok], 1, /not a valid file name/],
  [["--filename=x", "--statsFilename=x", ...ok], 1, /both 'x'/],
  [["--fileMode=0999", ...ok], 1, /octal/],
  [["--fileMode=rw", ...ok], 1, /octal/],
  [["-o", "uid=abc", ...ok], 1, /uid=<number/],
  [["-o", "frobnicate", ...ok], 2, /unknown mount option '-o frobnicate'/],
  [["--erase", "--readOnly", "--test", "--size=1M", blocks], 2, /cannot be combined/],
  [["--erase", "--listBlocks", "--test", blocks], 2, /cannot be combined/],
  [["--erase", "--metrics=0", "--test", blocks], 2, /--erase cannot be combined with --metrics/],
  [["--erase", "--test", blocks], 1, /asks for confirmation on a terminal: add --force/],
  [["--erase", "--test", blocks, mnt], 2, /too many arguments/],
  [["--size=1M", "--baseURL=ftp://x/", "bucket", mnt], 1, /must be http:\/\/ or https:\/\//],
  [["--size=1M", "--accessType=open", "bucket", mnt], 1, /--accessType=open: expected one of private/],
  [["--size=1M", "--authVersion=aws2", "bucket", mnt], 1, /only aws4/],
  [["--size=1M", "--sse=foo", "bucket", mnt], 1, /--sse=foo: expected AES256 or aws:kms/],
  [["--size=1M", "--timeout=30s", "bucket", mnt], 1, /--timeout=30s: expected a whole number from 0 to/],
  [["--size=1M", "--accessEC2IAM=r", "--accessId=x", "bucket", mnt], 2, /cannot be combined/],
  [["--size=1M", "--ssl", "--baseURL=http://127.0.0.1:1/", "bucket", mnt], 1, /--ssl needs an https/],
  [["--size=1M", "bad_bucket!", mnt], 1, /not a valid bucket name/],
  [["--md5CacheSize=0", "--minWriteDelay=10", ...ok], 1, /--minWriteDelay=10 needs the MD5 cache/],
  [["--md5CacheTime=100", "--minWriteDelay=500", ...ok], 1, /--md5CacheTime=100 must be at least --minWriteDelay=500/],
  [["--blockCacheSync", ...ok], 1, /--blockCacheSync needs --blockCacheWriteDelay=0/],
  [["--blockCacheMemory=lots", "--blockCacheFile=/tmp/x", ...ok], 1, /--blockCacheMemory=lots: not a size/],
  [["--compress=10", ...s3], 1, /--compress=10: expected a deflate level from -1 to 9/],
  [["--compress=lz4", ...s3], 1, /--compress=lz4: expected deflate or zstd/],
  [["--compress=zstd:23", ...s3], 1, /--compress=zstd:23: expected a zstd level from -131072 to 22/],
  [["--compress=zstd", "--compress-level=x", ...s3], 1, /--compress-level=x: expected a zstd level/],
  [["--compress-level=3", ...s3], 1, /--compress-level=3 needs --compress/],
  [["--compress=zstd:3", "--compress-level=3", ...s3], 2, /not both/],
  [["--compress-levl=3", ...s3], 2, /unknown flag '--compress-levl'/],
  [["--test-errors", ...s3], 1, /--test-errors needs --test/],
  [["--test-discard", ...s3], 1, /--test-discard needs --test/],
  [["--sharedDiskMode", "--listBlocks", ...s3], 1, /--sharedDiskMode caches nothing: --listBlocks cannot be combined/],
  [["--sharedDiskMode", "-o", "md5CacheTime=5", ...s3], 1, /-o md5CacheTime=5 cannot be combined/],
  [["--accessKeyEnv=S3B_UNSET_VARIABLE", ...s3], 1, /--accessKeyEnv=S3B_UNSET_VARIABLE: that environment variable is not set/],
  [["--accessKeyEnv=HOME", "--accessKey=x", ...s3], 2, /--accessKey or --accessKeyEnv, not both/],
  [["--ipTOS=lowdelay", ...s3], 1, /--ipTOS=lowdelay: cannot be honoured here: the runtime's HTTP client/],
  [["--ipTOS=300", ...s3], 1, /--ipTOS=300: expected a number from 0 to 255/],
  [["-F", "/nonexistent/conf", ...s3], 1, /-F \/nonexistent\/conf: no such file/],
  [["--configFile=/", ...s3], 1, /--configFile=\/: is a directory/],
  [["-x", ...s3], 2, /unknown flag '-x'/],
  [["--encrypt=DES-CBC", ...s3], 1, /--encrypt=DES-CBC: supported ciphers are AES-128-CBC, AES-192-CBC, AES-256-CBC/],
  [["--encrypt", "--keyLength=8", "--password=x", ...s3], 1, /--keyLength=8: must be 0 or from 16/],
  [["--encrypt=aes-256-cbc", "--keyLength=31", "--password=x", ...s3], 1, /--keyLength=31: must be 0 or from 32 \(the key of AES-256-CBC\) to 64/],
  [["--encrypt=aes-256-cbc", "--keyLength=65", "--password=x", ...s3], 1, /--keyLength=65: expected a whole number from 0 to 64/],
  [["--encrypt", "--password=x", "--passwordFile=/etc/hostname", ...s3], 2, /give --password or --passwordFile, not both/],
  [["--encrypt", "--passwordFile=/nonexistent/pw", ...s3], 1, /--passwordFile=\/nonexistent\/pw: no such file/],
  [["--encrypt", ...s3], 1, /--encrypt needs a password: give --passwordFile=FILE, or run on a terminal/],
  [["--defaultContentEncoding=gzip", ...s3], 1, /--defaultContentEncoding=gzip: expected deflate, zstd and\/or encrypt-CIPHER/],
  [["--test", "--size=1M", blocks, join(dir, "nope")], 1, /mount point .*nope/],
  [["--test", "--size=1M", blocks, join(blocks, "..", "blocks", "..", "mnt", "x")], 1, /mount point/],
  [["--test", "--size=1M", "-f", "/nonexistent-dir", mnt], 1, /test directory \/nonexistent-dir/],
];

test.each(BAD)("s3backer %p exits %p with one clear line", (args, code, message) => {
  const r = run([BINARY, ...args]);
  expect(r.code).toBe(code);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines.length).toBe(1);
  expect(lines[0]).toMatch(/^s3backer: /);
  expect(lines[0]).toMatch(message);
  expect(r.stderr).not.toMatch(/\bat .*:\d+:\d+/); // no stack trace
  expect(r.stdout).toBe("");
});

test("the binary runs alone: --version and --help in an empty directory with no PATH", () => {
  const empty = tempDir("bin");
  try {
    const copy = join(empty, "s3backer");
    copyFileSync(BINARY, copy);
    run(["chmod", "755", copy]);
    const env = { PATH: "/nonexistent", HOME: empty };
    const version = run([copy, "--version"], { env });
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^s3backer \d+\.\d+\.\d+ \(bun /);
    const help = run([copy, "--help"], { env });
    expect(help.code).toBe(0);
    for (const flag of FLAGS) {
      const line = help.stdout.split("\n").find((l) => new RegExp(`^\\s+(-[\\w?], )*--${flag.name}(\\W|$)`).test(l));
      expect(line).toBeDefined();
      if (flag.default !== undefined) expect(line).toContain(`[default: ${flag.default === "" ? '""' : flag.default}]`);
    }
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});

test("the man page is built from the same flag table: every flag, its default, the exit codes", () => {
  const man = readFileSync(join(import.meta.dir, "../../dist/s3backer.1"), "utf8");
  expect(man).toStartWith(".TH S3BACKER 1");
  for (const flag of FLAGS) expect(man).toContain(`\\-\\-${flag.name.replace(/-/g, "\\-")}\\fR`);
  expect(man).toContain("(default: 4k)");
  expect(man).toContain(".SH EXIT STATUS");
  if (run(["sh", "-c", "command -v groff"]).code === 0) {
    const rendered = run(["sh", "-c", `groff -man -Tutf8 -ww -z ${join(import.meta.dir, "../../dist/s3backer.1")}`]);
    expect(rendered.stderr).toBe("");
  }
});

test("other targets build: a musl x86-64 binary and an arm64 one (build only: nothing here runs them)", () => {
  const r = run(["node_modules/.bin/bun", "build.ts", "--all"]);
  expect(r.code).toBe(0);
  const musl = run(["file", "dist/s3backer-linux-x64-musl"]).stdout;
  expect(musl).toMatch(/ELF 64-bit.*x86-64.*ld-musl-x86_64/);
  expect(run(["file", "dist/s3backer-linux-arm64"]).stdout).toMatch(/ELF 64-bit.*ARM aarch64/);
  expect(run([BINARY, "--version"]).code).toBe(0); // the native one, rebuilt alongside, still works
});

test("on a terminal, --erase shows progress with rate and time left; --quiet shows none", () => {
  const dir = tempDir("progress");
  try {
    for (let b = 0; b < 3000; b++) writeFileSync(join(dir, b.toString(16).padStart(8, "0")), "x");
    // `script` gives the command a pseudo-terminal, as a person at a terminal would have.
    const shown = run(["script", "-qec", `${BINARY} --test --erase --force ${dir}`, "/dev/null"]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/\r\x1b\[Kerasing blocks: \d+\/3000 \(\d+\/s, \d+ s left\)/); // redrawn in place
    expect(shown.stdout).toMatch(/erased 3000 blocks/);
    for (let b = 0; b < 10; b++) writeFileSync(join(dir, b.toString(16).padStart(8, "0")), "x");
    const quiet = run(["script", "-qec", `${BINARY} --test --erase --force --quiet ${dir}`, "/dev/null"]);
    expect(quiet.stdout.trim()).toBe("");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("-?, -h, -v and -V as upstream and libfuse: help and version", () => {
  for (const [flag, out] of [["-?", /^Usage:/], ["-h", /^Usage:/], ["-v", /^s3backer \d/], ["-V", /^s3backer \d/]] as const) {
    const r = run([BINARY, flag]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(r.stdout).toMatch(out);
  }
});
