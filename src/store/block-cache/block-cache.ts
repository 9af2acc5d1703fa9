/**
 * The block cache: an LRU of blocks in memory with write-back and read-ahead.
 *
 * Writes land in the cache and return; worker tasks write dirty blocks to the store below after
 * --blockCacheWriteDelay, several at once, and a block written again meanwhile goes out once with
 * its newest bytes. `flush` (fsync, close, unmount) returns only when every block dirtied before it
 * is stored; a failed write-back fails the flush with EIO and the block stays dirty. Sequential
 * readers get --readAhead blocks fetched ahead of them.
 *
 * Buffers: a block being uploaded, or just read from below, is not ours to change, so a write
 * copies it first; otherwise writes change the cached bytes in place. A reader gets the cached
 * bytes themselves, valid for its turn of the event loop (see block-store.ts).
 */
import { Errno, FsError, messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BlockStore, StatGroup } from "../block-store.ts";
import { isAllZero } from "../block-store.ts";
import { Counters } from "../counters.ts";
import { Layer } from "../layer.ts";
import type { CacheFile, LoadedBlock } from "./cache-file.ts";

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
  log: Logger;
}

interface Entry {
  block: number;
  /** null: the zero block. */
  data: Uint8Array | null;
  /** We may modify `data` in place (nobody else holds it). */
  owned: boolean;
  /** Set while the first read of the block is in flight. */
  loading: Promise<void> | undefined;
  /** Bumped by every write; `stored` is the version the store below has. */
  version: number;
  stored: number;
  dirtySince: number;
  uploading: boolean;
  /** Wanted by a flush: written out without waiting for the delay. */
  urgent: boolean;
  /** After a failed write-back, not before this time. */
  retryAt: number;
  failures: number;
  /** Fetched by read-ahead and not read yet. */
  aheadUnread: boolean;
  lastUsed: number;
  /** Where the bytes are in the cache file, if anywhere. */
  slot: number | undefined;
}

const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;

export class BlockCache extends Layer {
  /** In LRU order: the first entry is the least recently used. */
  private readonly entries = new Map<number, Entry>();
  private readonly dirty = new Set<Entry>();
  private readonly zero: Uint8Array;
  private readonly counters = new Counters([
    "read hits", "read misses", "read-ahead fetches", "read-ahead hits", "writes", "coalesced writes",
    "write-backs", "write-back bytes", "write-back errors", "evictions", "writer waits",
  ] as const);
  /** Waiting for a block's write-back: resolve when stored >= version, reject on failure. */
  private readonly storeWaiters = new Map<Entry, { version: number; resolve: () => void; reject: (e: unknown) => void }[]>();
  private roomWaiters: (() => void)[] = [];
  /** Workers waiting for work; `wake` calls them all. */
  private readonly sleepers = new Set<() => void>();
  private closed = false;
  private readonly workers: Promise<void>[];
  private readonly sweeper: ReturnType<typeof setInterval> | undefined;
  private lastRead = -2;
  /** With a cache file, write-back waits until the mount is cleared to write (see resume). */
  private paused: boolean;
  private readonly file: CacheFile | undefined;
  /** Clean blocks reloaded from the cache file and their MD5, until checked against storage. */
  private readonly cleanFromFile: { block: number; md5: string | null }[];
  private sequentialRun = 0;

  /** With `fromFile`, the cache is kept in that file too (see cache-file.ts), starting with its blocks. */
  constructor(
    inner: BlockStore,
    private readonly o: BlockCacheOptions,
    fromFile?: { file: CacheFile; blocks: LoadedBlock[] },
  ) {
    super(inner);
    this.zero = new Uint8Array(inner.blockSize);
    this.file = fromFile?.file;
    this.paused = this.file !== undefined;
    // Only the summary is kept: the loaded bytes belong to the entries, which may drop them.
    this.cleanFromFile = (fromFile?.blocks ?? []).filter((b) => !b.dirty).map((b) => ({ block: b.block, md5: b.data ? (b.md5 ?? null) : null }));
    for (const b of fromFile?.blocks ?? []) {
      const entry = this.create(b.block, false);
      entry.data = b.data;
      entry.slot = b.slot;
      if (b.dirty) {
        entry.version = 1;
        this.dirty.add(entry);
        entry.dirtySince = performance.now();
      }
    }
    this.workers = Array.from({ length: o.threads }, () => this.worker());
    if (o.timeoutMs > 0) {
      this.sweeper = setInterval(() => this.dropIdle(), Math.max(50, o.timeoutMs / 2));
      this.sweeper.unref?.();
    }
  }

