/** Real mounts of dist/s3backer in --test mode: a mount's life as a process (signals, background mode, its log and pid files, the allocator, another user). */
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { blockFiles, cleanupDisks, isMounted, mountDisk, mountForeground, mountWith, pattern, pread, pwrite, run, runAsync, sh, tempDir, waitFor } from "../helpers/disk.ts";

afterEach(cleanupDisks);

const BS = 64 * 1024;
const SIZE = 4 * 1024 * 1024;

test("SIGTERM while writing: the process flushes, unmounts and exits 0, and every write that returned is stored", async () => {
  const dir = tempDir("sigterm");
  try {
    sh(["mkdir", "-p", join(dir, "b"), join(dir, "m")]);
    const { proc, done } = await mountForeground([`--blockSize=${BS}`, `--size=${SIZE}`], join(dir, "b"), join(dir, "m"));
    const data = pattern(SIZE, 91);
    writeFileSync(join(dir, "data"), data);
    // 64 KiB at a time, no fsync; after each write that returned, how far it got.
    const writer = Bun.spawn(["python3", "-c", `
import os, sys
src = open(sys.argv[2], "rb").read()
fd = os.open(sys.argv[1], os.O_WRONLY)
for at in range(0, len(src), 65536):
    try:
        os.pwrite(fd, src[at:at + 65536], at)
    except OSError as e:
        print("error", e, flush=True)
        break
    print(at + 65536, flush=True)
`, join(dir, "m", "file"), join(dir, "data")], { stdout: "pipe", stderr: "inherit" });
    const lines = readLines(writer.stdout);
    for (let n = 0; n < 8; n++) await lines.next(); // some writes are in: then the signal
    proc.kill("SIGTERM");
    let written = 8 * 65536;
    for await (const line of lines) if (/^\d+$/.test(line)) written = Number(line);
    await writer.exited;
    expect(await proc.exited).toBe(0);
    done();
    expect(isMounted(join(dir, "m"))).toBe(false);
    // What each write that returned put there is stored: a fresh mount reads it back.
    const again = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`, "--blockCacheSize=0"], { dir, blocks: join(dir, "b") });
    expect(Bun.hash(pread(again.file, 0, written))).toBe(Bun.hash(data.subarray(0, written)));
    await again.unmount();
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The lines a stream gives, as they come. */
async function* readLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of stream) {
    pending += decoder.decode(chunk, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop()!;
    yield* lines;
  }
  if (pending) yield pending;
}

test("SIGTERM while reads are in flight: the mount detaches, serves them right until they let go, then exits 0", async () => {
  const dir = tempDir("sigterm-read");
  try {
    sh(["mkdir", "-p", join(dir, "b"), join(dir, "m")]);
    const file = join(dir, "m", "file");
    const expected = join(dir, "expected");
    writeFileSync(expected, pattern(SIZE, 77));
    const { proc, done } = await mountForeground([`--blockSize=${BS}`, `--size=${SIZE}`, "--blockCacheSize=4"], join(dir, "b"), join(dir, "m"));
    sh(["dd", `if=${expected}`, `of=${file}`, "bs=1M", "conv=notrunc,fsync", "status=none"]);
    // Four readers of random ranges, compared with what was written, for 1.5 s after they opened the file.
    const readers = Bun.spawn(["python3", "-c", `
import os, random, sys, threading, time
want = open(sys.argv[2], "rb").read()
fds = [os.open(sys.argv[1], os.O_RDONLY) for _ in range(4)]
print("open", flush=True)
deadline = time.monotonic() + 1.5
wrong, ok, errors = [], [0], [0]
def reader(fd):
    rng = random.Random(fd)
    while time.monotonic() < deadline:
        off = rng.randrange(0, len(want) - 4096)
        n = rng.randint(1, 300000)
        try:
            got = os.pread(fd, n, off)
        except OSError:
            errors[0] += 1
            break
        if got != want[off:off + len(got)]:
            wrong.append(off)
        ok[0] += 1
    os.close(fd)
ts = [threading.Thread(target=reader, args=(fd,)) for fd in fds]
[t.start() for t in ts]
[t.join() for t in ts]
print(len(wrong), ok[0], errors[0])
`, file, expected], { stdout: "pipe", stderr: "inherit" });
    const out = readers.stdout.getReader();
    let said = "";
    while (!said.includes("open\n")) {
      const { value, done: ended } = await out.read();
      if (ended) throw new Error(`the readers ended early: ${said}`);
      said += new TextDecoder().decode(value);
    }
    await Bun.sleep(200);
    proc.kill("SIGTERM");
    for (;;) {
      const { value, done: ended } = await out.read();
      if (ended) break;
      said += new TextDecoder().decode(value);
    }
    const [wrong, reads, errors] = said.trim().split("\n").pop()!.split(" ").map(Number);
    // A rare failure here (once, in a clean-clone run) could not be reproduced: say why if it comes back.
    if ((await proc.exited) !== 0) console.log(`the mount exited ${proc.exitCode}; its log:\n${await new Response(proc.stderr as ReadableStream).text()}`);
    expect(await proc.exited).toBe(0);
    done();
    expect(reads).toBeGreaterThan(10);
    expect([wrong, errors]).toEqual([0, 0]);
    expect(isMounted(join(dir, "m"))).toBe(false);
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("SIGKILL leaves a dead mount ('Transport endpoint is not connected') that umount -l clears", async () => {
  const dir = tempDir("sigkill");
  try {
    sh(["mkdir", "-p", join(dir, "b"), join(dir, "m")]);
    const mnt = join(dir, "m");
    const { proc, done } = await mountForeground([`--blockSize=${BS}`, `--size=${SIZE}`], join(dir, "b"), mnt);
    proc.kill("SIGKILL");
    await proc.exited;
    expect(() => statSync(join(mnt, "file"))).toThrow(/ENOTCONN|not connected/);
    const refused = run(["dist/s3backer", "--test", `--size=${SIZE}`, join(dir, "b"), mnt]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/umount -l/);
    sh(["umount", "-l", mnt]);
    done();
    expect(isMounted(mnt)).toBe(false);
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("background mode: the command returns once the mount answers; failures give the child's exit code", async () => {
  const disk = await mountDisk([`--blockSize=${BS}`, `--size=${SIZE}`]);
  // mountDisk returned after the command exited 0: the mount must already serve requests.
  expect(statSync(disk.file).size).toBe(SIZE);
  const pidFile = join(disk.dir, "pid");
  expect(readFileSync(pidFile, "utf8").trim()).toBe(String(disk.pid));
  expect(readFileSync(join(disk.dir, "log"), "utf8")).toMatch(/mounted/);
  await disk.unmount();
  expect(existsSync(pidFile)).toBe(false);
  // A failure after the fork (the block directory is missing) reaches the caller's stderr and exit code.
  const failed = run(["dist/s3backer", "--test", `--size=${SIZE}`, join(disk.dir, "missing"), disk.mnt]);
  expect(failed.code).toBe(1);
  expect(failed.stderr).toMatch(/^s3backer: .*missing/);
  expect(isMounted(disk.mnt)).toBe(false);
});

test("an unwritable --logFile or --pidFile in the background: one line naming the flag, exit 1, no mount left, the mounted flag not set", async () => {
  const dir = tempDir("bad-paths");
  try {
    const blocks = join(dir, "blocks");
    const mnt = join(dir, "mnt");
    sh(["mkdir", "-p", blocks, mnt]);
    const cases = [
      { flag: `--logFile=/`, said: /^s3backer: --logFile=\/: is a directory, not a file\n$/ },
      { flag: `--logFile=/nonexistent/dir/log`, said: /^s3backer: --logFile=\/nonexistent\/dir\/log: cannot be created: no directory \/nonexistent\/dir\n$/ },
      { flag: `--pidFile=/`, said: /^s3backer: --pidFile=\/: is a directory, not a file\n$/ },
      { flag: `--pidFile=/nonexistent/dir/pid`, said: /^s3backer: --pidFile=\/nonexistent\/dir\/pid: cannot be created: no directory \/nonexistent\/dir\n$/ },
    ];
    for (const { flag, said } of cases) {
      const r = await runAsync(["dist/s3backer", "--test", `--blockSize=${BS}`, `--size=${SIZE}`, flag, blocks, mnt]);
      const mounted = isMounted(mnt);
      if (mounted) await runAsync(["umount", "-l", mnt]); // before the checks, so that a failure leaves no mount behind
      expect({ flag, code: r.code, stderr: r.stderr, mounted }).toMatchObject({ flag, code: 1, stderr: expect.stringMatching(said), mounted: false });
      expect(readdirSync(blocks)).toEqual([]); // no mounted flag, no block
    }
    expect(existsSync("/nonexistent")).toBe(false);
    // A failure after the pid file was opened: one that was there stays as it was, a new one goes.
    const pidFile = join(dir, "pid");
    writeFileSync(pidFile, "12345\n");
    for (const expected of ["12345\n", undefined]) {
      const failed = await runAsync(["dist/s3backer", "--test", `--size=${SIZE}`, `--pidFile=${pidFile}`, join(dir, "missing"), mnt]);
      expect(failed.code).toBe(1);
      expect(existsSync(pidFile) ? readFileSync(pidFile, "utf8") : undefined).toBe(expected);
      rmSync(pidFile, { force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a log file that cannot be written any more (its directory removed): the mount goes on, and still stores everything and clears its flag at unmount", async () => {
  const dir = tempDir("log-gone");
  try {
    const logDir = join(dir, "logs");
    sh(["mkdir", "-p", logDir, join(dir, "b"), join(dir, "m")]);
    const r = await runAsync(["dist/s3backer", "--test", `--blockSize=${BS}`, `--size=${SIZE}`, "--blockCacheWriteDelay=600000", `--logFile=${join(logDir, "log")}`, `--pidFile=${join(dir, "pid")}`, join(dir, "b"), join(dir, "m")]);
    expect(r.code).toBe(0);
    const pid = Number(readFileSync(join(dir, "pid"), "utf8"));
    rmSync(logDir, { recursive: true });
    pwrite(join(dir, "m", "file"), 0, pattern(BS * 4, 5));
    expect((await runAsync(["umount", join(dir, "m")])).code).toBe(0);
    await waitFor("s3backer to exit", () => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z "));
    expect(blockFiles(join(dir, "b"))).toEqual(["00000000", "00000001", "00000002", "00000003"]);
    expect(existsSync(join(dir, "b", "s3backer-mounted"))).toBe(false);
  } finally {
    await cleanupDisks();
    if (isMounted(join(dir, "m"))) run(["umount", "-l", join(dir, "m")]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a mount's allocator keeps the memory it frees for a second: set for the background process; in the foreground the process starts again in place; a value in the environment is kept", async () => {
  const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
  const setting = "MIMALLOC_PURGE_DELAY";
  const env = { ...process.env } as Record<string, string>;
  delete env[setting];
  const dir = tempDir("allocator");
  try {
    sh(["mkdir", "-p", join(dir, "b"), join(dir, "m")]);
    const background = await mountWith(["--test", `--blockSize=${BS}`, `--size=${SIZE}`, join(dir, "b")], join(dir, "bg"), true, join(dir, "b"), env);
    expect(environ(background.pid)).toContain(`${setting}=1000`);
    await background.unmount();
    const { proc, done } = await mountForeground([`--blockSize=${BS}`, `--size=${SIZE}`], join(dir, "b"), join(dir, "m"));
    // The child we started is the mount itself (same PID), now with the setting.
    expect(environ(proc.pid)).toContain(`${setting}=1000`);
    expect(readFileSync(join(dir, "m", "stats"), "utf8")).toMatch(/blocks cached/);
    expect((await runAsync(["umount", join(dir, "m")])).code).toBe(0);
    expect(await proc.exited).toBe(0);
    done();
    const kept = await mountWith(["--test", `--blockSize=${BS}`, `--size=${SIZE}`, join(dir, "b")], join(dir, "k"), true, join(dir, "b"), { ...env, [setting]: "250" });
    expect(environ(kept.pid)).toContain(`${setting}=250`);
    await kept.unmount();
  } finally {
    await cleanupDisks();
    rmSync(dir, { recursive: true, force: true });
  }
});
