/**
 * Test helpers for real mounts of dist/s3backer: temp dirs, mount, wait, unmount, and cleanup that
 * also works when a test fails or the process was killed (a dead FUSE mount is lazily unmounted).
 */
import { spawn, spawnSync } from "bun";
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { expect } from "bun:test";
import { join } from "node:path";

export { pattern, tempDir, waitFor } from "./data.ts";
import { tempDir, waitFor } from "./data.ts";

export const BINARY = join(import.meta.dir, "../../dist/s3backer");

export { isMounted } from "../../src/fuse/mount.ts";
import { isMounted } from "../../src/fuse/mount.ts";

export function run(cmd: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(cmd, { stdin: opts.stdin ? Buffer.from(opts.stdin) : "ignore", env: opts.env ?? process.env as Record<string, string> });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/**
 * Runs a command without blocking this process's event loop: needed whenever the command talks
 * to an S3 server that lives in this process (a synchronous spawn would deadlock it).
 */
export async function runAsync(cmd: string[], opts: { env?: Record<string, string> } = {}) {
  const p = spawn(cmd, { stdin: "ignore", stdout: "pipe", stderr: "pipe", env: opts.env ?? (process.env as Record<string, string>) });
  const [stdout, stderr, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, stdout, stderr };
}

/** Runs a command and throws with its stderr if it fails. */
export function sh(cmd: string[]): string {
  const r = run(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** kill -9, and wait until the process is gone (a zombie counts as gone: nothing reaps it here). */
export async function killHard(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGKILL");
  } catch {}
  await waitFor("the kill", () => !pidAlive(pid));
}

const pidAlive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

export interface Disk {
  dir: string;
  blocks: string;
  mnt: string;
  file: string;
  stats: string;
  pid: number;
  /** What the starting command printed on stderr (start-up messages). */
  startup: string;
  /** Unmounts and waits for the process to exit. */
  unmount(): Promise<void>;
}

/** Mounts started by tests: unmounted and killed if still running, their temp dirs removed, after each test. */
const live = new Set<{ mnt: string; pid: number; running: boolean; dir: string; keepDir: boolean }>();

/** Mounts in --test mode in the background (the default mode) and returns once the mount is ready. */
export async function mountDisk(args: string[], opts: { blocks?: string; dir?: string } = {}): Promise<Disk> {
  const dir = opts.dir ?? tempDir("disk");
  const blocks = opts.blocks ?? join(dir, "blocks");
  sh(["mkdir", "-p", blocks]);
  return mountWith(["--test", ...args, blocks], dir, opts.dir !== undefined, blocks);
}

/**
 * Mounts `source` (a bucket[/prefix]) with the given flags, in the background; async throughout so
 * that an S3 server in this process keeps answering.
 */
export async function mountWith(argsAndSource: string[], dir: string, keepDir: boolean, blocks = "", env?: Record<string, string>): Promise<Disk> {
  const mnt = join(dir, "mnt");
  mkdirSync(mnt, { recursive: true });
  const pidFile = join(dir, "pid");
  const r = await runAsync([BINARY, `--pidFile=${pidFile}`, `--logFile=${join(dir, "log")}`, ...argsAndSource, mnt], { env });
  if (r.code !== 0) throw new Error(`mount failed (${r.code}): ${r.stderr}`);
  const pid = Number(readFileSync(pidFile, "utf8"));
  const entry = { mnt, pid, running: true, dir, keepDir };
  live.add(entry);
  return {
    dir, blocks, mnt, pid, startup: r.stderr,
    file: join(mnt, "file"),
    stats: join(mnt, "stats"),
    async unmount() {
      // A loop device just detached lets go of the file a moment later: "busy" until then.
      let u = await runAsync(["umount", mnt]);
      for (let tries = 0; u.code !== 0 && /target is busy/.test(u.stderr) && tries < 50; tries++) {
        await Bun.sleep(100);
        u = await runAsync(["umount", mnt]);
      }
      if (u.code !== 0) throw new Error(`umount ${mnt}: ${u.stderr}`);
      await waitFor("s3backer to exit", () => !pidAlive(pid));
      entry.running = false; // its temp dir goes after the test (which may still look at the blocks)
    },
  };
}

/** Starts in the foreground (-f) as a child, for tests that need its exit code or signals. */
export async function mountForeground(args: string[], blocks: string, mnt: string) {
  const proc = spawn([BINARY, "-f", "--test", ...args, blocks, mnt], { stderr: "pipe", stdout: "ignore" });
  const entry = { mnt, pid: proc.pid, running: true, dir: "", keepDir: true };
  live.add(entry);
  await waitFor("the mount", () => isMounted(mnt) || proc.exitCode !== null);
  if (proc.exitCode !== null) throw new Error(`s3backer exited ${proc.exitCode}: ${await new Response(proc.stderr).text()}`);
  return { proc, done: () => void (entry.running = false) };
}

/**
 * Starts in the foreground (-f) with any flags and source (`argsAndSource` ends with the source),
 * its log (stderr) collected as it comes, and returns once it says it is serving: for tests that
 * watch the log, send signals, and need the exit code.
 */
export async function serveForeground(argsAndSource: string[], mnt: string) {
  const proc = spawn([BINARY, "-f", ...argsAndSource, mnt], { stderr: "pipe", stdout: "ignore" });
  const entry = { mnt: mnt.startsWith("/") ? mnt : "", pid: proc.pid, running: true, dir: "", keepDir: true };
  live.add(entry);
  let text = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  const exited = async () => {
    const code = await proc.exited;
    await reading;
    entry.running = false;
    return code;
  };
  await waitFor("the mount", () => / INFO: (mounted|serving NBD) /.test(text) || proc.exitCode !== null);
  if (proc.exitCode !== null) throw new Error(`s3backer exited ${await exited()}: ${text}`);
  return { proc, log: () => text, exited };
}

/** Kills whatever a test left running or mounted; call from afterEach/afterAll. */
export async function cleanupDisks(): Promise<void> {
  for (const entry of live) {
    // (A process that exited is not waited for or killed again: its pid may belong to another by now.)
    if (entry.running && isMounted(entry.mnt)) await runAsync(["umount", "-l", entry.mnt]);
    if (entry.running && pidAlive(entry.pid)) {
      await waitFor("exit after unmount", () => !pidAlive(entry.pid), 5000).catch(() => process.kill(entry.pid, "SIGKILL"));
    }
    if (!entry.keepDir && entry.dir) rmSync(entry.dir, { recursive: true, force: true });
    live.delete(entry);
  }
}

/** The block files of a --test directory (not the mounted flag or temporary files). */
export function blockFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => /^([0-9a-f]{8}-)?[0-9a-f]{8}$/.test(n)).sort();
}

/** Writes `data` at `offset` and fsyncs it. */
export function pwrite(path: string, offset: number, data: Uint8Array) {
  const fd = openSync(path, "r+");
  try {
    expect(writeSync(fd, data, 0, data.length, offset)).toBe(data.length);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Up to `length` bytes from `offset` (fewer at the end of the file). */
export function pread(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const buf = new Uint8Array(length);
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `data` at `offset` with dd in another process and fsyncs it: for tests whose S3 server runs
 * in this process, which must keep answering while the write waits.
 */
export async function ddWrite(path: string, offset: number, data: Uint8Array): Promise<void> {
  const dir = tempDir("dd");
  try {
    await Bun.write(join(dir, "d"), data);
    const r = await runAsync(["dd", `of=${path}`, "bs=1M", `seek=${offset}`, "oflag=seek_bytes", "conv=notrunc,fsync", "status=none", `if=${join(dir, "d")}`]);
    if (r.code !== 0) throw new Error(r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
