/**
 * The block cache against a model, with no HTTP: concurrent clients read and write the backed file
 * (so reads span blocks) over a block cache over a memory store that answers after random delays
 * and, in one case, fails writes. Every read is judged against the versions it may legally
 * return, the cache's invariant check runs after every step, and after the last flush the store
 * holds exactly the last writes. The seed is printed; MODEL_SEED=N replays one.
 *
 * The cases with a cache file hold few blocks in memory, so bytes go back and forth between memory
 * and the file. Copies of the file taken at random moments stand for a crash there: each must
 * load, and every unsaved block it would recover must be no older than what the last completed
 * flush made durable (a recovery must never write older bytes over them).
 */
import { expect, test } from "bun:test";
import { BackedFile } from "../../src/file/backed-file.ts";
import { Errno, FsError } from "../../src/errors.ts";
import { Logger } from "../../src/log.ts";
import { BlockCache, type BlockCacheOptions } from "../../src/store/block-cache/block-cache.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { VerifiedStore } from "../../src/store/block-store.ts";
import { plainCodec } from "../helpers/stores.ts";
import type { StatGroup } from "../../src/util/stat-group.ts";
import { Layer } from "../../src/store/layer.ts";
import { seededRandom } from "../helpers/data.ts";
import { CacheFile } from "../../src/store/block-cache/cache-file.ts";
import { BufferPool } from "../../src/memory/buffer-pool.ts";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BS = 64;
const UNIT = 16;
const BLOCKS = 48;
const UNITS = (BS * BLOCKS) / UNIT;

/**
 * A memory store whose answers come after random delays, and whose writes fail at `failRate`.
 * With `spares`, it reads as the S3 store's GETs do: into a spare buffer of the cache's, which
 * first moves away (every view of it here is detached) and comes back holding the body.
 */
class Delayed extends Layer<VerifiedStore> {
  constructor(inner: VerifiedStore, private readonly random: () => number, private readonly failRate: number, private readonly spares?: BufferPool) {
    super(inner);
  }
  /** Reads that went into a spare buffer. */
  spareReads = 0;
  override get freshReads(): boolean {
    return this.spares !== undefined || this.inner.freshReads;
  }
  private pause(): Promise<void> {
    const ms = this.random() < 0.3 ? 0 : this.random() * 4;
    return new Promise((r) => setTimeout(r, ms));
  }
  async readBlock(block: number): Promise<Uint8Array> {
    await this.pause();
    const data = await this.inner.readBlock(block);
    if (!this.spares) return data;
    const spare = this.spares.takeSpare();
    if (spare) this.spareReads++;
    const body = spare ? structuredClone(spare, { transfer: [spare.buffer as ArrayBuffer] }) : new Uint8Array(data.length);
    body.set(data);
    return body;
  }
  async writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    await this.pause();
    if (this.random() < this.failRate) throw new FsError(Errno.EIO, "injected");
    await this.inner.writeBlock(block, data);
  }
  protected ownStats(): StatGroup {
    return { layer: "delayed", values: [] };
  }
}

/** A unit's bytes at a version (0: zeros): its number and the version, repeated. */
function stamp(unit: number, version: number, into: Uint8Array, at: number): void {
  if (version === 0) return void into.fill(0, at, at + UNIT);
  const v = new DataView(into.buffer, into.byteOffset + at, UNIT);
  v.setUint32(0, unit + 1, true);
  v.setUint32(4, version, true);
  v.setUint32(8, unit ^ 0x5a5a5a5a, true);
  v.setUint32(12, version ^ 0xa5a5a5a5, true);
}

function identify(unit: number, bytes: Uint8Array, at: number): string | number {
  const v = new DataView(bytes.buffer, bytes.byteOffset + at, UNIT);
  const owner = v.getUint32(0, true) - 1;
  const version = v.getUint32(4, true);
  if (owner === -1 && version === 0 && v.getUint32(8, true) === 0 && v.getUint32(12, true) === 0) return 0;
  if (v.getUint32(8, true) !== ((owner ^ 0x5a5a5a5a) >>> 0) || v.getUint32(12, true) !== ((version ^ 0xa5a5a5a5) >>> 0)) return "bytes of no write";
  return owner === unit ? version : `unit ${owner}'s bytes`;
}

interface Case {
  name: string;
  options: Partial<BlockCacheOptions>;
  failRate?: number;
  /** Kept in a cache file. */
  file?: boolean;
  /** Saves to the cache file fail after this many, as on a disk that fills up. */
  savesUntilFull?: number;
  /** The store reads bodies into the cache's spare buffers. */
  spares?: boolean;
}

