/**
 * Signals a user may send to a mount: none whose default action would kill ends it with written
 * blocks unstored. The stop ones unmount cleanly, SIGUSR1 logs the stats, the rest are ignored.
 */
import { afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { cleanupDisks, isMounted, mountDisk, pattern, run, serveForeground, tempDir, waitFor } from "../helpers/disk.ts";

const dirs: string[] = [];
afterEach(async () => {
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function workDir(tag: string): string {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

/** Written blocks stay dirty in the cache (no write-back before a flush asks). */
const ARGS = ["--blockSize=64k", "--size=4M", "--blockCacheWriteDelay=600000"];
const DATA = 1 << 20;
/** Signals whose default action ends a process, that the mount logs and ignores (SIGPIPE silently). */
const IGNORED = ["SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGPWR", "SIGXFSZ", "SIGPIPE"] as const;
const STOPS = ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGXCPU"] as const;

/** By the kill command: the test runner's process.kill does not know every name (SIGPWR). */
const sendSignal = (pid: number, signal: string) => expect(run(["kill", `-${signal.slice(3)}`, String(pid)]).code).toBe(0);
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");

/**
 * A process that writes `data` at offset 0 and holds the file open (a close would flush): the
 * blocks stay dirty in the cache until `release` closes it.
 */
async function writeAndHold(file: string, stats: string, data: Uint8Array, dir: string) {
  const from = join(dir, "data");
  writeFileSync(from, data);
  const script = `import os, sys\nfd = os.open(${JSON.stringify(file)}, os.O_WRONLY)\nos.pwrite(fd, open(${JSON.stringify(from)}, 'rb').read(), 0)\nprint('written', flush=True)\nsys.stdin.read()\nos.close(fd)`;
  const p = Bun.spawn(["python3", "-c", script], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  await p.stdout.getReader().read();
  await waitFor("16 dirty blocks", async () => /blocks dirty\s+16\n/.test(await readFile(stats, "utf8")));
  return {
    async release() {
      p.stdin.end();
      await p.exited;
    },
  };
}

test("with dirty blocks, each signal whose default would kill is ignored (SIGUSR1 logs the stats); nothing written is lost", async () => {
  const dir = workDir("sig-ignored");
  const disk = await mountDisk(ARGS, { dir });
  const data = pattern(DATA, 71);
  const writer = await writeAndHold(disk.file, disk.stats, data, dir);
  const log = () => readFileSync(join(dir, "log"), "utf8");
  try {
    for (const signal of ["SIGUSR1", ...IGNORED]) {
      sendSignal(disk.pid, signal);
      await Bun.sleep(150);
      expect({ signal, alive: alive(disk.pid) }).toEqual({ signal, alive: true });
      expect(statSync(disk.file).size).toBe(4 << 20); // still served
    }
    await waitFor("the stats in the log", () => /INFO: stats \[block cache\] .*blocks dirty 16/.test(log()));
    for (const signal of IGNORED.filter((s) => s !== "SIGPIPE" && s !== "SIGPWR")) expect(log()).toContain(`INFO: ${signal}: ignored`);
  } finally {
    await writer.release();
  }
  await disk.unmount();
  expect(log()).toMatch(/all data stored; exiting/);
  const again = await mountDisk([...ARGS, "--blockCacheSize=0"], { dir: workDir("sig-ignored-check"), blocks: disk.blocks });
  expect(new Uint8Array(await readFile(again.file)).subarray(0, DATA)).toEqual(data);
  await again.unmount();
}, 30_000);

for (const signal of STOPS) {
  test(`${signal} with dirty blocks and the file in use: the mount detaches, stores every block once let go, exits 0`, async () => {
    const dir = workDir(`sig-${signal}`);
    const blocks = join(dir, "blocks");
    const mnt = join(dir, "mnt");
    mkdirSync(blocks);
    mkdirSync(mnt);
    const mount = await serveForeground(["--test", ...ARGS, blocks], mnt);
    const data = pattern(DATA, 72);
    const writer = await writeAndHold(join(mnt, "file"), join(mnt, "stats"), data, dir);
    try {
      sendSignal(mount.proc.pid, signal);
      await waitFor("the stop to be logged", () => mount.log().includes(`INFO: ${signal}: unmounting`) || !alive(mount.proc.pid));
      await Bun.sleep(200);
      expect(alive(mount.proc.pid)).toBe(true); // serving the detached mount until its user lets go
    } finally {
      await writer.release();
    }
    const code = await mount.exited();
    if (code !== 0) console.log(mount.log());
    expect(code).toBe(0);
    expect(mount.log()).toMatch(/all data stored; exiting/);
    expect(isMounted(mnt)).toBe(false);
    const again = await mountDisk([...ARGS, "--blockCacheSize=0"], { dir: workDir(`sig-${signal}-check`), blocks });
    expect(new Uint8Array(await readFile(again.file)).subarray(0, DATA)).toEqual(data);
    await again.unmount();
  }, 30_000);
}
