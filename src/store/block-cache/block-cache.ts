/**
 * The block cache: an LRU of blocks with write-back and read-ahead, in memory or (with
 * --blockCacheFile) in a local file with a bounded working set in memory.
 *
 * Writes land in the cache and return; write-backs to the store below run several at once, in
 * the order write-back-queue.ts keeps. `flush` (fsync, close, unmount) returns only when every
 * block dirtied before it is stored; a failed write-back fails the flush with EIO and the block
 * stays dirty. Sequential readers get --readAhead fetches kept in flight ahead of them. Freed
 * buffers are reused through buffer-pool.ts: the pool may be shared with the store below, whose
 * GETs then read bodies into them.
 *
 * With a cache file (cache-file.ts), every block's bytes are saved to a slot of the file in the
 * background (SAVES_IN_FLIGHT at a time), and a block whose current bytes are saved may drop them
 * from memory (`data` is then IN_FILE) once more than --blockCacheMemory is held: reads and
 * write-backs read them back from the file. The file holds as many blocks as --blockCacheSize,
 * and so may hold far more dirty blocks than memory. A slot never holds a version older than the
 * one stored below: a write-back that passes the saved version frees the slot at once, so that a
 * crash can never bring the older bytes back.
 *
 * This file is over 400 lines on purpose: every move of the state table below is one synchronous
 * step over the entries, the dirty set, the queues and the file's slots together, so they live in
 * one class.
 *
 * Buffers: a block's bytes lent to an upload or a save, or read from a store below that keeps its
 * bytes, are not ours to change, so a write copies them first; otherwise writes change the cached
 * bytes in place. A reader gets the cached bytes themselves, valid for its turn of the event loop
 * (see block-store.ts).
 *
 * Each entry is in one state (`state`), and only these moves happen:
 *
 * | state     | its bytes                         | counts as dirty | queued for write-back | evictable |
 * |-----------|-----------------------------------|-----------------|-----------------------|-----------|
 * | loading   | on their way from the store below | no              | no                    | no        |
 * | clean     | what the store below has          | no              | no                    | yes       |
 * | dirty     | newer than the store below        | yes             | yes, in one queue     | no        |
 * | uploading | being stored below                | yes             | no                    | no        |
 * | redirtied | written again while uploading     | yes             | when the upload ends  | no        |
 *
 * - (none) -> loading -> clean, or (none) on a failed read; (none) -> dirty by a write that needs
 *   no old bytes, made room for before the entry exists, so it can never be the one evicted.
 * - clean -> dirty, dirty -> uploading, uploading -> redirtied by writes; write-back ends
 *   uploading -> clean, or -> dirty (redirtied, or failed: queued for a retry).
 * - clean -> (none) by eviction; nothing else leaves the map, so one block never has two entries.
 * - Apart from the state, clean and dirty bytes may be in memory or IN_FILE (an upload reads
 *   them back before it starts); bytes lent to an upload or a save stay in memory.
 * `checkInvariants` asserts the table; the tests run it after every step.
 */
import { Errno, FsError, messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BlockStore, ImmediateStore } from "../block-store.ts";
import type { StatGroup } from "../../util/stat-group.ts";
import { DONE, isAllZero, ZERO_WRITES_IN_FLIGHT } from "../block-store.ts";
import { Counters } from "../../util/counters.ts";
import { Md5Batch } from "../../util/md5.ts";
import { runtime } from "../../runtime/index.ts";
import { Layer } from "../layer.ts";
import type { CacheFile, LoadedBlock } from "./cache-file.ts";
import { BufferPool } from "../../memory/buffer-pool.ts";
import { WriteBackQueue } from "./write-back-queue.ts";
import { ReadAhead } from "./read-ahead.ts";
import { ReloadCheck, type ReloadCheckHost } from "./reload-check.ts";

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

type State = "loading" | "clean" | "dirty" | "uploading" | "redirtied";

/** The bytes are in the cache file's slot alone (a symbol, so that no use can mistake it for bytes). */
const IN_FILE: unique symbol = Symbol("in the cache file");

/** Failures that come in runs (write-backs in an outage, saves to a full disk) are logged at most this often. */
const ERROR_LOG_INTERVAL_MS = 10_000;

/** Saves to the cache file in flight: enough to keep a disk busy; each holds a slot of the file's spare ones. */
const SAVES_IN_FLIGHT = 8;

