/** The block cache file: reload, crash safety at any instant, and recovery of unsaved blocks. */
import { afterEach, expect, test } from "bun:test";
import { chmodSync, closeSync, openSync, readFileSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CacheFile, type LoadedBlock } from "../src/store/block-cache/cache-file.ts";
import { runtime } from "../src/runtime/index.ts";
import { seededRandom } from "./helpers/data.ts";
import { MemoryObjects } from "../src/object/memory-objects.ts";
import type { ObjectToStore } from "../src/object/object-store.ts";
import { md5Hex } from "../src/util/md5.ts";
import { cacheInFile, statOf } from "./helpers/stores.ts";
import { BINARY, cleanupDisks, isMounted, killHard, mountDisk, pattern, run, sh, tempDir, waitFor } from "./helpers/disk.ts";

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

const BS = 4096;

/** A loaded block's bytes as its slot holds them: null for the zero block, "torn" if they fail their CRC. */
async function bytesOf(file: CacheFile, b: LoadedBlock): Promise<Uint8Array | null | "torn"> {
  if (b.zero) return null;
  const into = new Uint8Array(BS);
  return (await file.readSlot(b.slot, b.crc, into)) ? into : "torn";
}

test("blocks come back after reopening, clean and dirty, with the MD5 of clean ones", async () => {
  const path = join(workDir("cf"), "cache");
  const { file } = CacheFile.open(path, BS, 100, 8);
  file.store(1, pattern(BS, 1), false);
  file.store(2, pattern(BS, 2), true);
  file.store(3, null, true);
  file.close();
  const again = CacheFile.open(path, BS, 100, 8);
  const byBlock = new Map(again.blocks.map((b) => [b.block, b]));
  expect(await bytesOf(again.file, byBlock.get(1)!)).toEqual(pattern(BS, 1));
  expect(byBlock.get(1)!.dirty).toBe(false);
  expect(byBlock.get(1)!.md5).toMatch(/^[0-9a-f]{32}$/);
  expect(await bytesOf(again.file, byBlock.get(2)!)).toEqual(pattern(BS, 2));
  expect(byBlock.get(2)!.dirty).toBe(true);
  expect(byBlock.get(3)!.zero).toBe(true);
  again.file.close();
});

test("a crash between writing a new version and freeing the old one: the newer wins; a torn slot fails its CRC", async () => {
  const path = join(workDir("cf"), "cache");
  const { file } = CacheFile.open(path, BS, 100, 8);
  const old = file.store(5, pattern(BS, 10), true)!;
  const fresh = file.store(5, pattern(BS, 11), true)!; // (crash here: `old` is never released)
  expect(fresh).not.toBe(old);
  file.store(6, pattern(BS, 12), true);
  file.close();
  // Tear block 6's slot, as a kill in the middle of its write would.
  const dataStart = Math.ceil((4096 + 8 * 40) / 4096) * 4096;
  const fd = openSync(path, "r+");
  const slot6 = CacheFile.open(path, BS, 100, 8);
  const six = slot6.blocks.find((b) => b.block === 6)!.slot;
  slot6.file.close();
  writeSync(fd, new Uint8Array(100).fill(0xee), 0, 100, dataStart + six * BS + 50);
  closeSync(fd);
  const loaded = CacheFile.open(path, BS, 100, 8);
  expect(await bytesOf(loaded.file, loaded.blocks.find((b) => b.block === 5)!)).toEqual(pattern(BS, 11));
  expect(await bytesOf(loaded.file, loaded.blocks.find((b) => b.block === 6)!)).toBe("torn");
  loaded.file.close();
});

test("another slot count is a resize that keeps the blocks (unsaved first); another disk size with unsaved blocks is refused", async () => {
  const path = join(workDir("cf"), "cache");
  const { file } = CacheFile.open(path, BS, 100, 8);
  for (let b = 0; b < 6; b++) file.store(b, pattern(BS, b + 1), b >= 4);
  file.close();
  const smaller = CacheFile.open(path, BS, 100, 3);
  expect(smaller.blocks.length).toBe(3);
  expect(smaller.blocks.filter((b) => b.dirty).map((b) => b.block).sort()).toEqual([4, 5]); // unsaved ones are kept first
  for (const b of smaller.blocks) expect(await bytesOf(smaller.file, b)).toEqual(pattern(BS, b.block + 1));
  smaller.file.close();
  expect(() => CacheFile.open(path, BS * 2, 50, 3)).toThrow(/unsaved blocks of a disk with other sizes/);
});

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

