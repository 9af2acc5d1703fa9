/**
 * What a path named by a flag may be (util/flag-paths.ts): each wrong one is refused with one line
 * naming the flag as the user typed it, a non-zero exit, and nothing changed: every file, link and
 * directory the test made keeps its mode, times and bytes. Inputs are read only if regular, and no
 * further than a cap. (A cache file on a full disk: test/mount/flag-paths.test.ts.)
 */
import { afterAll, expect, test } from "bun:test";
import { lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "../../src/cli/parse.ts";
import { buildConfig } from "../../src/config/build-config.ts";
import { checkPaths } from "../../src/app/check-paths.ts";
import { BINARY, cleanupDisks, isMounted, sh, tempDir } from "../helpers/disk.ts";

const dir = tempDir("flag-paths");
const at = (name: string) => join(dir, name);
const [blocks, mnt, sub, target, link, fifo, big] = ["blocks", "mnt", "dir", "target", "link", "fifo", "big"].map(at) as [string, string, string, string, string, string, string];
mkdirSync(blocks);
mkdirSync(mnt);
mkdirSync(sub, { mode: 0o755 });
writeFileSync(target, "not a cache file: keep me\n", { mode: 0o644 });
symlinkSync(target, link);
sh(["mkfifo", fifo]);
writeFileSync(big, new Uint8Array(5 * 2 ** 20));
afterAll(async () => {
  await cleanupDisks();
  rmSync(dir, { recursive: true, force: true });
});

/** Everything under the test's directory: names, kinds, modes, times, sizes, and the bytes of small files. */
function snapshot(): string {
  const entries: string[] = [];
  const walk = (path: string) => {
    const st = lstatSync(path);
    const bytes = st.isFile() && st.size < 4096 ? readFileSync(path, "hex") : "";
    entries.push(`${path} ${st.mode.toString(8)} ${st.mtimeMs} ${st.ctimeMs} ${st.size} ${bytes}`);
    if (st.isDirectory()) for (const name of readdirSync(path).sort()) walk(join(path, name));
  };
  walk(dir);
  return entries.join("\n");
}

const ok = ["--test", "--size=1M"];
const s3 = ["--size=1M", "--baseURL=http://127.0.0.1:1/", "--accessId=a", "--accessKey=b"];

// [arguments, what the one line must say]; every one exits 1 and leaves the directory as it was.
const BAD: [string[], RegExp][] = [
  [[...ok, `--blockCacheFile=${sub}`, blocks, mnt], /^s3backer: --blockCacheFile=\S+\/dir: is a directory, not a file$/],
  [[...ok, "-o", `blockCacheFile=${sub}`, blocks, mnt], /^s3backer: -o blockCacheFile=\S+\/dir: is a directory, not a file$/],
  [[...ok, `--blockCacheFile=${link}`, blocks, mnt], /^s3backer: --blockCacheFile=\S+\/link: is a symbolic link \(to \S+\/target\); s3backer writes this file/],
  [[...ok, `--blockCacheFile=${fifo}`, blocks, mnt], /^s3backer: --blockCacheFile=\S+\/fifo: is a FIFO, not a file$/],
  // A typo naming someone's file: never narrowed (chmod), never overwritten.
  [[...ok, `--blockCacheFile=${target}`, blocks, mnt], /^s3backer: --blockCacheFile=\S+\/target: not a cache file of this s3backer/],
  [[...ok, `--logFile=${sub}`, blocks, mnt], /^s3backer: --logFile=\S+\/dir: is a directory, not a file$/],
  [[...ok, `--logFile=${link}`, blocks, mnt], /^s3backer: --logFile=\S+\/link: is a symbolic link/],
  [[...ok, "--logFile=/nonexistent/dir/log", blocks, mnt], /^s3backer: --logFile=\/nonexistent\/dir\/log: cannot be created: no directory \/nonexistent\/dir$/],
  [[...ok, `--pidFile=${link}`, blocks, mnt], /^s3backer: --pidFile=\S+\/link: is a symbolic link/],
  [[...ok, `--pidFile=${sub}`, blocks, mnt], /^s3backer: --pidFile=\S+\/dir: is a directory, not a file$/],
  [[...ok, `--statsFileMirror=${link}`, blocks, mnt], /^s3backer: --statsFileMirror=\S+\/link: is a symbolic link/],
  [[...ok, `--statsFileMirror=${fifo}`, blocks, mnt], /^s3backer: --statsFileMirror=\S+\/fifo: is a FIFO, not a file$/],
  [["-F", "/dev/zero", ...ok, blocks, mnt], /^s3backer: -F \/dev\/zero: is a character device, not a file$/],
  [["-F", fifo, ...ok, blocks, mnt], /^s3backer: -F \S+\/fifo: is a FIFO, not a file$/],
  [[`--configFile=${big}`, ...ok, blocks, mnt], /^s3backer: --configFile=\S+\/big: larger than 4 MiB, too large for a file of settings$/],
  [[`--configFile=${sub}`, ...ok, blocks, mnt], /^s3backer: --configFile=\S+\/dir: is a directory, not a file$/],
  [["--size=1M", "--baseURL=http://127.0.0.1:1/", "--accessFile=/dev/urandom", "bucket", mnt], /^s3backer: --accessFile=\/dev\/urandom: is a character device, not a file$/],
  [["--size=1M", "--baseURL=http://127.0.0.1:1/", `--accessFile=${fifo}`, "bucket", mnt], /^s3backer: --accessFile=\S+\/fifo: is a FIFO, not a file$/],
  [[...s3, "--encrypt", "--passwordFile=/dev/zero", "bucket", mnt], /^s3backer: --passwordFile=\/dev\/zero: is a character device, not a file$/],
  [[...s3, `--cacert=${sub}`, "bucket", mnt], /^s3backer: --cacert=\S+\/dir: is a directory, not a file$/],
  [[...ok, "--nbd", blocks, `unix:${target}`], /^s3backer: unix:\S+\/target: something else is there \(a file\), not a socket$/],
  [[...ok, "--nbd", blocks, "unix:/nonexistent/dir/socket"], /^s3backer: unix:\/nonexistent\/dir\/socket: its directory \/nonexistent\/dir: no such directory$/],
  [[...ok, "--nbd", blocks, `unix:${join(sub, "s".repeat(120))}`], /^s3backer: unix:\S+: longer than 107 bytes/],
  [[...ok, blocks, target], /^s3backer: mount point \S+\/target is not a directory$/],
  [[...ok, target, mnt], /^s3backer: test directory \S+\/target: is a file, not a directory$/],
];

test.each(BAD)("s3backer %p: one line, exit 1, nothing changed", async (args, message) => {
  const before = snapshot();
  const r = await runBounded([BINARY, ...args]);
  expect(r.stderr.trimEnd()).toMatch(message);
  expect(r.stderr.trimEnd().split("\n").length).toBe(1);
  expect(r.code).toBe(1);
  expect(r.stdout).toBe("");
  expect(isMounted(mnt)).toBe(false);
  expect(snapshot()).toBe(before);
}, 30_000);

test("--blockCacheFile=/ is refused before anything runs, and / keeps its mode", () => {
  const mode = statSync("/").mode;
  const config = buildConfig(parseArgs([...ok, "--blockCacheFile=/", blocks, mnt]));
  expect(() => checkPaths(config)).toThrow("--blockCacheFile=/: is a directory, not a file");
  expect(statSync("/").mode).toBe(mode);
});

/**
 * Runs a command, killed after 15 s: reading a FIFO with no writer once hung, and /dev/zero as a
 * password file once took 8 GB before it was stopped.
 */
async function runBounded(cmd: string[]) {
  const p = Bun.spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => p.kill("SIGKILL"), 15_000);
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  clearTimeout(timer);
  return { code, stdout, stderr };
}
