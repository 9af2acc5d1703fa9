/** The block cache file through real mounts: crash safety at any instant, recovery of unsaved blocks, its mode, a full disk under it. */
import { afterEach, expect, test } from "bun:test";
import { chmodSync, closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { seededRandom } from "../helpers/data.ts";
import { BINARY, cleanupDisks, isMounted, killHard, mountDisk, pattern, run, sh, tempDir, waitFor } from "../helpers/disk.ts";

const dirs: string[] = [];
afterEach(async () => {
  await cleanupDisks();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function workDir(tag: string) {
  const d = tempDir(tag);
  dirs.push(d);
  return d;
}

test("kill -9 before write-back: with --blockCacheRecoverDirtyBlocks every written block comes back", async () => {
  const dir = workDir("crash");
  const cache = join(dir, "cache");
  const args = ["--blockSize=64k", "--size=4M", `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=600000"];
  const synced = pattern(1 << 20, 21);
  const unsynced = pattern(1 << 20, 22);
  let disk = await mountDisk(args, { dir });
  sh(["dd", `of=${disk.file}`, "bs=1M", "conv=notrunc,fsync", "status=none", `if=${writeTemp(dir, "a", synced)}`]);
  // Written but neither fsync'ed nor closed (a close would flush it): it is only in the cache.
  await writeAndHold(disk, 2 << 20, writeTemp(dir, "b", unsynced), () => process.kill(disk.pid, "SIGKILL"));
  await crashed(disk);

  const refused = run([BINARY, "--test", ...args, disk.blocks, disk.mnt]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/16 blocks written before a crash.*--blockCacheRecoverDirtyBlocks/);

  disk = await mountDisk([...args, "--blockCacheRecoverDirtyBlocks"], { dir });
  const content = new Uint8Array(await readFile(disk.file));
  expect(content.subarray(0, 1 << 20)).toEqual(synced);
  expect(content.subarray(2 << 20, 3 << 20)).toEqual(unsynced);
  await disk.unmount();
  // And now they are in storage: a mount without the cache file sees them.
  disk = await mountDisk(["--blockSize=64k", "--size=4M", "--blockCacheSize=0"], { dir });
  expect(new Uint8Array(await readFile(disk.file)).subarray(2 << 20, 3 << 20)).toEqual(unsynced);
  await disk.unmount();
});

test("unsaved blocks are not recovered over a disk whose flag was cleared since (another mount came and went) without --force", async () => {
  const dir = workDir("elsewhere");
  const cache = join(dir, "cache");
  const args = ["--blockSize=64k", "--size=4M", `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=600000"];
  let disk = await mountDisk(args, { dir });
  await writeAndHold(disk, 0, writeTemp(dir, "x", pattern(65536, 5)), () => process.kill(disk.pid, "SIGKILL"));
  await crashed(disk);
  expect(run([BINARY, "--test", "--reset-mounted-flag", disk.blocks]).code).toBe(0);
  disk = await mountDisk(["--blockSize=64k", "--size=4M"], { dir }); // someone else's mount
  await disk.unmount();
  const refused = run([BINARY, "--test", ...args, "--blockCacheRecoverDirtyBlocks", disk.blocks, disk.mnt]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/the mounted flag was cleared since .*add --force to store them/);
});

test("--force mounts despite a flag another mount holds, never with blocks from before it: the newer data stays", async () => {
  const dir = workDir("force");
  const cache = join(dir, "cache");
  const geometry = ["--blockSize=64k", "--size=4M"];
  const args = [...geometry, `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=600000"];
  const p1 = pattern(65536, 41);
  const p2 = pattern(65536, 43);
  let disk = await mountDisk(args, { dir });
  await writeAndHold(disk, 5 * 65536, writeTemp(dir, "p1", p1), () => process.kill(disk.pid, "SIGKILL"));
  await crashed(disk);
  expect(run([BINARY, "--test", "--reset-mounted-flag", disk.blocks]).code).toBe(0);
  // Another mount writes newer data, durably, and crashes too: the flag is its own.
  disk = await mountDisk(geometry, { dir });
  sh(["dd", `of=${disk.file}`, "bs=64k", "seek=5", "conv=notrunc,fsync", "status=none", `if=${writeTemp(dir, "p2", p2)}`]);
  await crashed(disk);

  for (const extra of [["--force"], ["--force", "--blockCacheRecoverDirtyBlocks"]]) {
    const refused = run([BINARY, "--test", `--pidFile=${join(dir, "forced.pid")}`, ...args, ...extra, disk.blocks, disk.mnt]);
    if (refused.code === 0) {
      // The bug: it mounted. Unmount it before failing, so the next tests find no mount.
      run(["umount", disk.mnt]);
      await killHard(Number(readFileSync(join(dir, "forced.pid"), "utf8")));
    }
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/written before a crash|mounted elsewhere since/);
  }
  disk = await mountDisk([...geometry, "--blockCacheSize=0", "--force"], { dir });
  expect(new Uint8Array(await readFile(disk.file)).subarray(5 * 65536, 6 * 65536)).toEqual(p2);
  await disk.unmount();
});

test("--reset-mounted-flag after kill -9 warns of the cache file's unsaved blocks; --force then stores them, byte for byte", async () => {
  const dir = workDir("reset-warns");
  const cache = join(dir, "cache");
  const geometry = ["--blockSize=64k", "--size=4M"];
  const args = [...geometry, `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=600000"];
  const stored = pattern(1 << 20, 51);
  const unsaved = pattern(1 << 20, 52);
  let disk = await mountDisk(args, { dir });
  sh(["dd", `of=${disk.file}`, "bs=1M", "seek=1", "conv=notrunc,fsync", "status=none", `if=${writeTemp(dir, "stored", stored)}`]);
  // Blocks 16-31 go over what storage has; only the cache file holds the new bytes.
  await writeAndHold(disk, 1 << 20, writeTemp(dir, "unsaved", unsaved), () => process.kill(disk.pid, "SIGKILL"));
  await crashed(disk);
  const storedBlocks = () => Buffer.concat(Array.from({ length: 16 }, (_, i) => readFileSync(join(disk.blocks, (16 + i).toString(16).padStart(8, "0")))));
  expect(new Uint8Array(storedBlocks())).toEqual(stored);

  // Given the file (as the mount had it), the reset says how many blocks it holds and how to store them.
  const before = readFileSync(cache);
  const reset = run([BINARY, "--test", "--reset-mounted-flag", `--blockCacheFile=${cache}`, disk.blocks]);
  expect(reset.code).toBe(0);
  expect(reset.stderr).toContain(`warning: ${cache} holds 16 blocks written and never stored: store them now, before anyone else mounts the disk, with --blockCacheFile=${cache} --blockCacheRecoverDirtyBlocks --force`);
  expect(readFileSync(cache).equals(before)).toBe(true); // only looked at

  const refused = run([BINARY, "--test", ...args, "--blockCacheRecoverDirtyBlocks", disk.blocks, disk.mnt]);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/holds 16 unsaved blocks, but the mounted flag was cleared since .*add --force/);
  disk = await mountDisk([...args, "--blockCacheRecoverDirtyBlocks", "--force"], { dir });
  expect(disk.startup).toMatch(/--force: storing 16 blocks left unsaved by a crash/);
  await disk.unmount();
  // What storage holds now is what was written and never stored, not what it had.
  expect(new Uint8Array(storedBlocks())).toEqual(unsaved);

  // Without the file the reset cannot look, and says what to do if there was one.
  disk = await mountDisk(geometry, { dir });
  await crashed(disk);
  const blind = run([BINARY, "--test", "--reset-mounted-flag", disk.blocks]);
  expect(blind.code).toBe(0);
  expect(blind.stderr).toMatch(/warning: if the mount that set it had a --blockCacheFile, .*--blockCacheRecoverDirtyBlocks --force/);
});

test("the cache file is its owner's alone: created 0600, a wider one narrowed with a warning", async () => {
  const dir = workDir("mode");
  const cache = join(dir, "cache");
  const args = ["--blockSize=64k", "--size=1M", `--blockCacheFile=${cache}`];
  let disk = await mountDisk(args, { dir });
  expect(statSync(cache).mode & 0o777).toBe(0o600);
  expect(statSync(join(dir, "log")).mode & 0o777).toBe(0o600);
  expect(statSync(join(dir, "pid")).mode & 0o777).toBe(0o644);
  await disk.unmount();
  chmodSync(cache, 0o644);
  disk = await mountDisk(args, { dir });
  expect(statSync(cache).mode & 0o777).toBe(0o600);
  // Said where start-up messages go: stderr of the starting command, or the log.
  expect(disk.startup + readFileSync(join(dir, "log"), "utf8")).toMatch(/was readable by others \(mode 644\): now 600/);
  await disk.unmount();
});

test("the cache file loads after kills at random moments, and every fsync'ed write reads back", async () => {
  const dir = workDir("random-kill");
  const cache = join(dir, "cache");
  const args = ["--blockSize=64k", "--size=8M", `--blockCacheFile=${cache}`, "--blockCacheWriteDelay=50", "--blockCacheRecoverDirtyBlocks"];
  const CHUNK = 96 * 1024; // not block-aligned: writes are partial, read-modify-write
  const PER_ROUND = 12;
  const durableChunks: { offset: number; data: Uint8Array<ArrayBuffer> }[] = [];
  for (let round = 0; round < 6; round++) {
    const disk = await mountDisk(args, { dir });
    // A writer that fsyncs after every chunk and prints which chunk is durable.
    const script = [
      "import os, sys",
      `fd = os.open(${JSON.stringify(disk.file)}, os.O_WRONLY)`,
      "n = 0",
      "while True:",
      `  data = sys.stdin.buffer.read(${CHUNK + 8})`,
      `  if len(data) < ${CHUNK + 8}: break`,
      "  off = int.from_bytes(data[:8], 'little')",
      "  try:",
      "    os.pwrite(fd, data[8:], off); os.fsync(fd)",
      "  except OSError: break",
      "  print(n, flush=True); n += 1",
    ].join("\n");
    const chunks: { offset: number; data: Uint8Array<ArrayBuffer> }[] = [];
    const input: Uint8Array[] = [];
    for (let i = 0; i < PER_ROUND; i++) {
      const offset = (round * PER_ROUND + i) * CHUNK; // chunks never overlap
      const data = pattern(CHUNK, round * 100 + i + 1);
      chunks.push({ offset, data });
      const header = new Uint8Array(8);
      new DataView(header.buffer).setUint32(0, offset, true);
      input.push(header, data);
    }
    const writer = Bun.spawn(["python3", "-c", script], { stdin: new Blob(input), stdout: "pipe", stderr: "ignore" });
    const kill = setTimeout(() => process.kill(disk.pid, "SIGKILL"), 20 + Math.random() * 300);
    const out = await new Response(writer.stdout).text();
    await writer.exited;
    clearTimeout(kill);
    await crashed(disk);
    const durable = out.trim() === "" ? -1 : Number(out.trim().split("\n").pop());
    durableChunks.push(...chunks.slice(0, durable + 1));
    // The next mount must load the cache file and show every durable chunk of every round so far.
    const check = await mountDisk(args, { dir });
    const content = new Uint8Array(await readFile(check.file));
    for (const { offset, data } of durableChunks) expect(content.subarray(offset, offset + CHUNK)).toEqual(data);
    await check.unmount();
    expect(isMounted(check.mnt)).toBe(false);
  }
});

test("a cache file bigger than memory: 3 GiB writes killed at random moments, 10 rounds; every fsync'ed byte reads back", async () => {
  const dir = workDir("big-kill");
  const cache = join(dir, "cache");
  // 4096 slots of 1 MiB, the memory part at its default (64 blocks): nearly all of it lives in the file.
  const args = ["--blockSize=1M", "--size=4G", "--blockCacheSize=4096", `--blockCacheFile=${cache}`, "--blockCacheRecoverDirtyBlocks"];
  const seed = Number(process.env.KILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`big-kill: seed ${seed} (replay with KILL_SEED=${seed})`);
  const random = seededRandom(seed);
  const MIB = 1 << 20;
  // Round r writes chunk i (1 MiB): its number and r, then the round's random bytes; an fsync every
  // 128 MiB, after which it prints how many chunks are durable.
  const chunk = (round: number) => [
    "import os, random",
    `base = random.Random(${seed} + ${round}).randbytes(${MIB})`,
    `chunk = lambda i: i.to_bytes(8, 'little') + (${round}).to_bytes(8, 'little') + base[16:]`,
  ];
  const writer = (file: string, round: number) => [
    ...chunk(round),
    `fd = os.open(${JSON.stringify(file)}, os.O_WRONLY)`,
    "for i in range(3072):",
    `  os.pwrite(fd, chunk(i), i * ${MIB})`,
    "  if i % 128 == 127: os.fsync(fd); print(i + 1, flush=True)",
  ].join("\n");
  const checker = (file: string, round: number, chunks: number) => [
    ...chunk(round),
    `fd = os.open(${JSON.stringify(file)}, os.O_RDONLY)`,
    `bad = [i for i in range(${chunks}) if os.pread(fd, ${MIB}, i * ${MIB}) != chunk(i)]`,
    "print(len(bad), bad[:5])",
  ].join("\n");
  let last = { round: -1, chunks: 0 };
  let recovered = 0;
  let durableChunks = 0;
  for (let round = 0; round < 10; round++) {
    const disk = await mountDisk(args, { dir });
    recovered += Number(/recovering (\d+) blocks/.exec(disk.startup + readFileSync(join(dir, "log"), "utf8"))?.[1] ?? 0);
    if (last.round >= 0) {
      // Loaded after the last kill, with what it had not stored recovered: the durable chunks are there.
      const checked = sh(["python3", "-c", checker(disk.file, last.round, last.chunks)]).trim();
      expect(`round ${round}: ${checked}`).toBe(`round ${round}: 0 []`);
    }
    const p = Bun.spawn(["python3", "-c", writer(disk.file, round)], { stdout: "pipe", stderr: "ignore" });
    const kill = setTimeout(() => process.kill(disk.pid, "SIGKILL"), 1000 + random() * 5000);
    const out = await new Response(p.stdout).text();
    await p.exited;
    clearTimeout(kill);
    await crashed(disk);
    const durable = Number(out.trim().split("\n").filter(Boolean).pop() ?? 0);
    last = { round, chunks: durable }; // (what it wrote past its last fsync may or may not be there)
    durableChunks += durable;
    console.log(`big-kill round ${round}: ${durable} MiB fsync'ed before the kill`);
  }
  // The kills came mid-write, with unsaved blocks left to recover.
  expect(durableChunks).toBeGreaterThan(0);
  expect(recovered).toBeGreaterThan(0);
  const disk = await mountDisk(args, { dir });
  expect(sh(["python3", "-c", checker(disk.file, last.round, last.chunks)]).trim()).toBe("0 []");
  await disk.unmount();
}, 600_000);

/** Kills a mount with SIGKILL (if still alive) and clears what it leaves: the dead mountpoint, its temp files. */
async function crashed(disk: { pid: number; mnt: string }): Promise<void> {
  try {
    process.kill(disk.pid, "SIGKILL");
  } catch {}
  await killHard(disk.pid);
  run(["umount", "-l", disk.mnt]);
  await cleanupDisks();
}

/**
 * Writes with a process that then holds the file open (a close would flush), and calls `then` once
 * the cache file has the bytes: they reach it moments after the write returns, as the stats say.
 */
async function writeAndHold(disk: { file: string; stats: string }, offset: number, from: string, then: () => void): Promise<void> {
  const script = `import os, sys, time\nfd = os.open(${JSON.stringify(disk.file)}, os.O_WRONLY)\nos.pwrite(fd, open(${JSON.stringify(from)}, 'rb').read(), ${offset})\nprint('written', flush=True)\ntime.sleep(30)`;
  const p = Bun.spawn(["python3", "-c", script], { stdout: "pipe", stderr: "ignore" });
  // FUSE without writeback caching sends each write(2) through: once it returns, the block is ours.
  await p.stdout.getReader().read();
  await waitFor("the cache file to have the written blocks", async () => /blocks not yet in the file\s+0\n/.test(await readFile(disk.stats, "utf8")));
  then();
  p.kill("SIGKILL");
  await p.exited;
}

function writeTemp(dir: string, name: string, data: Uint8Array): string {
  const path = join(dir, name);
  const fd = openSync(path, "w");
  writeSync(fd, data);
  closeSync(fd);
  return path;
}

test("a full file system under the cache file: one clear error, writes go on to storage, nothing is lost", async () => {
  const dir = workDir("full");
  const small = join(dir, "small");
  sh(["mkdir", "-p", small]);
  sh(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", small]);
  try {
    const cache = join(small, "cache");
    // 16 MiB of slots on 2 MiB of room, 1 MiB of memory: the file fills after a few blocks.
    const args = ["--blockSize=64k", "--size=16M", "--blockCacheSize=256", "--blockCacheMemory=1M", `--blockCacheFile=${cache}`];
    const disk = await mountDisk(args, { dir });
    const data = writeTemp(dir, "data", pattern(12 << 20, 7));
    sh(["dd", `if=${data}`, `of=${disk.file}`, "bs=1M", "conv=fsync,notrunc", "status=none"]);
    expect(sh(["cmp", data, disk.file, "-n", String(12 << 20)]).trim()).toBe("");
    await disk.unmount();
    const log = readFileSync(join(dir, "log"), "utf8");
    const errors = log.split("\n").filter((l) => /cache file: saving block/.test(l));
    expect(errors.length).toBe(1);
    expect(errors[0]).toMatch(/\(--blockCacheFile=\S+\/cache: no space left on device\)/); // names the flag and the file
    // The file loads again, and what it holds is right.
    const again = await mountDisk(args, { dir });
    expect(sh(["cmp", data, again.file, "-n", String(12 << 20)]).trim()).toBe("");
    await again.unmount();
    // Every byte is in storage: a mount without the cache reads it back.
    const plain = await mountDisk(["--blockSize=64k", "--size=16M", "--blockCacheSize=0"], { dir: workDir("full-read"), blocks: disk.blocks });
    expect(sh(["cmp", data, plain.file, "-n", String(12 << 20)]).trim()).toBe("");
    await plain.unmount();
  } finally {
    run(["umount", "-l", small]);
  }
}, 120_000);
