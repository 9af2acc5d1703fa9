/**
 * NBD servers of dist/s3backer for tests: started in the background (the default mode, which
 * returns once the socket answers), stopped with SIGTERM, and killed after each test if still up.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { BINARY, runAsync, tempDir, waitFor } from "./disk.ts";

export interface NbdDisk {
  dir: string;
  blocks: string;
  socket: string;
  /** With `tcp`: the port the server took. */
  port: number;
  /** The export as qemu names it, and as libnbd's tools do. */
  qemu: string;
  uri: string;
  pid: number;
  log(): string;
  /** SIGTERM, then waits for the exit: the server flushes first. */
  stop(): Promise<void>;
}

const live = new Set<{ pid: number; dir: string; keepDir: boolean }>();

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

/**
 * Serves `source` (a --test directory unless `args` point at S3) on a Unix socket in `dir`, or
 * with `tcp` on a port of 127.0.0.1 the system picks. With `opts.dir` the directory (and its
 * blocks) outlive the test's server, for a second server on them. `command` runs another build
 * (the source under Deno).
 */
export async function serveNbd(
  args: string[],
  opts: { dir?: string; source?: string; env?: Record<string, string>; tcp?: boolean; command?: string[] } = {},
): Promise<NbdDisk> {
  const dir = opts.dir ?? tempDir("nbd");
  const blocks = join(dir, "blocks");
  mkdirSync(blocks, { recursive: true });
  const socket = join(dir, "socket");
  const source = opts.source ?? blocks;
  const testMode = opts.source === undefined ? ["--test"] : [];
  const r = await runAsync(
    [...(opts.command ?? [BINARY]), `--pidFile=${join(dir, "pid")}`, `--logFile=${join(dir, "log")}`, "--nbd", ...testMode, ...args, source, opts.tcp ? "tcp:127.0.0.1:0" : `unix:${socket}`],
    { env: opts.env },
  );
  if (r.code !== 0) throw new Error(`s3backer --nbd failed (${r.code}): ${r.stderr}`);
  const log = () => (existsSync(join(dir, "log")) ? readFileSync(join(dir, "log"), "utf8") : "");
  const port = opts.tcp ? Number(/serving NBD on tcp:127\.0\.0\.1:(\d+)/.exec(log())?.[1]) : 0;
  const pid = Number(readFileSync(join(dir, "pid"), "utf8"));
  const entry = { pid, dir, keepDir: opts.dir !== undefined };
  live.add(entry);
  return {
    dir, blocks, socket, pid, port,
    qemu: opts.tcp ? `nbd:127.0.0.1:${port}` : `nbd:unix:${socket}`,
    uri: opts.tcp ? `nbd://127.0.0.1:${port}/` : `nbd+unix:///?socket=${socket}`,
    log,
    async stop() {
      process.kill(pid, "SIGTERM");
      await waitFor("s3backer --nbd to exit", () => !alive(pid), 60_000);
    },
  };
}

export async function cleanupNbd(): Promise<void> {
  for (const entry of live) {
    if (alive(entry.pid)) {
      process.kill(entry.pid, "SIGTERM");
      await waitFor("exit", () => !alive(entry.pid), 10_000).catch(() => process.kill(entry.pid, "SIGKILL"));
    }
    if (!entry.keepDir) rmSync(entry.dir, { recursive: true, force: true });
    live.delete(entry);
  }
}