const cases: Case[] = [
  { name: "a 2-block cache", options: { size: 2, maxDirty: 2 } },
  { name: "4 blocks, one dirty at most", options: { size: 4, maxDirty: 1 } },
  { name: "8 blocks, read-ahead, a write delay", options: { size: 8, maxDirty: 8, readAhead: 3, readAheadTrigger: 1, writeDelayMs: 2 } },
  { name: "8 blocks, write-through", options: { size: 8, maxDirty: 8, sync: true } },
  { name: "6 blocks, failing writes", options: { size: 6, maxDirty: 6 }, failRate: 0.05 },
  { name: "4 blocks, the first 3 protected", options: { size: 4, maxDirty: 4, numProtected: 3 } },
  { name: "3 blocks, read-ahead, bodies read into spare buffers", options: { size: 3, maxDirty: 3, readAhead: 2, readAheadTrigger: 1 }, spares: true },
  { name: "a cache file of 24 blocks, 3 in memory", options: { size: 24, maxDirty: 24, memoryBlocks: 3 }, file: true },
  { name: "a cache file, 2 in memory, read-ahead, failing writes", options: { size: 12, maxDirty: 12, memoryBlocks: 2, readAhead: 3, readAheadTrigger: 1 }, file: true, failRate: 0.05 },
  { name: "a cache file, 4 in memory, write-through", options: { size: 16, maxDirty: 16, memoryBlocks: 4, sync: true }, file: true },
  { name: "a cache file on a disk that fills up, 2 in memory", options: { size: 16, maxDirty: 16, memoryBlocks: 2, threads: 1, writeDelayMs: 20 }, file: true, savesUntilFull: 40 },
];