  // ---- reads ----

  async readBlock(block: number): Promise<Uint8Array> {
    let entry = this.entries.get(block);
    if (entry) {
      this.counters.add("read hits");
      if (entry.aheadUnread) {
        this.counters.add("read-ahead hits");
        entry.aheadUnread = false;
      }
      if (entry.loading) await entry.loading;
    } else {
      this.counters.add("read misses");
      entry = this.load(block, false);
      await entry.loading;
    }
    this.touch(entry);
    this.noteRead(block);
    return this.share(entry);
  }

  /** The entry's bytes for a reader. */
  private share(entry: Entry): Uint8Array {
    return entry.data ?? this.zero;
  }

  /** A new entry, most recently used; its bytes are zeros until loaded or written. */
  private create(block: number, ahead: boolean): Entry {
    const entry: Entry = {
      block, data: null, owned: false, loading: undefined, version: 0, stored: 0, dirtySince: 0,
      uploading: false, urgent: false, retryAt: 0, failures: 0, aheadUnread: ahead, lastUsed: performance.now(), slot: undefined,
    };
    this.entries.set(block, entry);
    return entry;
  }

  /** Starts fetching a block into a new entry (`entry.loading` settles when it is there). */
  private load(block: number, ahead: boolean): Entry {
    const entry = this.create(block, ahead);
    entry.loading = this.inner.readBlock(block).then(
      (data) => {
        entry.loading = undefined;
        // A write that arrived meanwhile is newer than what was read.
        if (entry.version === 0) {
          entry.data = isAllZero(data) ? null : data;
          this.save(entry, false);
        }
      },
      (err) => {
        entry.loading = undefined;
        if (this.entries.get(block) === entry && entry.version === 0) this.entries.delete(block);
        throw err;
      },
    );
    if (ahead) entry.loading.catch(() => {}); // nobody awaits a read-ahead; a reader will retry
    this.evict();
    return entry;
  }

  private noteRead(block: number): void {
    if (block === this.lastRead) return; // another piece of the same block
    this.sequentialRun = block === this.lastRead + 1 ? this.sequentialRun + 1 : 1;
    this.lastRead = block;
    if (this.o.readAhead <= 0 || this.sequentialRun < this.o.readAheadTrigger) return;
    for (let b = block + 1; b <= block + this.o.readAhead && b < this.numBlocks; b++) {
      if (this.entries.has(b) || this.entries.size >= this.o.size) continue;
      this.counters.add("read-ahead fetches");
      this.load(b, true);
    }
  }

  // ---- writes ----

