/**
 * The block cache as a layer: its parts tied together, and the life of a mount.
 *
 * An LRU of blocks with write-back and read-ahead, in memory or (with --blockCacheFile) in a
 * local file with a bounded working set in memory. Each part is a file of this folder and reaches
 * the others through a narrow interface of its own:
 *
 * - entries.ts: the entries, the grid of their states and its check; LRU order and eviction.
 * - read-path.ts: hits, misses and read-ahead's fetches (read-ahead.ts: how far ahead).
 * - write-path.ts: writes, and the waits for room and for old bytes.
 * - write-back.ts: write-back and flush (write-back-queue.ts: in which order).
 * - residency.ts: where bytes live, memory alone or memory and the cache file
 *   (file-residency.ts: paging; file-saves.ts: saves and their MD5s; cache-file.ts: the file).
 * - lending.ts: buffers lent, reused and let go, and the wait for room.
 * - reload-check.ts: clean blocks a cache file reloads, checked against storage.
 */
import type { Logger } from "../../log.ts";
import type { BlockStore, ImmediateStore } from "../block-store.ts";
import { COUNTER, type Stat, type StatGroup } from "../../util/stat-group.ts";
import { Layer } from "../layer.ts";
import { BufferPool } from "../../memory/buffer-pool.ts";
import type { CacheFile, LoadedBlock } from "./cache-file.ts";
import { cacheCounters, Entries, type EntriesHost, IN_FILE } from "./entries.ts";
import { FileResidency, type FileResidencyHost } from "./file-residency.ts";
import { Lending, Room } from "./lending.ts";
import { ReadPath, type ReadHost } from "./read-path.ts";
import { ReloadCheck, type ReloadCheckHost } from "./reload-check.ts";
import { MemoryResidency, type Residency } from "./residency.ts";
import { WriteBack, type WriteBackHost } from "./write-back.ts";
import { WritePath, type WriteHost } from "./write-path.ts";

export interface BlockCacheOptions {
  /** Most blocks held (clean and dirty), in memory or in the cache file. */
  size: number;
  /** With a cache file: most blocks whose bytes are held in memory too. */
  memoryBlocks: number;
  /** Parallel write-backs. */
  threads: number;
  writeDelayMs: number;
  /** Most dirty blocks; writers of new dirty blocks wait beyond it. */
  maxDirty: number;
  /** Clean blocks unused this long are dropped (0: never). */
  timeoutMs: number;
  /** Writes return only once stored. */
  sync: boolean;
  readAhead: number;
  readAheadTrigger: number;
  /** Blocks below this number are evicted only when no other clean block can be. */
  numProtected: number;
  log: Logger;
  /** Spare buffers shared with the store below (whose GETs fill them); else the cache keeps its own. */
  spares?: BufferPool;
}

/** A cache file and what it held when opened; `check`: how its clean blocks are checked against storage (none: trusted). */
export interface FromFile {
  file: CacheFile;
  blocks: LoadedBlock[];
  check: Omit<ReloadCheckHost, "drop" | "log"> | undefined;
}

/** What the life of a mount (app/serve.ts) needs of the cache. */
export interface MountedCache extends ImmediateStore {
  /** Most blocks whose bytes are held in memory, and how many are dirty now. */
  readonly memoryCapacity: number;
  readonly dirtyCount: number;
  /** Told the size of each block buffer let go (for the memory budget). */
  onBlockDropped: ((bytes: number) => void) | undefined;
  announceFileToken(token: number): void;
  setFileToken(token: number): void;
  resume(): void;
  keepUnstored(): Promise<{ kept: number; lost: number }>;
}

/** The parts of the cache: each reaches the others through this record, as its host interface allows. */
class Parts implements EntriesHost, ReadHost, WriteHost, WriteBackHost, FileResidencyHost {
  readonly counters = cacheCounters();
  readonly room = new Room();
  readonly lending: Lending;
  readonly check: ReloadCheck | undefined;
  readonly entries: Entries;
  readonly residency: Residency;
  readonly writeBack: WriteBack;
  readonly reads: ReadPath;
  readonly writes: WritePath;

  constructor(
    readonly inner: BlockStore,
    readonly o: BlockCacheOptions,
    fromFile: FromFile | undefined,
  ) {
    // In this order: a part takes at construction those before it that every request uses.
    this.lending = new Lending(o.spares ?? new BufferPool(inner.blockSize), this.room);
    this.residency = fromFile ? new FileResidency(fromFile.file, this) : new MemoryResidency(this);
    this.entries = new Entries(this);
    // With a cache file, write-back waits until the mount is cleared to write (see resume).
    this.writeBack = new WriteBack(this, fromFile !== undefined);
    const toCheck = fromFile ? this.reload(fromFile.blocks) : [];
    const check = fromFile?.check;
    this.check = check && toCheck.length > 0 ? new ReloadCheck(toCheck, { ...check, log: o.log, drop: (block) => this.entries.discard(block) }) : undefined;
    this.reads = new ReadPath(this);
    this.writes = new WritePath(this);
  }

  /** The blocks a cache file held, as entries: dirty ones are queued, clean ones returned to be checked. */
  private reload(blocks: LoadedBlock[]): { block: number; md5: string | null }[] {
    const toCheck: { block: number; md5: string | null }[] = [];
    for (const b of blocks) {
      const entry = this.entries.create(b.block, "clean", false);
      entry.data = b.zero ? null : IN_FILE;
      entry.slot = b.slot;
      entry.slotCrc = b.crc;
      if (b.dirty) {
        entry.version = entry.slotVersion = 1;
        entry.state = "dirty";
        this.entries.dirty.add(entry);
        this.writeBack.queue(entry);
      } else toCheck.push({ block: b.block, md5: b.zero ? null : b.md5! });
    }
    return toCheck;
  }
}