interface Entry {
  block: number;
  state: State;
  /** null: the zero block. */
  data: Uint8Array | null | typeof IN_FILE;
  /** `data` came from nobody else (our copy, or a fresh read): we may change it unless it is lent. */
  owned: boolean;
  /** Buffers of this block an upload or a save reads now: not to be changed or reused. */
  lent: Uint8Array[];
  /** Settles when a loading entry's read is done. */
  loading: Promise<void> | undefined;
  /** Bumped by every write; `stored` is the version the store below has. */
  version: number;
  stored: number;
  /** The MD5 hex of the `stored` version's bytes, when its write-back took it (see writeBack). */
  storedMd5: string | undefined;
  /** When it became dirty and was last written, and its retry time: see write-back-queue.ts. */
  dirtySince: number;
  lastWrite: number;
  retryAt: number;
  failures: number;
  /** Fetched by read-ahead and not read yet. */
  aheadUnread: boolean;
  lastUsed: number;
  /** The cache file's slot whose record names this block, which version it holds, and its CRC. */
  slot: number | undefined;
  slotVersion: number;
  slotCrc: number;
  /** A save to the cache file is in flight. */
  saving: boolean;
  /** Callers waiting to use the bytes being read back: they stay in memory until then (see readMiss). */
  pins: number;
  /** Settles when the bytes are read back from the cache file. */
  paging: Promise<Uint8Array | undefined> | undefined;
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

export class BlockCache extends Layer implements MountedCache {
  /** In LRU order: the first entry is the least recently used. */
  private readonly entries = new Map<number, Entry>();
  /** Entries dirty, uploading or redirtied: what --blockCacheMaxDirty counts. */
  private readonly dirty = new Set<Entry>();
  /** Entries with their bytes in memory, in LRU order (for paging out to the cache file). */
  private readonly resident = new Set<Entry>();
  /** Bytes on their way into memory (loads and reads from the cache file). */
  private arriving = 0;
  private readonly zero: Uint8Array;
  private readonly counters = new Counters([
    "read hits", "read misses", "read-ahead fetches", "read-ahead hits", "writes", "coalesced writes",
    "write-backs", "write-back bytes", "write-back errors", "evictions", "writer waits",
    "cache file reads", "cache file writes", "cache file errors",
  ] as const);
  /** Waiting for a block's write-back: resolve when stored >= version, reject on failure. */
  private readonly storeWaiters = new Map<Entry, { version: number; resolve: () => void; reject: (e: unknown) => void }[]>();
  /** Waiting for room: for a dirty block, or in memory. */
  private roomWaiters: (() => void)[] = [];
  /** Dirty blocks waiting for their write-back (not uploading). */
  private readonly queued: WriteBackQueue<Entry>;
  /** Write-backs in flight (at most --blockCacheThreads). */
  private uploads = 0;
  /**
   * Write-backs of zero blocks in flight: deletes, which hold no bytes and which the object store
   * may gather into bulk requests, so they are not held to --blockCacheThreads.
   */
  private deletes = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  private closed = false;
  /** Given up (keepUnstored): what uploads still end is not recorded in the cache file, which keeps the blocks unsaved. */
  private keeping = false;
  private readonly sweeper: ReturnType<typeof setInterval> | undefined;
  private readonly ahead: ReadAhead;
  /**
   * Told the size of each block buffer the cache lets go (evicted, or replaced by a copy): the
   * process's memory budget collects such garbage in step with it (see memory-budget.ts).
   */
  onBlockDropped: ((bytes: number) => void) | undefined;
  private readonly buffers: BufferPool;
  /** With a cache file, write-back waits until the mount is cleared to write (see resume). */
  private paused: boolean;
  private readonly file: CacheFile | undefined;
  /** Entries whose bytes are newer than their slot in the cache file, in the order they changed. */
  private readonly unsaved = new Set<Entry>();
  /** Cache file work in flight: saves, and the MD5s of blocks to be marked clean. */
  private fileWork = 0;
  private fileIdle: (() => void)[] = [];
  private readonly md5 = new Md5Batch();
  /** Last time a failed save was logged (they come in runs: a full disk fails them all). */
  private saveErrorLogged = -Infinity;
  /** Last time a failed write-back was logged, and those not logged since (see logWriteBackError). */
  private writeBackErrorLogged = -Infinity;
  private writeBackErrorsUnlogged = 0;
  /** Clean blocks reloaded from the cache file, until checked against storage. */
  private check: ReloadCheck | undefined;

  /** With `fromFile`, the cache is kept in that file (see cache-file.ts), starting with its blocks. */
  constructor(
    inner: BlockStore,
    private readonly o: BlockCacheOptions,
    fromFile?: FromFile,
  ) {
    super(inner);
    this.zero = new Uint8Array(inner.blockSize);
    this.queued = new WriteBackQueue(o.writeDelayMs);
    this.buffers = o.spares ?? new BufferPool(inner.blockSize);
    this.ahead = new ReadAhead(o.readAhead, o.readAheadTrigger, inner.numBlocks, {
      has: (block) => {
        const entry = this.entries.get(block);
        return entry !== undefined && (entry.data !== IN_FILE || entry.paging !== undefined);
      },
      // Memory stays full once it has filled: room is what paging out saved blocks frees, but never
      // blocks read ahead and not read yet, nor room someone waits for. (Fetches in flight are
      // counted there already, as bytes arriving.)
      hasRoom: (inFlight) => this.dirty.size + inFlight < this.o.size && this.roomWaiters.length === 0 && this.memoryRoom(1, false),
      fetch: (block) => {
        this.counters.add("read-ahead fetches");
        const entry = this.entries.get(block);
        // Nobody awaits a read-ahead: a failed one is left to the reader, who tries again.
        const fetched = entry ? this.pageIn(entry).then((bytes) => void (bytes && (entry.aheadUnread = true))) : this.load(block, true).loading!;
        return fetched.catch(() => {});
      },
    });
    this.file = fromFile?.file;
    this.paused = this.file !== undefined;
    const toCheck: { block: number; md5: string | null }[] = [];
    for (const b of fromFile?.blocks ?? []) {
      const entry = this.create(b.block, "clean", false);
      entry.data = b.zero ? null : IN_FILE;
      entry.slot = b.slot;
      entry.slotCrc = b.crc;
      if (b.dirty) {
        entry.version = entry.slotVersion = 1;
        entry.state = "dirty";
        this.dirty.add(entry);
        this.queue(entry);
      } else toCheck.push({ block: b.block, md5: b.zero ? null : b.md5! });
    }
    const check = fromFile?.check;
    if (check && toCheck.length > 0) this.check = new ReloadCheck(toCheck, { ...check, log: o.log, drop: (block) => this.discard(block) });
    if (o.timeoutMs > 0) {
      this.sweeper = setInterval(() => this.dropIdle(), Math.max(50, o.timeoutMs / 2));
      this.sweeper.unref?.();
    }
  }

  /** Readers get the cached bytes themselves. */
  override get freshReads(): boolean {
    return false;
  }

  // ---- reads ----

  // A hit is answered without an async function: at tens of thousands of requests a second, the
  // garbage of one per call is what the collector spends its time on.

  readBlock(block: number): Promise<Uint8Array> {
    const bytes = this.hit(block);
    return bytes ? Promise.resolve(bytes) : this.readMiss(block);
  }

