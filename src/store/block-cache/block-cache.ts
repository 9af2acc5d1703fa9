/**
 * The block cache: an LRU of blocks in memory with write-back and read-ahead.
 *
 * Writes land in the cache and return; write-backs to the store below run several at once, in
 * the order write-back-queue.ts keeps. `flush` (fsync, close, unmount) returns only when every
 * block dirtied before it is stored; a failed write-back fails the flush with EIO and the block
 * stays dirty. Sequential readers get --readAhead fetches kept in flight ahead of them. Freed
 * buffers are reused through buffer-pool.ts; cache-file.ts mirrors the cache into a file.
 *
 * This file is over 400 lines on purpose: every move of the state table below is one synchronous
 * step over the entries, the dirty set and the queues together, so they live in one class.
 *
 * Buffers: a block being uploaded, or read from a store below that keeps its bytes, is not ours
 * to change, so a write copies it first; otherwise writes change the cached bytes in place. A
 * reader gets the cached bytes themselves, valid for its turn of the event loop (see
 * block-store.ts).
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
 * `checkInvariants` asserts the table; the tests run it after every step.
 */
import { Errno, FsError, messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BlockStore, ImmediateStore, StatGroup } from "../block-store.ts";
import { DONE, isAllZero, ZERO_WRITES_IN_FLIGHT } from "../block-store.ts";
import { Counters } from "../../util/counters.ts";
import { Layer } from "../layer.ts";
import type { CacheFile, LoadedBlock } from "./cache-file.ts";
import { BufferPool } from "./buffer-pool.ts";
import { WriteBackQueue } from "./write-back-queue.ts";
import { ReadAhead } from "./read-ahead.ts";

export interface BlockCacheOptions {
  /** Most blocks held (clean and dirty). */
  size: number;
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
}

type State = "loading" | "clean" | "dirty" | "uploading" | "redirtied";

interface Entry {
  block: number;
  state: State;
  /** null: the zero block. */
  data: Uint8Array | null;
  /** We may modify `data` in place (nobody else holds it). */
  owned: boolean;
  /** Settles when a loading entry's read is done. */
  loading: Promise<void> | undefined;
  /** Bumped by every write; `stored` is the version the store below has. */
  version: number;
  stored: number;
  /** When it became dirty and was last written, and its retry time: see write-back-queue.ts. */
  dirtySince: number;
  lastWrite: number;
  retryAt: number;
  failures: number;
  /** Fetched by read-ahead and not read yet. */
  aheadUnread: boolean;
  lastUsed: number;
  /** Where the bytes are in the cache file, if anywhere. */
  slot: number | undefined;
}


/** What the life of a mount (app/serve.ts) needs of the cache. */
export interface MountedCache extends ImmediateStore {
  /** Most blocks held, and how many are dirty now. */
  readonly capacity: number;
  readonly dirtyCount: number;
  /** Told the size of each block buffer let go (for the memory budget). */
  onBlockDropped: ((bytes: number) => void) | undefined;
  announceFileToken(token: number): void;
  setFileToken(token: number): void;
  resume(): void;
}

export class BlockCache extends Layer implements MountedCache {
  /** In LRU order: the first entry is the least recently used. */
  private readonly entries = new Map<number, Entry>();
  /** Entries dirty, uploading or redirtied: what --blockCacheMaxDirty counts. */
  private readonly dirty = new Set<Entry>();
  private readonly zero: Uint8Array;
  private readonly counters = new Counters([
    "read hits", "read misses", "read-ahead fetches", "read-ahead hits", "writes", "coalesced writes",
    "write-backs", "write-back bytes", "write-back errors", "evictions", "writer waits",
  ] as const);
  /** Waiting for a block's write-back: resolve when stored >= version, reject on failure. */
  private readonly storeWaiters = new Map<Entry, { version: number; resolve: () => void; reject: (e: unknown) => void }[]>();
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
  /** Clean blocks reloaded from the cache file and their MD5, until checked against storage. */
  private readonly cleanFromFile: { block: number; md5: string | null }[];

