/** The same source under Deno (the `deno` package from npm): the runtime adapter is the only difference. */
import { afterAll, afterEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { BINARY, blockFiles, isMounted, pattern, run, runAsync, tempDir, waitFor } from "../helpers/disk.ts";
import { embeddedPeer, freshBucket, peerArgs, startEmbedded } from "../helpers/s3.ts";

const DENO = join(import.meta.dir, "../../node_modules/.bin/deno");
const MAIN = join(import.meta.dir, "../../src/main.ts");
const server = startEmbedded();
afterAll(() => server.stop());
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) {
    const mnt = join(d, "mnt");
    if (isMounted(mnt)) run(["umount", "-l", mnt]);
    rmSync(d, { recursive: true, force: true });
  }
});

async function denoMount(args: string[], dir: string): Promise<{ mnt: string; pid: number; startup: string }> {
  const mnt = join(dir, "mnt");
  mkdirSync(mnt, { recursive: true });
  const r = await runAsync([DENO, "run", "-A", MAIN, `--pidFile=${join(dir, "pid")}`, ...args, mnt]);
  if (r.code !== 0) throw new Error(`deno mount failed: ${r.stderr}`);
  return { mnt, pid: Number(readFileSync(join(dir, "pid"), "utf8")), startup: r.stderr };
}

async function unmount(mnt: string, dir: string) {
  await runAsync(["umount", mnt]);
  await waitFor("the Deno process to exit", () => run(["test", "-e", join(dir, "pid")]).code !== 0);
}

test("under Deno: --version names the runtime", () => {
  const r = run([DENO, "run", "-A", MAIN, "--version"]);
  expect(r.stdout).toMatch(/^s3backer \d+\.\d+\.\d+ \(deno \d/);
});

test("under Deno: a --test mount in the background, written, read back after a remount", async () => {
  const dir = tempDir("deno");
  dirs.push(dir);
  const blocks = join(dir, "blocks");
  mkdirSync(blocks);
  const data = pattern(3 << 20, 8);
  let disk = await denoMount(["--test", "--size=8M", "--blockSize=64k", "--debug", blocks], dir);
  // The FFI calls of the main thread's own door to the device work under Deno too.
  expect(disk.startup).toContain("the main thread reads requests itself while busy");
  await Bun.write(join(dir, "data"), data);
  expect((await runAsync(["dd", `if=${join(dir, "data")}`, `of=${join(disk.mnt, "file")}`, "bs=1M", "seek=1", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  await unmount(disk.mnt, dir);
  expect(blockFiles(blocks).length).toBe(48);
  disk = await denoMount(["--test", "--size=8M", "--blockSize=64k", blocks], dir);
  expect(new Uint8Array(await readFile(join(disk.mnt, "file"))).subarray(1 << 20, 4 << 20)).toEqual(data);
  await unmount(disk.mnt, dir);
});

test("under Deno: a disk in S3 (the embedded server), with auto-detection on remount", async () => {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "deno");
  const dir = tempDir("deno-s3");
  dirs.push(dir);
  const data = pattern(1 << 20, 9);
  await Bun.write(join(dir, "data"), data);
  let disk = await denoMount([...peerArgs(peer), "--size=4M", "--blockSize=64k", bucket], dir);
  expect((await runAsync(["dd", `if=${join(dir, "data")}`, `of=${join(disk.mnt, "file")}`, "bs=1M", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  await unmount(disk.mnt, dir);
  disk = await denoMount([...peerArgs(peer), bucket], dir);
  expect(new Uint8Array(await readFile(join(disk.mnt, "file"))).subarray(0, 1 << 20)).toEqual(data);
  await unmount(disk.mnt, dir);
});

test("under Deno: an encrypted, compressed disk written by Deno reads back under the Bun build", async () => {
  const peer = embeddedPeer(server);
  const bucket = await freshBucket(peer, "deno-enc");
  const dir = tempDir("deno-enc");
  dirs.push(dir);
  await Bun.write(join(dir, "pw"), "deno password\n");
  const data = pattern(1 << 20, 10);
  data.fill(0x41, 0, 1 << 19); // half compressible
  await Bun.write(join(dir, "data"), data);
  const enc = ["--encrypt", `--passwordFile=${join(dir, "pw")}`];
  const disk = await denoMount([...peerArgs(peer), ...enc, "--size=4M", "--blockSize=64k", bucket], dir);
  expect((await runAsync(["dd", `if=${join(dir, "data")}`, `of=${join(disk.mnt, "file")}`, "bs=1M", "conv=notrunc,fsync", "status=none"])).code).toBe(0);
  await unmount(disk.mnt, dir);
  const r = await runAsync([BINARY, ...peerArgs(peer), ...enc, "--readOnly", `--pidFile=${join(dir, "pid")}`, bucket, disk.mnt]);
  expect(r.code).toBe(0);
  expect(new Uint8Array(await readFile(join(disk.mnt, "file"))).subarray(0, 1 << 20)).toEqual(data);
  await unmount(disk.mnt, dir);
});

test("under Deno: signals as under Bun: SIGUSR1 logs the stats, the others are ignored, SIGQUIT unmounts and stores every block", async () => {
  const dir = tempDir("deno-signals");
  dirs.push(dir);
  const blocks = join(dir, "blocks");
  mkdirSync(blocks);
  const log = join(dir, "log");
  const disk = await denoMount(["--test", "--size=4M", "--blockSize=64k", "--blockCacheWriteDelay=600000", `--logFile=${log}`, blocks], dir);
  const data = pattern(1 << 20, 11);
  await Bun.write(join(dir, "data"), data);
  // Written without a flush (no fsync, and the writer still holds the file): dirty in the cache.
  const writer = Bun.spawn(["python3", "-c", `import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\nos.pwrite(fd, open(sys.argv[2], 'rb').read(), 0)\nprint('written', flush=True)\nsys.stdin.read()`, join(disk.mnt, "file"), join(dir, "data")], { stdin: "pipe", stdout: "pipe" });
  await writer.stdout.getReader().read();
  for (const signal of ["USR1", "USR2", "ALRM", "VTALRM", "PROF", "IO", "PWR", "XFSZ", "PIPE", "QUIT"]) {
    expect(run(["kill", `-${signal}`, String(disk.pid)]).code).toBe(0);
    await Bun.sleep(200);
    // (A zombie counts as dead: the background process's new parent may be slow to reap it.)
    const alive = existsSync(`/proc/${disk.pid}`) && !readFileSync(`/proc/${disk.pid}/stat`, "utf8").includes(") Z ");
    expect({ signal, alive }).toEqual({ signal, alive: true });
  }
  writer.stdin.end();
  await writer.exited;
  await waitFor("the Deno process to exit", () => run(["test", "-e", join(dir, "pid")]).code !== 0);
  const text = readFileSync(log, "utf8");
  expect(text).toMatch(/INFO: stats \[block cache\] .*blocks dirty 16/);
  for (const signal of ["USR2", "ALRM", "VTALRM", "PROF", "IO", "PWR", "XFSZ"]) expect(text).toContain(`INFO: SIG${signal}: ignored`);
  expect(text).toMatch(/SIGQUIT: unmounting[^]*all data stored; exiting/);
  expect(blockFiles(blocks).length).toBe(16);
  expect(new Uint8Array(Buffer.concat(blockFiles(blocks).map((name) => readFileSync(join(blocks, name)))))).toEqual(data);
}, 60_000);