  async writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    const entry = await this.entryForWrite(block, false);
    if (!data) entry.data = null;
    else if (entry.owned && entry.data) entry.data.set(data);
    else entry.data = data.slice();
    entry.owned = data !== null;
    await this.dirtied(entry);
  }

  override async writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    const entry = await this.entryForWrite(block, true);
    if (!entry.owned || !entry.data) {
      const copy = new Uint8Array(this.blockSize);
      if (entry.data) copy.set(entry.data);
      entry.data = copy;
      entry.owned = true;
    }
    entry.data.set(data, offset);
    if (isAllZero(data) && isAllZero(entry.data)) entry.data = null;
    await this.dirtied(entry);
  }

  /**
   * The entry a write goes to, once there is room for one more dirty block. A partial write needs
   * the old bytes: from the cache, else read below (free for a block the zero cache knows).
   */
  private async entryForWrite(block: number, needOld: boolean): Promise<Entry> {
    for (;;) {
      const entry = this.entries.get(block);
      if (!entry || !this.dirty.has(entry)) {
        if (this.dirty.size >= this.o.maxDirty) {
          this.counters.add("writer waits");
          await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
          continue;
        }
      }
      if (entry) {
        // A failed read (even a read-ahead) only matters if this write needs the old bytes.
        if (entry.loading) await entry.loading.catch((err) => (needOld ? Promise.reject(err) : undefined));
        if (this.entries.get(block) !== entry) continue; // evicted or failed meanwhile
        this.touch(entry);
        return entry;
      }
      if (!needOld) {
        const fresh = this.create(block, false);
        this.evict();
        return fresh;
      }
      await this.load(block, false).loading;
    }
  }

  private async dirtied(entry: Entry): Promise<void> {
    this.save(entry, true);
    this.counters.add("writes");
    entry.version++;
    entry.aheadUnread = false;
    if (this.dirty.has(entry)) this.counters.add("coalesced writes");
    else {
      this.dirty.add(entry);
      entry.dirtySince = performance.now();
    }
    if (this.o.sync) {
      entry.urgent = true;
      this.wake();
      await this.storedAt(entry, entry.version);
    } else this.wake();
  }

  // ---- write-back ----

  private async worker(): Promise<void> {
    while (!this.closed || this.dirty.size > 0) {
      const next = this.nextDue();
      if (next.entry) await this.writeBack(next.entry);
      else if (this.closed) return;
      else await this.sleep(next.waitMs);
    }
  }

  /** The oldest dirty block that may go now, or how long until one may. */
  private nextDue(): { entry?: Entry; waitMs: number } {
    const now = performance.now();
    let waitMs = Infinity;
    if (this.paused) return { waitMs };
    for (const entry of this.dirty) {
      if (entry.uploading) continue;
      const due = Math.max(entry.urgent || this.closed ? 0 : entry.dirtySince + this.o.writeDelayMs, entry.retryAt);
      if (due <= now) return { entry, waitMs: 0 };
      waitMs = Math.min(waitMs, due - now);
    }
    return { waitMs };
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === Infinity ? undefined : setTimeout(done, ms);
      const sleepers = this.sleepers;
      function done() {
        if (timer) clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      }
      sleepers.add(done);
    });
  }

  private wake(): void {
    for (const done of [...this.sleepers]) done();
  }

  private async writeBack(entry: Entry): Promise<void> {
    const version = entry.version;
    const data = entry.data;
    entry.uploading = true;
    entry.owned = false; // the bytes travel now: the next write copies
    try {
      await this.inner.writeBlock(entry.block, data);
      entry.stored = version;
      entry.failures = 0;
      entry.retryAt = 0;
      this.counters.add("write-backs");
      this.counters.add("write-back bytes", data ? data.length : 0);
      if (entry.version === version) {
        if (entry.slot !== undefined) this.file!.markClean(entry.slot, entry.block, data);
        this.dirty.delete(entry);
        entry.urgent = false;
        this.roomWaiters.splice(0).forEach((resolve) => resolve());
        this.evict();
      } else {
        entry.dirtySince = performance.now(); // written again meanwhile: the newer bytes wait their turn
      }
      this.settleWaiters(entry, undefined);
    } catch (err) {
      entry.failures++;
      entry.retryAt = performance.now() + Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (entry.failures - 1));
      this.counters.add("write-back errors");
      this.o.log.error(`write-back of block ${entry.block} failed (${entry.failures}x), keeping it dirty: ${messageOf(err)}`);
      this.settleWaiters(entry, err);
    } finally {
      entry.uploading = false;
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

  /** Every block dirty now is stored when this resolves; a failure rejects with EIO. */
  override async flush(): Promise<void> {
    const targets = [...this.dirty].map((entry) => ({ entry, version: entry.version }));
    for (const { entry } of targets) {
      entry.urgent = true;
      entry.retryAt = 0; // a flush tries failed blocks again at once
    }
    this.wake();
    const results = await Promise.allSettled(targets.map(({ entry, version }) => this.storedAt(entry, version)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
    await this.inner.flush();
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  override async close(): Promise<void> {
    this.resume();
    await this.flush();
    this.closed = true;
    this.wake();
    await Promise.all(this.workers);
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

  /** Drops least recently used clean blocks until the cache fits. Dirty blocks are never dropped. */
  private evict(): void {
    if (this.entries.size <= this.o.size) return;
    for (const entry of this.entries.values()) {
      if (this.entries.size <= this.o.size) return;
      if (this.dirty.has(entry) || entry.loading || entry.uploading) continue;
      this.forget(entry);
    }
  }

  private dropIdle(): void {
    const limit = performance.now() - this.o.timeoutMs;
    for (const entry of this.entries.values()) {
      if (entry.lastUsed >= limit) break; // LRU order: the rest are newer
      if (this.dirty.has(entry) || entry.loading || entry.uploading) continue;
      this.forget(entry);
    }
  }

  private forget(entry: Entry): void {
    this.entries.delete(entry.block);
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
    if (entry && !this.dirty.has(entry)) this.forget(entry);
  }

  /** Records in the cache file which mount uses it now. */
  setFileToken(token: number): void {
    this.file?.setToken(token);
  }

  /** Lets write-back start (after the mounted flag says the disk is ours). */
  resume(): void {
    this.paused = false;
    this.wake();
  }

  protected ownStats(): StatGroup {
    return { layer: "block cache", values: [...this.counters.entries(), ["blocks cached", this.entries.size], ["blocks dirty", this.dirty.size]] };
  }

  protected resetOwnStats(): void {
    this.counters.reset();
  }
}