  /** With `fromFile`, the cache is kept in that file too (see cache-file.ts), starting with its blocks. */
  constructor(
    inner: BlockStore,
    private readonly o: BlockCacheOptions,
    fromFile?: { file: CacheFile; blocks: LoadedBlock[] },
  ) {
    super(inner);
    this.zero = new Uint8Array(inner.blockSize);
    this.queued = new WriteBackQueue(o.writeDelayMs);
    this.buffers = new BufferPool(inner.blockSize, (bytes) => this.onBlockDropped?.(bytes));
    this.ahead = new ReadAhead(o.readAhead, o.readAheadTrigger, inner.numBlocks, {
      has: (block) => this.entries.has(block),
      hasRoom: (inFlight) => this.dirty.size + inFlight < this.o.size,
      fetch: (block) => {
        this.counters.add("read-ahead fetches");
        // Nobody awaits a read-ahead: a failed one is left to the reader, who tries again.
        return this.load(block, true).loading!.catch(() => {});
      },
    });
    this.file = fromFile?.file;
    this.paused = this.file !== undefined;
    // Only the summary is kept: the loaded bytes belong to the entries, which may drop them.
    this.cleanFromFile = (fromFile?.blocks ?? []).filter((b) => !b.dirty).map((b) => ({ block: b.block, md5: b.data ? (b.md5 ?? null) : null }));
    for (const b of fromFile?.blocks ?? []) {
      const entry = this.create(b.block, "clean", false);
      entry.data = b.data;
      entry.slot = b.slot;
      if (b.dirty) {
        entry.version = 1;
        entry.state = "dirty";
        this.dirty.add(entry);
        this.queue(entry);
      }
    }
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
    const entry = this.hit(block);
    return entry ? Promise.resolve(this.share(entry)) : this.readMiss(block).then((e) => this.share(e));
  }

  override readBlockPart(block: number, offset: number, length: number): Promise<Uint8Array> {
    const now = this.readBlockPartNow(block, offset, length);
    return now ? Promise.resolve(now) : this.readMiss(block).then((e) => this.share(e).subarray(offset, offset + length));
  }

  readBlockPartNow(block: number, offset: number, length: number): Uint8Array | undefined {
    const entry = this.hit(block);
    return entry && this.share(entry).subarray(offset, offset + length);
  }

  /**
   * Whether a cached block reads as zeros: true or false when the cache holds it (its bytes are
   * what reads return), undefined when it does not (the layers below know).
   */
  cachedZero(block: number): boolean | undefined {
    const entry = this.entries.get(block);
    if (!entry || entry.state === "loading") return undefined;
    return entry.data === null;
  }

  /** The entry of a cached block that is there to read now (counted and touched), or undefined. */
  private hit(block: number): Entry | undefined {
    const entry = this.entries.get(block);
    if (!entry || entry.state === "loading") return undefined;
    this.counters.add("read hits");
    this.read(entry);
    return entry;
  }

  private async readMiss(block: number): Promise<Entry> {
    let entry = this.entries.get(block);
    if (entry) this.counters.add("read hits");
    else {
      this.counters.add("read misses");
      entry = this.load(block, false);
    }
    // The reader is at this block from now on: read-ahead looks past it while it waits.
    this.ahead.noteRead(block);
    await entry.loading;
    this.read(entry, false);
    return entry;
  }

  private read(entry: Entry, note = true): void {
    if (entry.aheadUnread) {
      this.counters.add("read-ahead hits");
      entry.aheadUnread = false;
    }
    this.touch(entry);
    if (note) this.ahead.noteRead(entry.block);
  }

  /** The entry's bytes for a reader. */
  private share(entry: Entry): Uint8Array {
    return entry.data ?? this.zero;
  }

  /** A new entry, most recently used; its bytes are zeros until loaded or written. */
  private create(block: number, state: State, ahead: boolean): Entry {
    const entry: Entry = {
      block, state, data: null, owned: false, loading: undefined, version: 0, stored: 0, dirtySince: 0, lastWrite: 0,
      retryAt: 0, failures: 0, aheadUnread: ahead, lastUsed: performance.now(), slot: undefined,
    };
    this.entries.set(block, entry);
    return entry;
  }