  override readBlockPart(block: number, offset: number, length: number): Promise<Uint8Array> {
    const now = this.readBlockPartNow(block, offset, length);
    return now ? Promise.resolve(now) : this.readMiss(block).then((data) => data.subarray(offset, offset + length));
  }

  readBlockPartNow(block: number, offset: number, length: number): Uint8Array | undefined {
    return this.hit(block)?.subarray(offset, offset + length);
  }

  /**
   * Whether a cached block reads as zeros: true or false when the cache holds it (its bytes are
   * what reads return), undefined when it does not (the layers below know).
   */
  cachedZero(block: number): boolean | undefined {
    const entry = this.entries.get(block);
    if (!entry || entry.state === "loading" || this.check?.has(block)) return undefined;
    return entry.data === null;
  }

  /**
   * The bytes of a cached block that has them to read now (counted and touched), or undefined. They
   * are taken before read-ahead looks past the block: making room, it may page this one out too.
   */
  private hit(block: number): Uint8Array | undefined {
    const entry = this.entries.get(block);
    if (!entry || entry.state === "loading" || entry.data === IN_FILE || this.check?.has(block)) return undefined;
    this.counters.add("read hits");
    const bytes = this.bytesOf(entry);
    this.read(entry);
    return bytes;
  }

  /** A read that must wait: for the block's bytes from below or from the cache file, its check, or room. */
  private async readMiss(block: number): Promise<Uint8Array> {
    let counted = false;
    for (;;) {
      // The reader is at this block from now on: read-ahead looks past it while it waits. (Its
      // fetches may evict, so the entry is looked up after.)
      this.ahead.noteRead(block);
      let entry = this.entries.get(block);
      const miss = !entry;
      if (!entry) {
        if (!this.memoryRoom(1)) {
          await this.roomFreed();
          continue;
        }
        entry = this.load(block, false);
      }
      if (!counted) this.counters.add(miss ? "read misses" : "read hits");
      counted = true;
      if (entry.loading) await entry.loading;
      else if (this.check?.has(block)) await this.check.check(block);
      else if (entry.data === IN_FILE) {
        // Pinned until this reader has them: else waiters for memory could take turns paging out each other's blocks.
        entry.pins++;
        try {
          const bytes = await this.pageIn(entry);
          if (bytes) {
            this.read(entry, false); // read now, even if read-ahead had asked for it first
            return bytes;
          }
        } finally {
          entry.pins--;
          this.released();
        }
      } else {
        this.read(entry, false);
        return this.bytesOf(entry);
      }
    }
  }

  private read(entry: Entry, note = true): void {
    if (entry.aheadUnread) {
      this.counters.add("read-ahead hits");
      entry.aheadUnread = false;
    }
    this.touch(entry);
    if (note) this.ahead.noteRead(entry.block);
  }

  /** The bytes of an entry that has them in memory, for a reader. */
  private bytesOf(entry: Entry): Uint8Array {
    if (entry.data === IN_FILE) throw new Error(`block cache: block ${entry.block} read while in the cache file only`);
    return entry.data ?? this.zero;
  }

  /** A new entry, most recently used; its bytes are zeros until loaded or written. */
  private create(block: number, state: State, ahead: boolean): Entry {
    const entry: Entry = {
      block, state, data: null, owned: false, lent: [], loading: undefined, version: 0, stored: 0, storedMd5: undefined, dirtySince: 0, lastWrite: 0,
      retryAt: 0, failures: 0, aheadUnread: ahead, lastUsed: performance.now(), slot: undefined, slotVersion: 0, slotCrc: 0,
      saving: false, pins: 0, paging: undefined,
    };
    this.entries.set(block, entry);
    return entry;
  }

  /** Starts fetching a block into a new entry (`entry.loading` settles when it is there). */
  private load(block: number, ahead: boolean): Entry {
    this.evict(1);
    const entry = this.create(block, "loading", ahead);
    this.arriving++;
    // Writes wait for a loading entry, so what arrives is the newest there is.
    entry.loading = this.inner.readBlock(block).then(
      (data) => {
        this.arriving--;
        entry.loading = undefined;
        entry.state = "clean";
        this.setBytes(entry, isAllZero(data) ? null : data);
        if (entry.data === null) this.released();
        // Bytes nobody else holds can take writes in place: no copy of a whole block for a small write.
        entry.owned = entry.data !== null && this.inner.freshReads;
        this.toSave(entry);
      },
      (err) => {
        this.arriving--;
        entry.loading = undefined;
        if (this.entries.get(block) === entry) this.entries.delete(block);
        this.wake();
        throw err;
      },
    );
    return entry;
  }

  // ---- writes ----

  // Like reads, a write that can land at once does so without an async function; it returns DONE.

  writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    const entry = this.writableNow(block, false);
    if (entry) return this.putWhole(entry, data);
    return this.writeWhenReady(block, false, (e) => this.putWhole(e, data));
  }