test("read-ahead brings blocks back from the cache file once memory is full: a sequential reader finds them there", async () => {
  const dir = workDir("cf-ahead");
  const N = 96;
  const { cache, file } = cacheInFile(new MemoryObjects(BS, N), join(dir, "cache"), N + 8, { size: N, memoryBlocks: 8, maxDirty: N, readAhead: 3, readAheadTrigger: 1 });
  const value = (name: string) => statOf(cache, name);
  try {
    for (let b = 0; b < N; b++) await cache.writeBlock(b, pattern(BS, b + 1));
    await cache.flush();
    await waitFor("every block in the cache file", () => value("blocks not yet in the file") === 0);
    expect(value("blocks in memory")).toBe(8); // full, of the last blocks written
    cache.resetStats();
    for (let b = 0; b < N; b++) {
      expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
      await new Promise((r) => setTimeout(r, 2)); // the reader's pace: read-ahead keeps up
    }
    expect(value("cache file reads")).toBe(N); // each block once
    // All but the first few were in memory when the reader came: read-ahead had brought them.
    expect(value("read-ahead hits")).toBeGreaterThanOrEqual(N - 4);
    expect(value("blocks in memory")).toBeLessThanOrEqual(8);
    // A reader faster than the file: it catches up with read-ahead, which still keeps ahead of it
    // (what the reader waited for counts as read), and each block still comes from the file once.
    const readSlot = file.readSlot.bind(file);
    file.readSlot = (slot, crc, into) => new Promise((r) => setTimeout(r, 5)).then(() => readSlot(slot, crc, into));
    cache.resetStats();
    for (let b = 0; b < N; b++) expect(await cache.readBlock(b)).toEqual(pattern(BS, b + 1));
    expect(value("read-ahead fetches")).toBeGreaterThanOrEqual(N - 4);
    expect(value("cache file reads")).toBe(N);
  } finally {
    await cache.close();
  }
});

test("with a cache file a block is hashed once: its upload carries the MD5 its record keeps", async () => {
  const dir = workDir("cf-md5");
  const N = 16;
  const carried = new Map<number, string | undefined>();
  class Recording extends MemoryObjects {
    override async put(block: number, object: ObjectToStore): Promise<undefined> {
      carried.set(block, object.md5);
      return super.put(block, object);
    }
  }
  const path = join(dir, "cache");
  const { cache } = cacheInFile(new Recording(BS, N), path, N + 8, { size: N, memoryBlocks: N, maxDirty: N });
  try {
    for (let b = 1; b < N; b++) await cache.writeBlock(b, pattern(BS, b));
    await cache.flush();
  } finally {
    await cache.close();
  }
  for (let b = 1; b < N; b++) expect(carried.get(b)).toBe(md5Hex(pattern(BS, b)));
  const again = CacheFile.open(path, BS, N, N + 8);
  try {
    expect(again.blocks.map((r) => r.block).sort((x, y) => x - y)).toEqual(Array.from({ length: N - 1 }, (_, i) => i + 1));
    for (const record of again.blocks) {
      expect(record.dirty).toBe(false);
      expect(record.md5).toBe(md5Hex(pattern(BS, record.block)));
    }
  } finally {
    again.file.close();
  }
});

test("a record damaged on disk is never acted on: its block is read from storage, with one log line", async () => {
  const dir = workDir("damaged");
  const path = join(dir, "cache");
  const data = pattern(BS, 51);
  const { file } = CacheFile.open(path, BS, 64, 8);
  file.store(5, data, false);
  file.store(6, null, true); // a zero-dirty record: recovery would delete block 6
  file.close();
  // Flip one byte in each record: the block number of the first, the state of the second.
  const fd = openSync(path, "r+");
  const one = new Uint8Array(1);
  for (const [slot, at] of [[0, 4], [1, 0]] as const) {
    readSync(fd, one, 0, 1, 4096 + slot * 40 + at);
    one[0]! ^= 0x01;
    writeSync(fd, one, 0, 1, 4096 + slot * 40 + at);
  }
  closeSync(fd);
  const reopened = CacheFile.open(path, BS, 64, 8);
  expect(reopened.blocks).toEqual([]);
  expect(reopened.damaged).toBe(2);
  reopened.file.close();

  // Random bytes over the whole directory: nothing is taken for a block.
  const garbage = openSync(path, "r+");
  writeSync(garbage, pattern(8 * 40, 53), 0, 8 * 40, 4096);
  closeSync(garbage);
  const again = CacheFile.open(path, BS, 64, 8);
  expect(again.blocks).toEqual([]);
  expect(again.damaged).toBe(8);
  again.file.close();
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

test("a version 1 cache file (records without their own CRC) is read and rewritten, unsaved blocks kept", async () => {
  const dir = workDir("v1");
  const path = join(dir, "cache");
  const data = pattern(BS, 61);
  // A version 1 file as the previous release wrote it: header, 32-byte records, page-aligned slots.
  const header = new Uint8Array(4096);
  const h = new DataView(header.buffer);
  h.setUint32(0, 0x53334243, true);
  h.setUint32(4, 1, true);
  h.setUint32(8, BS, true);
  h.setUint32(12, 8, true);
  h.setUint32(16, 64, true);
  h.setUint32(20, 0xabcdef01, true);
  const record = new Uint8Array(32);
  const r = new DataView(record.buffer);
  r.setUint8(0, 2); // dirty
  r.setUint32(4, 9, true);
  r.setUint32(8, 1, true);
  r.setUint32(12, runtime.crc32(data), true);
  const fd = openSync(path, "w+");
  writeSync(fd, header, 0, 4096, 0);
  writeSync(fd, record, 0, 32, 4096);
  writeSync(fd, data, 0, BS, 8192);
  closeSync(fd);
  const { file, blocks, tokens } = CacheFile.open(path, BS, 64, 8);
  expect(blocks.map((b) => [b.block, b.dirty])).toEqual([[9, true]]);
  expect(await bytesOf(file, blocks[0]!)).toEqual(data);
  expect(tokens).toEqual([0xabcdef01]);
  file.close();
  const v2 = CacheFile.open(path, BS, 64, 8);
  expect(v2.blocks.map((b) => [b.block, b.dirty])).toEqual([[9, true]]);
  v2.file.close();
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