export class BlockCache extends Layer implements MountedCache {
  private readonly parts: Parts;
  /** The parts every request goes through, at hand. */
  private readonly reads: ReadPath;
  private readonly writes: WritePath;
  private readonly sweeper: ReturnType<typeof setInterval> | undefined;

  /** With `fromFile`, the cache is kept in that file (see cache-file.ts), starting with its blocks. */
  constructor(inner: BlockStore, o: BlockCacheOptions, fromFile?: FromFile) {
    super(inner);
    this.parts = new Parts(inner, o, fromFile);
    this.reads = this.parts.reads;
    this.writes = this.parts.writes;
    if (o.timeoutMs > 0) {
      this.sweeper = setInterval(() => this.parts.entries.dropIdle(), Math.max(50, o.timeoutMs / 2));
      this.sweeper.unref?.();
    }
  }

  /** Readers get the cached bytes themselves. */
  override get freshReads(): boolean {
    return false;
  }

  // A hit, and a write that lands at once, are answered without an async function (see read-path.ts).

  readBlock(block: number): Promise<Uint8Array> {
    const bytes = this.reads.hit(block);
    return bytes ? Promise.resolve(bytes) : this.reads.miss(block);
  }

  override readBlockPart(block: number, offset: number, length: number): Promise<Uint8Array> {
    const now = this.readBlockPartNow(block, offset, length);
    return now ? Promise.resolve(now) : this.reads.miss(block).then((data) => data.subarray(offset, offset + length));
  }

  readBlockPartNow(block: number, offset: number, length: number): Uint8Array | undefined {
    return this.reads.hit(block)?.subarray(offset, offset + length);
  }

  /**
   * Whether a cached block reads as zeros: true or false when the cache holds it (its bytes are
   * what reads return), undefined when it does not (the layers below know).
   */
  cachedZero(block: number): boolean | undefined {
    return this.reads.cachedZero(block);
  }

  writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    return this.writes.whole(block, data);
  }

  override writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    return this.writes.part(block, offset, data);
  }

  writeBlockPartNow(block: number, offset: number, data: Uint8Array): boolean {
    return this.writes.partNow(block, offset, data);
  }

  /** Every block dirty now is stored when this resolves; the first that fails rejects it with EIO (see WriteBack.storedAll). */
  override async flush(): Promise<void> {
    await this.parts.writeBack.storedAll();
    await this.inner.flush();
  }

  /** Most blocks whose bytes are held in memory (see the residencies' memoryCapacity). */
  get memoryCapacity(): number {
    return this.parts.residency.memoryCapacity;
  }

  get dirtyCount(): number {
    return this.parts.entries.dirty.size;
  }

  /**
   * Told the size of each block buffer the cache lets go (evicted, or replaced by a copy): the
   * process's memory budget collects such garbage in step with it (see memory-budget.ts).
   */
  get onBlockDropped(): ((bytes: number) => void) | undefined {
    return this.parts.lending.onBlockDropped;
  }

  set onBlockDropped(told: ((bytes: number) => void) | undefined) {
    this.parts.lending.onBlockDropped = told;
  }

  override async close(): Promise<void> {
    const { entries, writeBack, residency, lending } = this.parts;
    this.resume();
    writeBack.closing(); // every write-back is due now
    while (entries.dirty.size > 0) await this.flush();
    writeBack.stopTimer();
    if (this.sweeper) clearInterval(this.sweeper);
    // What is not in the file yet goes there too: the next mount finds every block it held.
    await residency.close();
    await this.inner.close();
    lending.buffers.close();
  }

  /**
   * Gives up storing (the unmount gave up, and the process exits next): no write-back starts any
   * more, and every dirty block's newest bytes go to the cache file, whose records keep them
   * unsaved for --blockCacheRecoverDirtyBlocks. Returns how many dirty blocks the file keeps, and
   * how many it could not (without a file: none kept).
   */
  keepUnstored(): Promise<{ kept: number; lost: number }> {
    this.parts.writeBack.halt();
    if (this.sweeper) clearInterval(this.sweeper);
    return this.parts.residency.keepUnstored(this.parts.entries.dirty);
  }

  /** Records in the cache file the token of a mount about to set its flag (see CacheFile.announceToken). */
  announceFileToken(token: number): void {
    this.parts.residency.announceToken(token);
  }

  /** Records in the cache file which mount uses it now. */
  setFileToken(token: number): void {
    this.parts.residency.setToken(token);
  }

  /** Lets write-back start (after the mounted flag says the disk is ours), and the check of a reloaded file. */
  resume(): void {
    this.parts.check?.start();
    this.parts.writeBack.resume();
  }

  /** Throws if the grid of states (entries.ts) does not hold (for tests: it walks every entry). */
  checkInvariants(): void {
    this.parts.entries.checkInvariants();
  }

  protected ownStats(): StatGroup {
    const { counters, entries, lending, residency } = this.parts;
    const values: Stat[] = [
      ...counters.entries(), ["read-ahead depth", this.reads.aheadDepth], ["blocks cached", entries.map.size], ["blocks dirty", entries.dirty.size],
      ["buffers faulted in ahead", lending.buffers.made.ahead, COUNTER], ["buffers faulted in on use", lending.buffers.made.onUse, COUNTER],
    ];
    residency.stats(values);
    return { layer: "block cache", values };
  }
}