  override writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    const entry = this.writableNow(block, true);
    if (entry) return this.putPart(entry, offset, data);
    return this.writeWhenReady(block, true, (e) => this.putPart(e, offset, data));
  }

  writeBlockPartNow(block: number, offset: number, data: Uint8Array): boolean {
    if (this.o.sync) return false; // a synchronous write waits for the store below
    const entry = this.writableNow(block, true);
    if (entry) void this.putPart(entry, offset, data); // DONE: the write landed
    return entry !== undefined;
  }

  private putWhole(entry: Entry, data: Uint8Array | null): Promise<void> {
    const old = entry.data;
    const inPlace = data !== null && this.changeable(entry);
    if (old instanceof Uint8Array && !inPlace) this.onBlockDropped?.(old.byteLength);
    if (!data) this.setBytes(entry, null);
    else if (inPlace) (old as Uint8Array).set(data);
    else this.setBytes(entry, this.buffers.take(data));
    entry.owned = data !== null;
    return this.dirtied(entry);
  }

  private putPart(entry: Entry, offset: number, data: Uint8Array): Promise<void> {
    if (!this.changeable(entry)) {
      const old = entry.data;
      if (old === IN_FILE) throw new Error(`block cache: partial write of block ${entry.block} while in the cache file only`);
      this.setBytes(entry, this.buffers.take(old));
      if (old) this.onBlockDropped?.(old.byteLength);
      entry.owned = true;
    }
    const bytes = entry.data as Uint8Array;
    bytes.set(data, offset);
    if (isAllZero(data) && isAllZero(bytes)) this.setBytes(entry, null);
    return this.dirtied(entry);
  }

  /** Whether a write may change the entry's bytes in place. */
  private changeable(entry: Entry): boolean {
    return entry.owned && entry.data instanceof Uint8Array && !entry.lent.includes(entry.data);
  }

  /**
   * The entry a write can go to right now (no wait for room, the old bytes or their check), or
   * undefined. The caller writes to it before anything else runs.
   */
  private writableNow(block: number, needOld: boolean): Entry | undefined {
    const entry = this.entries.get(block);
    if (entry ? entry.state === "loading" : needOld) return undefined;
    if (entry && needOld && (entry.data === IN_FILE || this.check?.has(block))) return undefined;
    if ((!entry || entry.state === "clean") && this.dirty.size >= this.o.maxDirty) return undefined;
    // Room in memory before the entry is looked at again: making it never drops a block that is not in memory.
    if (!(entry?.data instanceof Uint8Array) && !this.memoryRoom(1)) return undefined;
    if (entry) {
      if (!needOld) this.check?.skip(block); // written whole: what storage held no longer matters
      this.touch(entry);
      return entry;
    }
    // Room first: the new entry must not be what the eviction picks.
    this.evict(1);
    return this.create(block, "dirty", false);
  }

  /**
   * Writes once there is room for one more dirty block: `put` runs in the same step as the last
   * check, so nothing can evict or replace the entry in between. A partial write needs the old
   * bytes: from the cache (or its file), else read below (free for a block the zero cache knows).
   */
  private async writeWhenReady(block: number, needOld: boolean, put: (entry: Entry) => Promise<void>): Promise<void> {
    for (;;) {
      const ready = this.writableNow(block, needOld);
      if (ready) return put(ready);
      const entry = this.entries.get(block);
      if (entry?.state === "loading") {
        // A failed read (even a read-ahead) only matters if this write needs the old bytes.
        await entry.loading!.catch((err) => (needOld ? Promise.reject(err) : undefined));
      } else if ((!entry || entry.state === "clean") && this.dirty.size >= this.o.maxDirty) {
        this.counters.add("writer waits");
        await this.roomFreed();
      } else if (entry && needOld && this.check?.has(block)) {
        await this.check.check(block);
      } else if (entry && needOld && entry.data === IN_FILE) {
        entry.pins++; // until written to (see readMiss)
        try {
          await this.pageIn(entry);
          const now = this.writableNow(block, needOld);
          if (now) return put(now);
        } finally {
          entry.pins--;
          this.released();
        }
      } else if (!entry && needOld && this.memoryRoom(1)) {
        await this.load(block, false).loading;
      } else {
        this.counters.add("writer waits");
        await this.roomFreed(); // for memory
      }
    }
  }

  private dirtied(entry: Entry): Promise<void> {
    this.counters.add("writes");
    entry.version++;
    entry.aheadUnread = false;
    this.toSave(entry);
    if (this.dirty.has(entry)) {
      this.counters.add("coalesced writes");
      this.queued.rewritten(entry);
      if (entry.state === "uploading") entry.state = "redirtied";
    } else {
      entry.state = "dirty"; // was clean, or is new
      this.dirty.add(entry);
      this.queue(entry);
    }
    if (!this.o.sync) return DONE;
    this.hurry(entry);
    return this.storedAt(entry, entry.version);
  }

  // ---- write-back ----

  /** A block just dirtied (again): its write-back falls due after the delay. */
  private queue(entry: Entry): void {
    this.queued.add(entry);
    this.pump();
  }

  /** A dirty block wanted now (flush, --blockCacheSync). */
  private hurry(entry: Entry): void {
    if (entry.state !== "dirty") return; // an upload in flight: hurried again when it ends
    this.queued.hurry(entry);
    this.pump();
  }

  /**
   * Starts write-backs that are due, up to --blockCacheThreads uploads at once (and many more
   * deletes); else sets a timer for the next.
   */
  private pump(): void {
    while (this.uploads < this.o.threads && this.deletes < ZERO_WRITES_IN_FLIGHT && !this.paused) {
      // Writers waiting for room, or unmounting: everything is due now.
      const entry = this.queued.takeDue(this.closed || this.roomWaiters.length > 0);
      if (typeof entry === "number") {
        this.arm(entry);
        return;
      }
      const upload = entry.data !== null;
      if (upload) this.uploads++;
      else this.deletes++;
      this.evict();
      void this.writeBack(entry).finally(() => {
        if (upload) this.uploads--;
        else this.deletes--;
        this.pump();
      });
    }
  }

  private arm(at: number): void {
    if (at === Infinity || at >= this.timerAt) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      this.pump();
    }, Math.max(0, at - performance.now()));
  }

  private async writeBack(entry: Entry): Promise<void> {
    entry.state = "uploading";
    let data: Uint8Array | null = null;
    let own = false;
    try {
      // Bytes in the file alone are read back into a buffer of the upload's own, which takes no room
      // in memory: that may be full of blocks waiting for uploads to leave it (a cache file on a full
      // disk cannot take them). What a write put in memory meanwhile is newer still.
      while (entry.data === IN_FILE) {
        const into = this.buffers.takeToFill();
        if (await this.readSlotOf(entry, into)) {
          data = into;
          own = true;
          break;
        }
        this.recycle(into);
        if (this.entries.get(entry.block) !== entry) return; // abandoned
      }
      entry.state = "uploading"; // a write while the slot was read made it redirtied: that write is what goes up now
      const version = entry.version;
      if (!own) {
        data = entry.data as Uint8Array | null;
        if (data) entry.lent.push(data);
      }
      // The cache file's record of the stored version needs its MD5: taken once, here, and handed
      // down for the upload, which would otherwise hash the same bytes again.
      const md5 = this.file && data ? await this.md5Hex(data) : undefined;
      await this.inner.writeBlock(entry.block, data, md5);
      entry.stored = version;
      entry.storedMd5 = md5;
      entry.failures = 0;
      entry.retryAt = 0;
      this.counters.add("write-backs");
      this.counters.add("write-back bytes", data ? data.length : 0);
      this.storedInFile(entry, version, data);
      if (entry.state === "uploading") {
        entry.state = "clean";
        this.dirty.delete(entry);
        this.wake();
        this.evict();
      } else {
        entry.state = "dirty";
        if (this.storeWaiters.has(entry)) this.hurry(entry); // written again meanwhile, and a flush waits for it
        else this.queue(entry); // written again meanwhile: the newer bytes wait their turn
      }
      this.settleWaiters(entry, undefined);
    } catch (err) {
      if (this.entries.get(entry.block) !== entry) return; // abandoned (see abandon)
      entry.state = "dirty";
      this.queued.failedOnce(entry);
      this.counters.add("write-back errors");
      this.logWriteBackError(entry, err);
      this.settleWaiters(entry, err);
    } finally {
      if (own) this.uploadCopyDone(entry, data!);
      else if (data) this.giveBack(entry, data);
    }
  }

  /**
   * Write-back failures come in runs (an outage fails every block, round after round): one line
   * every ERROR_LOG_INTERVAL_MS at most, counting those left out since the last.
   */
  private logWriteBackError(entry: Entry, err: unknown): void {
    const now = performance.now();
    if (now - this.writeBackErrorLogged < ERROR_LOG_INTERVAL_MS) {
      this.writeBackErrorsUnlogged++;
      return;
    }
    const more = this.writeBackErrorsUnlogged > 0 ? ` (${this.writeBackErrorsUnlogged} more failed since the last such line)` : "";
    this.writeBackErrorLogged = now;
    this.writeBackErrorsUnlogged = 0;
    this.o.log.error(`write-back of block ${entry.block} failed (${entry.failures}x), keeping it dirty: ${messageOf(err)}${more}`);
  }

  /** An upload's own copy of a block is free again: reused, unless its MD5 is being taken (see storedInFile). */
  private uploadCopyDone(entry: Entry, data: Uint8Array): void {
    this.letGo(data, !entry.lent.includes(data));
  }

  private storedAt(entry: Entry, version: number): Promise<void> {
    if (entry.stored >= version) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const list = this.storeWaiters.get(entry) ?? [];
      list.push({ version, resolve, reject });
      this.storeWaiters.set(entry, list);
    });
  }

  private settleWaiters(entry: Entry, err: unknown): void {
    const list = this.storeWaiters.get(entry);
    if (!list) return;
    const waiting = list.filter((w) => {
      if (err !== undefined) w.reject(new FsError(Errno.EIO, `block ${entry.block} could not be stored: ${messageOf(err)}`));
      else if (entry.stored >= w.version) w.resolve();
      else return true;
      return false;
    });
    if (waiting.length) this.storeWaiters.set(entry, waiting);
    else this.storeWaiters.delete(entry);
  }

  /**
   * Every block dirty now is stored when this resolves. The first block that fails rejects it
   * with EIO at once (the others keep going out, and the failed one stays dirty and is retried):
   * an fsync against a server that refuses everything answers after one block's retries, not
   * after all of them.
   */
  override async flush(): Promise<void> {
    const targets = [...this.dirty].map((entry) => ({ entry, version: entry.version }));
    // A flush tries failed blocks again at once.
    for (const { entry } of targets) this.hurry(entry);
    await Promise.all(targets.map(({ entry, version }) => this.storedAt(entry, version)));
    await this.inner.flush();
  }

  /**
   * Most blocks whose bytes are held in memory. With a cache file, uploads in flight come on top:
   * each may hold its own copy read back from the file, and the HTTP client holds one more. Without
   * one, uploads take room in the cache (see evict).
   */
  get memoryCapacity(): number {
    return this.file ? this.o.memoryBlocks + 2 * this.o.threads : this.o.size;
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  override async close(): Promise<void> {
    this.resume();
    this.closed = true; // every write-back is due now
    while (this.dirty.size > 0) await this.flush();
    clearTimeout(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    // What is not in the file yet goes there too: the next mount finds every block it held.
    this.pumpSaves();
    while (this.fileWork > 0) await new Promise<void>((resolve) => this.fileIdle.push(resolve));
    this.file?.close();
    await this.inner.close();
    this.buffers.close();
  }

  /**
   * Gives up storing (the unmount gave up, and the process exits next): no write-back starts any
   * more, and every dirty block's newest bytes go to the cache file, whose records keep them
   * unsaved for --blockCacheRecoverDirtyBlocks. Returns how many dirty blocks the file keeps, and
   * how many it could not (without a file: none kept).
   */
  async keepUnstored(): Promise<{ kept: number; lost: number }> {
    this.paused = true;
    this.closed = true;
    this.keeping = true;
    clearTimeout(this.timer);
    if (this.sweeper) clearInterval(this.sweeper);
    // Blocks whose save failed before get one more try.
    for (const entry of this.dirty) if (!this.inFile(entry)) this.unsaved.add(entry);
    this.pumpSaves();
    while (this.fileWork > 0) await new Promise<void>((resolve) => this.fileIdle.push(resolve));
    const kept = [...this.dirty].filter((entry) => this.inFile(entry)).length;
    // Made durable, but left open: uploads still in flight may read their bytes from it (and
    // change no record: see storedInFile) until the process exits.
    this.file?.sync();
    return { kept, lost: this.dirty.size - kept };
  }

  /** The entry's current bytes are in the cache file. */
  private inFile(entry: Entry): boolean {
    return this.file !== undefined && entry.slot !== undefined && entry.slotVersion === entry.version;
  }

  // ---- memory and the cache file ----

  /** Sets an entry's bytes in memory (null: the zero block, which takes none). */
  private setBytes(entry: Entry, data: Uint8Array | null): void {
    entry.data = data;
    const was = this.resident.delete(entry);
    if (data) this.resident.add(entry);
    else if (was) this.released();
  }

  /** Memory was freed: those waiting for room try again, once the step that freed it is done. */
  private released(): void {
    if (this.roomWaiters.length > 0) queueMicrotask(() => this.wake());
  }

  /** Blocks in memory, and on their way there. */
  private memoryHeld(): number {
    return this.resident.size + this.arriving;
  }

  /**
   * Makes room in memory for `n` more blocks (with a cache file; without one, the cache size is the
   * bound): least recently used bytes already saved in the file are dropped from memory, clean ones
   * that could not be saved are evicted. Blocks read ahead go last (`evenAhead`: they may go at
   * all): their reader is on its way. False if there is not enough room now.
   */
  private memoryRoom(n: number, evenAhead = true): boolean {
    if (!this.file) return true;
    const fits = () => this.memoryHeld() + n <= this.o.memoryBlocks;
    if (fits()) return true;
    const held = this.resident.size;
    for (const aheadToo of evenAhead ? [false, true] : [false]) {
      for (const entry of this.resident) {
        if (fits()) break;
        if ((entry.aheadUnread && !aheadToo) || entry.lent.length > 0 || entry.pins > 0 || entry.saving || this.unsaved.has(entry)) continue;
        if (entry.state !== "clean" && entry.state !== "dirty") continue;
        if (entry.slot !== undefined && entry.slotVersion === entry.version) {
          this.letGo(entry.data as Uint8Array, entry.owned);
          entry.data = IN_FILE;
          this.resident.delete(entry);
        } else if (entry.state === "clean") this.forget(entry);
      }
    }
    if (this.resident.size < held) this.released(); // others waiting may fit in what this freed
    return fits();
  }

  /** Waits until a block's write-back, a save or a read ends (and makes write-back urgent meanwhile). */
  private roomFreed(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.roomWaiters.push(resolve);
      this.pump(); // room is made by writing back at once
    });
  }

  private wake(): void {
    if (this.roomWaiters.length > 0) this.roomWaiters.splice(0).forEach((resolve) => resolve());
  }

  /** Reads an entry's bytes back from the cache file (once, however many wait for them). */
  private pageIn(entry: Entry): Promise<Uint8Array | undefined> {
    entry.paging ??= this.readFromFile(entry).finally(() => (entry.paging = undefined));
    return entry.paging;
  }

  /** The bytes read back, which are the entry's now; undefined if the entry changed meanwhile. */
  private async readFromFile(entry: Entry): Promise<Uint8Array | undefined> {
    // Looked at again after every wait: a write may bring the bytes into memory meanwhile, and the
    // pins of those waiting for them keep them there, so waiting on for room would wait on itself.
    for (;;) {
      if (entry.data !== IN_FILE || this.entries.get(entry.block) !== entry) return undefined;
      if (this.memoryRoom(1)) break;
      await this.roomFreed();
    }
    const into = this.buffers.takeToFill();
    this.arriving++;
    let read: boolean;
    try {
      read = await this.readSlotOf(entry, into);
    } finally {
      this.arriving--;
      this.wake();
    }
    if (!read) {
      this.recycle(into);
      return undefined;
    }
    this.setBytes(entry, into);
    entry.owned = true;
    return into;
  }

  /**
   * Reads the slot of an entry whose bytes are in the file alone into `into`. False if the entry
   * changed meanwhile, or if the slot is unreadable: a clean block is then dropped (storage has
   * it), a dirty one abandoned.
   */
  private async readSlotOf(entry: Entry, into: Uint8Array): Promise<boolean> {
    const slot = entry.slot!;
    let ok = false;
    let why = "its CRC does not match";
    try {
      ok = await this.file!.readSlot(slot, entry.slotCrc, into);
    } catch (err) {
      why = messageOf(err);
    }
    // Written whole, evicted or saved again meanwhile: what was read is not the block's now.
    if (entry.data !== IN_FILE || entry.slot !== slot || this.entries.get(entry.block) !== entry) return false;
    if (ok) {
      this.counters.add("cache file reads");
      return true;
    }
    this.counters.add("cache file errors");
    if (entry.state === "clean") {
      this.o.log.warn(`cache file: block ${entry.block} could not be read back (${why}): reading it from storage`);
      this.forget(entry);
    } else this.abandon(entry, why);
    return false;
  }

  /**
   * Gives up a dirty block whose only copy, in the cache file, is unreadable (a slot torn by a power
   * loss, or damaged): it was never stored, so no fsync promised it. Reads then get what storage
   * holds, and a flush waiting for it fails.
   */
  private abandon(entry: Entry, why: string): void {
    this.o.log.error(`cache file: unsaved block ${entry.block} could not be read back (${why}): it is lost, reads get what storage holds`);
    this.queued.remove(entry);
    this.dirty.delete(entry);
    this.entries.delete(entry.block);
    this.unsaved.delete(entry);
    this.file!.release(entry.slot!);
    entry.slot = undefined;
    this.settleWaiters(entry, new Error("its unsaved bytes in the cache file are unreadable"));
    this.wake();
  }

  /** The entry's bytes changed: they are saved to the cache file in the background. */
  private toSave(entry: Entry): void {
    if (!this.file) return;
    this.unsaved.add(entry);
    this.pumpSaves();
  }

  private pumpSaves(): void {
    const file = this.file;
    if (!file) return;
    for (const entry of this.unsaved) {
      if (this.fileWork >= SAVES_IN_FLIGHT) return;
      if (entry.saving) continue; // saved again when the save in flight ends
      this.unsaved.delete(entry);
      const data = entry.data;
      if (this.entries.get(entry.block) !== entry || data === IN_FILE || (entry.slot !== undefined && entry.slotVersion === entry.version)) continue;
      const slot = file.takeSlot();
      if (slot === undefined) throw new Error("block cache: the cache file has no free slot");
      if (data === null) this.committed(entry, slot, entry.version, null, 0, undefined);
      else void this.save(entry, slot, data);
    }
  }

  private async save(entry: Entry, slot: number, data: Uint8Array): Promise<void> {
    const version = entry.version;
    const clean = entry.stored === version;
    entry.saving = true;
    entry.lent.push(data);
    this.fileWork++;
    try {
      const crc = runtime.crc32(data);
      const [md5] = await Promise.all([clean ? this.versionMd5(entry, version, data) : undefined, this.file!.writeSlot(slot, data)]);
      this.counters.add("cache file writes");
      this.committed(entry, slot, version, data, crc, md5);
    } catch (err) {
      this.file!.putBack(slot);
      this.saveFailed(entry, err);
    } finally {
      entry.saving = false;
      this.giveBack(entry, data);
      this.fileWorkDone();
    }
  }

  /**
   * A slot holds a block's `version` (null: the zero block, which needs no bytes): its record
   * points to it now, unless that version is older than storage's, and the old slot is freed.
   */
  private committed(entry: Entry, slot: number, version: number, data: Uint8Array | null, crc: number, md5: string | undefined): void {
    const file = this.file!;
    if (this.entries.get(entry.block) !== entry || version < entry.stored) {
      file.putBack(slot);
      return;
    }
    const clean = entry.stored === version;
    file.commit(slot, entry.block, data, crc, !(clean && (md5 !== undefined || data === null)), md5);
    if (entry.slot !== undefined) file.release(entry.slot);
    entry.slot = slot;
    entry.slotVersion = version;
    entry.slotCrc = crc;
    // Stored while being saved: the record says dirty until its MD5 is known.
    if (clean && md5 === undefined && data !== null) void this.markClean(entry, slot, version, data);
  }

  /**
   * `version` is stored below now: the slot that holds it is marked clean, and one that holds an
   * older version is freed at once, since after a crash it would be written back over newer data.
   */
  private storedInFile(entry: Entry, version: number, data: Uint8Array | null): void {
    const slot = entry.slot;
    if (slot === undefined || entry.slotVersion > version || this.keeping) return;
    if (entry.slotVersion < version) {
      this.file!.release(slot);
      entry.slot = undefined;
      if (entry.data !== IN_FILE) this.toSave(entry);
    } else if (data === null) this.file!.commit(slot, entry.block, null, 0, false);
    else void this.markClean(entry, slot, version, data);
  }

  private async markClean(entry: Entry, slot: number, version: number, data: Uint8Array): Promise<void> {
    entry.lent.push(data);
    this.fileWork++;
    try {
      const md5 = await this.versionMd5(entry, version, data);
      // Saved again or evicted meanwhile: the slot is not this version's any more.
      if (this.entries.get(entry.block) === entry && entry.slot === slot && entry.slotVersion === version && entry.stored === version) {
        this.file!.commit(slot, entry.block, data, entry.slotCrc, false, md5);
      }
    } finally {
      this.giveBack(entry, data);
      this.fileWorkDone();
    }
  }

  /** The MD5 hex of `data`, the entry's bytes at `version`: its write-back's, if that stored this version, else hashed now. */
  private versionMd5(entry: Entry, version: number, data: Uint8Array): string | Promise<string> {
    return (entry.stored === version ? entry.storedMd5 : undefined) ?? this.md5Hex(data);
  }

  /** The MD5 of a block's bytes in hex (the cache file's records keep it so), hashed in batches. */
  private async md5Hex(data: Uint8Array): Promise<string> {
    return Buffer.from(await this.md5.digest(data)).toString("hex");
  }

  private saveFailed(entry: Entry, err: unknown): void {
    this.counters.add("cache file errors");
    const now = performance.now();
    if (now - this.saveErrorLogged < ERROR_LOG_INTERVAL_MS) return;
    this.saveErrorLogged = now;
    this.o.log.error(
      `cache file: saving block ${entry.block} failed (${messageOf(err)}); blocks that cannot be saved stay in memory until stored in S3`,
    );
  }

  /** An upload or a save is done with bytes it read: the block may leave memory now. */
  private giveBack(entry: Entry, data: Uint8Array): void {
    entry.lent.splice(entry.lent.indexOf(data), 1);
    this.wake();
  }

  /** A save or an MD5 for the file is done: the next saves may start (both count to SAVES_IN_FLIGHT). */
  private fileWorkDone(): void {
    this.fileWork--;
    this.pumpSaves();
    if (this.fileWork === 0) this.fileIdle.splice(0).forEach((resolve) => resolve());
  }

  // ---- housekeeping ----

  private touch(entry: Entry): void {
    entry.lastUsed = performance.now();
    this.entries.delete(entry.block);
    this.entries.set(entry.block, entry);
    if (this.file && this.resident.delete(entry)) this.resident.add(entry);
  }

  /**
   * Drops least recently used clean blocks until the cache fits, the protected ones (below
   * --blockCacheNumProtected) only once no other is left. Dirty blocks are never dropped.
   * Without a cache file, each upload in flight takes a block's room: the HTTP client holds its
   * own copy of the bytes. The evicted buffers are spare for the next blocks' bytes.
   */
  private evict(newEntries = 0): void {
    const room = this.o.size - (this.file ? 0 : this.uploads) - newEntries;
    if (this.entries.size <= room) return;
    for (const protectedToo of [false, true]) {
      for (const entry of this.entries.values()) {
        if (this.entries.size <= room) return;
        if (entry.state === "clean" && (protectedToo || entry.block >= this.o.numProtected)) this.forget(entry, true);
      }
    }
  }

  private dropIdle(): void {
    const limit = performance.now() - this.o.timeoutMs;
    for (const entry of this.entries.values()) {
      if (entry.lastUsed >= limit) break; // LRU order: the rest are newer
      if (entry.state === "clean") this.forget(entry);
    }
  }

  private forget(entry: Entry, reuse = false): void {
    if (entry.state !== "clean") throw new Error(`block cache: evicting block ${entry.block} in state ${entry.state}`);
    this.entries.delete(entry.block);
    if (this.resident.delete(entry)) this.released();
    this.unsaved.delete(entry);
    this.check?.skip(entry.block);
    const data = entry.data;
    if (data instanceof Uint8Array) {
      this.letGo(data, entry.owned && reuse && entry.lent.length === 0);
    }
    if (entry.slot !== undefined) this.file!.release(entry.slot);
    entry.slot = undefined;
    this.counters.add("evictions");
  }

  /** A block buffer the cache is done with: spare if `reuse` (nothing else holds it) and the pool keeps it, else garbage. */
  private letGo(data: Uint8Array, reuse: boolean): void {
    if (!reuse || !this.buffers.give(data)) this.onBlockDropped?.(data.byteLength);
  }

  /** A buffer of the cache's own that nothing holds. */
  private recycle(data: Uint8Array): void {
    this.letGo(data, true);
  }

  /** Drops a block that failed its check against storage. */
  private discard(block: number): void {
    const entry = this.entries.get(block);
    if (entry?.state === "clean") this.forget(entry);
  }

  /** Records in the cache file the token of a mount about to set its flag (see CacheFile.announceToken). */
  announceFileToken(token: number): void {
    this.file?.announceToken(token);
  }

  /** Records in the cache file which mount uses it now. */
  setFileToken(token: number): void {
    this.file?.setToken(token);
  }

  /** Lets write-back start (after the mounted flag says the disk is ours), and the check of a reloaded file. */
  resume(): void {
    this.paused = false;
    this.check?.start();
    this.pump();
  }

  /** Throws if the state table at the top of this file does not hold (for tests: it walks every entry). */
  checkInvariants(): void {
    const fail = (what: string) => {
      throw new Error(`block cache invariant: ${what}`);
    };
    const buffers = new Map<ArrayBufferLike, Set<number>>();
    let uploading = 0;
    for (const [block, e] of this.entries) {
      if (e.block !== block) fail(`entry of block ${e.block} filed under ${block}`);
      if ((e.state === "loading") !== (e.loading !== undefined)) fail(`block ${block} ${e.state} with loading=${e.loading !== undefined}`);
      const dirtyState = e.state === "dirty" || e.state === "uploading" || e.state === "redirtied";
      if (dirtyState !== this.dirty.has(e)) fail(`block ${block} ${e.state} but ${this.dirty.has(e) ? "" : "not "}counted dirty`);
      if (dirtyState ? e.version <= e.stored : e.version !== e.stored) fail(`block ${block} ${e.state} at version ${e.version}, stored ${e.stored}`);
      const inQueues = this.queued.queuesHolding(e);
      if (inQueues < 0) fail(`block ${block} in only one of the waiting queues`);
      if (e.state === "dirty" ? inQueues !== 1 : inQueues !== 0) fail(`block ${block} ${e.state} in ${inQueues} write-back queues`);
      if (e.state === "uploading" || e.state === "redirtied") uploading++;
      if ((e.data instanceof Uint8Array) !== this.resident.has(e)) fail(`block ${block} ${this.resident.has(e) ? "" : "not "}counted in memory`);
      if (e.data === IN_FILE && (e.slot === undefined || e.slotVersion !== e.version)) fail(`block ${block} at version ${e.version} only in the file, whose slot holds ${e.slotVersion}`);
      if (e.slot !== undefined && (!this.file || e.slotVersion < e.stored)) fail(`block ${block}'s slot holds version ${e.slotVersion}, older than the stored ${e.stored}: a crash would bring it back`);
      if (e.data instanceof Uint8Array) {
        const offsets = buffers.get(e.data.buffer) ?? new Set<number>();
        if (offsets.has(e.data.byteOffset)) fail(`block ${block} shares its bytes with another block`);
        offsets.add(e.data.byteOffset);
        buffers.set(e.data.buffer, offsets);
      }
    }
    for (const e of [...this.dirty, ...this.queued.all()]) {
      if (this.entries.get(e.block) !== e) fail(`block ${e.block} (${e.state}) is queued but not in the cache`);
    }
    if (this.resident.size > this.entries.size) fail(`${this.resident.size} blocks counted in memory, ${this.entries.size} cached`);
    if (uploading > this.uploads + this.deletes) fail(`${uploading} blocks uploading, ${this.uploads + this.deletes} write-backs counted`);
    for (const b of buffers.keys()) if (this.buffers.holds(b)) fail("a spare buffer still holds a cached block");
  }

  protected ownStats(): StatGroup {
    const values: [string, number][] = [
      ...this.counters.entries(), ["read-ahead depth", this.ahead.currentDepth], ["blocks cached", this.entries.size], ["blocks dirty", this.dirty.size],
      ["buffers faulted in ahead", this.buffers.made.ahead], ["buffers faulted in on use", this.buffers.made.onUse],
    ];
    if (this.file) {
      values.push(["blocks in memory", this.resident.size], ["blocks not yet in the file", this.unsaved.size + this.fileWork]);
      values.push(["blocks to verify", this.check?.left ?? 0]);
    }
    return { layer: "block cache", values };
  }

  protected resetOwnStats(): void {
    this.counters.reset();
    this.buffers.resetCounts();
  }
}