for (const c of cases) {
  test(`block cache model: ${c.name}`, async () => {
    const seed = Number(process.env.MODEL_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`block cache model "${c.name}": seed ${seed} (replay with MODEL_SEED=${seed})`);
    const random = seededRandom(seed);
    const memory = plainCodec(new MemoryObjects(BS, BLOCKS));
    const options: BlockCacheOptions = {
      size: 4, memoryBlocks: 4, threads: 3, writeDelayMs: 0, maxDirty: 4, timeoutMs: 0, sync: false, readAhead: 0, readAheadTrigger: 2,
      numProtected: 0, log: new Logger({ kind: "file", path: "/dev/null" }), ...c.options,
    };
    const spares = c.spares ? new BufferPool(BS) : undefined;
    options.spares = spares;
    const dir = mkdtempSync(join(tmpdir(), "model-"));
    const path = join(dir, "cache");
    const slots = options.size + 16;
    const opened = c.file ? CacheFile.open(path, BS, BLOCKS, slots) : undefined;
    if (opened && c.savesUntilFull !== undefined) {
      const writeSlot = opened.file.writeSlot.bind(opened.file);
      let saves = 0;
      opened.file.writeSlot = (slot, data) => (saves++ >= c.savesUntilFull! ? Promise.reject(new Error("ENOSPC: injected")) : writeSlot(slot, data));
    }
    const store = new Delayed(memory, random, c.failRate ?? 0, spares);
    const cache = new BlockCache(store, options, opened && { file: opened.file, blocks: [], check: undefined });
    cache.resume();
    // Per unit: where in its history is the write the last completed flush made durable.
    const durable = new Array<number>(UNITS).fill(0);
    let crashes = 0;
    /** Loads a copy of the cache file as it is now, as a crash here would leave it. */
    async function crashHere(): Promise<void> {
      const copy = join(dir, `crash-${crashes++}`);
      copyFileSync(path, copy);
      const floor = [...durable];
      const { file, blocks } = CacheFile.open(copy, BS, BLOCKS, slots);
      const bytes = new Uint8Array(BS);
      for (const b of blocks.filter((b) => b.dirty)) {
        if (b.zero) bytes.fill(0);
        else if (!(await file.readSlot(b.slot, b.crc, bytes))) continue; // torn: the older version is what recovery keeps
        for (let i = 0; i < BS / UNIT; i++) {
          const unit = b.block * (BS / UNIT) + i;
          const got = identify(unit, bytes, i * UNIT);
          const order = history[unit]!.map(([v]) => v);
          if (typeof got !== "number" || order.lastIndexOf(got) < floor[unit]!) {
            wrong.push(`crash ${crashes}: block ${b.block} would recover unit ${unit} at ${got}, older than the durable ${order[floor[unit]!]}`);
          }
        }
      }
      file.close();
      rmSync(copy);
    }
    async function flush(): Promise<void> {
      const done = history.map((h) => h.findLastIndex(([, , end]) => end !== Infinity));
      await cache.flush();
      done.forEach((at, u) => (durable[u] = Math.max(durable[u]!, at)));
    }
    const file = new BackedFile(cache, cache);
    // Per unit: [version, start, end] of every write, in order (writes to a block never overlap).
    const history: [number, number, number][][] = Array.from({ length: UNITS }, () => [[0, 0, 0]]);
    const blockBusy = new Set<number>();
    let clock = 0;
    let nextVersion = 1;
    const wrong: string[] = [];
    let reads = 0;
    let writes = 0;
    const check = () => cache.checkInvariants();

    const legal = (unit: number, start: number, end: number): number[] => {
      const h = history[unit]!;
      let last = 0;
      h.forEach(([, , e], i) => e < start && (last = i));
      return [h[last]![0], ...h.slice(last + 1).filter(([, s]) => s < end).map(([v]) => v)];
    };

    async function write(first: number, n: number, zero: boolean): Promise<void> {
      const blocks = new Set<number>();
      for (let u = first; u < first + n; u++) blocks.add(Math.floor((u * UNIT) / BS));
      if ([...blocks].some((b) => blockBusy.has(b))) return;
      blocks.forEach((b) => blockBusy.add(b));
      const data = new Uint8Array(n * UNIT);
      const entries: [number, number, number][] = [];
      for (let i = 0; i < n; i++) {
        const version = zero ? 0 : nextVersion++;
        stamp(first + i, version, data, i * UNIT);
        const entry: [number, number, number] = [version, ++clock, Infinity];
        history[first + i]!.push(entry);
        entries.push(entry);
      }
      try {
        if (zero) await file.zeroRange(first * UNIT, n * UNIT);
        else await file.write(first * UNIT, data);
        const end = ++clock;
        for (const e of entries) e[2] = end;
        writes++;
      } catch (err) {
        if (!c.failRate) throw err; // a write that failed may or may not have landed: its end stays open
      } finally {
        blocks.forEach((b) => blockBusy.delete(b));
        check();
      }
    }

    async function read(first: number, n: number): Promise<void> {
      const start = ++clock;
      const pieces = file.readNow(first * UNIT, n * UNIT) ?? (await file.read(first * UNIT, n * UNIT));
      const end = ++clock;
      const bytes = new Uint8Array(n * UNIT);
      let at = 0;
      for (const p of pieces) {
        bytes.set(p, at);
        at += p.length;
      }
      for (let i = 0; i < n; i++) {
        const got = identify(first + i, bytes, i * UNIT);
        const ok = legal(first + i, start, end);
        if (typeof got !== "number" || !ok.includes(got)) wrong.push(`unit ${first + i}: ${got}, legal ${ok.join(",")}`);
      }
      reads++;
      check();
    }

    async function client(steps: number): Promise<void> {
      for (let s = 0; s < steps; s++) {
        const r = random();
        const n = 1 + Math.floor(random() * (r < 0.5 ? 12 : 5));
        const first = Math.floor(random() * (UNITS - n));
        if (r < 0.45) await read(first, n);
        else if (r < 0.85) await write(first, n, false);
        else if (r < 0.93) await write(first, n, true);
        else await flush().catch((err) => {
          if (!c.failRate) throw err;
        });
        check();
        if (c.file && random() < 0.03) await crashHere();
      }
    }

    // A hang shows up as a timeout: what the cache held then says where it stuck.
    const hang = setTimeout(() => console.log(`block cache model "${c.name}" still running:`, JSON.stringify(cache.stats())), 50_000);
    await Promise.all(Array.from({ length: 4 }, () => client(400)));
    clearTimeout(hang);
    while (cache.dirtyCount > 0) await cache.flush().catch(() => {});
    check();
    expect(wrong.slice(0, 10)).toEqual([]);
    expect(reads).toBeGreaterThan(100);
    if (spares) expect(store.spareReads).toBeGreaterThan(10);
    expect(writes).toBeGreaterThan(100);
    // Stored: each unit's last write.
    for (let u = 0; u < UNITS; u++) {
      const block = Math.floor((u * UNIT) / BS);
      const stored = await memory.readBlock(block);
      const last = history[u]!.at(-1)![0];
      expect(`unit ${u}: ${identify(u, stored, (u * UNIT) % BS)}`).toBe(`unit ${u}: ${last}`);
    }
    await cache.close();
    if (c.file) expect(crashes).toBeGreaterThan(10);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);
}