  /** Starts fetching a block into a new entry (`entry.loading` settles when it is there). */
  private load(block: number, ahead: boolean): Entry {
    this.evict(false, 1);
    const entry = this.create(block, "loading", ahead);
    // Writes wait for a loading entry, so what arrives is the newest there is.
    entry.loading = this.inner.readBlock(block).then(
      (data) => {
        entry.loading = undefined;
        entry.state = "clean";
        entry.data = isAllZero(data) ? null : data;
        // Bytes nobody else holds can take writes in place: no copy of a whole block for a small write.
        entry.owned = entry.data !== null && this.inner.freshReads;
        this.save(entry, false);
      },
      (err) => {
        entry.loading = undefined;
        if (this.entries.get(block) === entry) this.entries.delete(block);
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
    if (entry.data && !(data && entry.owned)) this.onBlockDropped?.(entry.data.byteLength);
    if (!data) entry.data = null;
    else if (entry.owned && entry.data) entry.data.set(data);
    else entry.data = this.buffers.take(data);
    entry.owned = data !== null;
    return this.dirtied(entry);
  }

  private putPart(entry: Entry, offset: number, data: Uint8Array): Promise<void> {
    if (!entry.owned || !entry.data) {
      const old = entry.data;
      entry.data = this.buffers.take(old);
      if (old) this.onBlockDropped?.(old.byteLength);
      entry.owned = true;
    }
    entry.data.set(data, offset);
    if (isAllZero(data) && isAllZero(entry.data)) entry.data = null;
    return this.dirtied(entry);
  }

  /**
   * The entry a write can go to right now (no wait for room or for the old bytes), or undefined.
   * The caller writes to it before anything else runs.
   */
  private writableNow(block: number, needOld: boolean): Entry | undefined {
    const entry = this.entries.get(block);
    if (entry ? entry.state === "loading" : needOld) return undefined;
    if ((!entry || entry.state === "clean") && this.dirty.size >= this.o.maxDirty) return undefined;
    if (entry) {
      this.touch(entry);
      return entry;
    }
    // Room first: the new entry must not be what the eviction picks.
    this.evict(true, 1);
    return this.create(block, "dirty", false);
  }

  /**
   * Writes once there is room for one more dirty block: `put` runs in the same step as the last
   * check, so nothing can evict or replace the entry in between. A partial write needs the old
   * bytes: from the cache, else read below (free for a block the zero cache knows).
   */
  private async writeWhenReady(block: number, needOld: boolean, put: (entry: Entry) => Promise<void>): Promise<void> {
    for (;;) {
      const entry = this.entries.get(block);
      if (entry?.state === "loading") {
        // A failed read (even a read-ahead) only matters if this write needs the old bytes.
        await entry.loading!.catch((err) => (needOld ? Promise.reject(err) : undefined));
        continue;
      }
      if ((!entry || entry.state === "clean") && this.dirty.size >= this.o.maxDirty) {
        this.counters.add("writer waits");
        await new Promise<void>((resolve) => {
          this.roomWaiters.push(resolve);
          this.pump(); // room is made by writing back at once
        });
        continue;
      }
      if (entry || !needOld) return put(this.writableNow(block, needOld)!);
      await this.load(block, false).loading;
    }
  }

  private dirtied(entry: Entry): Promise<void> {
    this.save(entry, true);
    this.counters.add("writes");
    entry.version++;
    entry.aheadUnread = false;
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
    const version = entry.version;
    const data = entry.data;
    entry.state = "uploading";
    entry.owned = false; // the bytes travel now: the next write copies
    try {
      await this.inner.writeBlock(entry.block, data);
      entry.stored = version;
      entry.failures = 0;
      entry.retryAt = 0;
      this.counters.add("write-backs");
      this.counters.add("write-back bytes", data ? data.length : 0);
      if (entry.state === "uploading") {
        entry.state = "clean";
        if (entry.slot !== undefined) this.file!.markClean(entry.slot, entry.block, data);
        this.dirty.delete(entry);
        this.roomWaiters.splice(0).forEach((resolve) => resolve());
        this.evict();
      } else {
        entry.state = "dirty";
        if (this.storeWaiters.has(entry)) this.hurry(entry); // written again meanwhile, and a flush waits for it
        else this.queue(entry); // written again meanwhile: the newer bytes wait their turn
      }
      this.settleWaiters(entry, undefined);
    } catch (err) {
      entry.state = "dirty";
      this.queued.failedOnce(entry);
      this.counters.add("write-back errors");
      this.o.log.error(`write-back of block ${entry.block} failed (${entry.failures}x), keeping it dirty: ${messageOf(err)}`);
      this.settleWaiters(entry, err);
    } finally {
      // The upload is done with the bytes: if they are still the entry's, they are ours again.
      if (entry.data === data && data !== null) entry.owned = true;
    }
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

  /** Most blocks held. */
  get capacity(): number {
    return this.o.size;
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
    this.file?.close();
    await this.inner.close();
  }

  // ---- housekeeping ----

  private touch(entry: Entry): void {
    entry.lastUsed = performance.now();
    this.entries.delete(entry.block);
    this.entries.set(entry.block, entry);
  }

  /**
   * Drops least recently used clean blocks until the cache fits, the protected ones (below
   * --blockCacheNumProtected) only once no other is left. Dirty blocks are never dropped.
   * Each upload in flight takes a block's room: the HTTP client holds its own copy of the bytes.
   * `forWrite`: a write makes the room, and the next writes may take the evicted buffers.
   */
  private evict(forWrite = false, newEntries = 0): void {
    const room = this.o.size - this.uploads - newEntries;
    if (this.entries.size <= room) return;
    for (const protectedToo of [false, true]) {
      for (const entry of this.entries.values()) {
        if (this.entries.size <= room) return;
        if (entry.state === "clean" && (protectedToo || entry.block >= this.o.numProtected)) this.forget(entry, forWrite);
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
    if (entry.data && entry.owned && reuse) this.buffers.give(entry.data);
    else if (entry.data) this.onBlockDropped?.(entry.data.byteLength);
    if (entry.slot !== undefined) this.file!.release(entry.slot);
    entry.slot = undefined;
    this.counters.add("evictions");
  }

  /** Mirrors an entry's bytes into the cache file: a new slot first, then the old one is freed. */
  private save(entry: Entry, dirty: boolean): void {
    if (!this.file) return;
    const old = entry.slot;
    entry.slot = this.file.store(entry.block, entry.data, dirty);
    if (old !== undefined) this.file.release(old);
  }

  /** Blocks loaded from the cache file, clean, with the MD5 they had: for checking against S3. */
  cleanBlocksFromFile(): { block: number; md5: string | null }[] {
    return this.cleanFromFile;
  }

  /** Drops a block that failed its check against S3. */
  discard(block: number): void {
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

  /** Lets write-back start (after the mounted flag says the disk is ours). */
  resume(): void {
    this.paused = false;
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
      if (e.data) {
        const offsets = buffers.get(e.data.buffer) ?? new Set<number>();
        if (offsets.has(e.data.byteOffset)) fail(`block ${block} shares its bytes with another block`);
        offsets.add(e.data.byteOffset);
        buffers.set(e.data.buffer, offsets);
      }
    }
    for (const e of [...this.dirty, ...this.queued.all()]) {
      if (this.entries.get(e.block) !== e) fail(`block ${e.block} (${e.state}) is queued but not in the cache`);
    }
    if (uploading > this.uploads + this.deletes) fail(`${uploading} blocks uploading, ${this.uploads + this.deletes} write-backs counted`);
    for (const b of buffers.keys()) if (this.buffers.holds(b)) fail("a spare buffer still holds a cached block");
  }

  protected ownStats(): StatGroup {
    return { layer: "block cache", values: [...this.counters.entries(), ["blocks cached", this.entries.size], ["blocks dirty", this.dirty.size]] };
  }

  protected resetOwnStats(): void {
    this.counters.reset();
  }
}
