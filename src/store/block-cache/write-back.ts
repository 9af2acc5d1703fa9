/**
 * Write-back and flush: dirty blocks stored below, several at once, and the waits for them.
 *
 * Write-backs go in the order write-back-queue.ts keeps. `flush` (fsync, close, unmount) returns only when every block dirtied
 * before it is stored; a failed write-back fails the flush with EIO and the block stays dirty.
 */
import { Errno, FsError, messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import type { BlockStore } from "../block-store.ts";
import { ZERO_WRITES_IN_FLIGHT } from "../block-store.ts";
import { type CacheCounters, type Entries, type Entry, IN_FILE } from "./entries.ts";
import type { Lending, Room } from "./lending.ts";
import type { Residency } from "./residency.ts";
import { WriteBackQueue } from "./write-back-queue.ts";

/** Failures that come in runs (write-backs in an outage, saves to a full disk) are logged at most this often. */
export const ERROR_LOG_INTERVAL_MS = 10_000;

/** What write-back needs of the rest of the cache. */
export interface WriteBackHost {
  readonly inner: BlockStore;
  readonly o: { readonly threads: number; readonly writeDelayMs: number; readonly log: Logger };
  readonly counters: CacheCounters;
  readonly entries: Entries;
  readonly residency: Residency;
  readonly room: Room;
  readonly lending: Lending;
}

export class WriteBack {
  /** Dirty blocks waiting for their write-back (not uploading). */
  private readonly order: WriteBackQueue<Entry>;
  /** Write-backs in flight (at most --blockCacheThreads). */
  private uploading = 0;
  /**
   * Write-backs of zero blocks in flight: deletes, which hold no bytes and which the object store
   * may gather into bulk requests, so they are not held to --blockCacheThreads.
   */
  private deleting = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  /** Every write-back is due now (the cache closes). */
  private closed = false;
  /** Waiting for a block's write-back: resolve when stored >= version, reject on failure. */
  private readonly storeWaiters = new Map<Entry, { version: number; resolve: () => void; reject: (e: unknown) => void }[]>();
  /** Last time a failed write-back was logged, and those not logged since (see logError). */
  private errorLogged = -Infinity;
  private errorsUnlogged = 0;

  /** `paused`: no write-back starts until resume (a cache file waits until the mount is cleared to write). */
  constructor(
    private readonly host: WriteBackHost,
    private paused: boolean,
  ) {
    this.order = new WriteBackQueue(host.o.writeDelayMs);
  }

  get uploads(): number {
    return this.uploading;
  }

  get deletes(): number {
    return this.deleting;
  }

  /** A block just dirtied (again): its write-back falls due after the delay. */
  queue(entry: Entry): void {
    this.order.add(entry);
    this.pump();
  }

  /** A queued block written again: its delay starts again. */
  rewritten(entry: Entry): void {
    this.order.rewritten(entry);
  }

  /** A dirty block wanted now (flush, --blockCacheSync). */
  hurry(entry: Entry): void {
    if (entry.state !== "dirty") return; // an upload in flight: hurried again when it ends
    this.order.hurry(entry);
    this.pump();
  }

  /** Lets write-back start. */
  resume(): void {
    this.paused = false;
    this.pump();
  }

  /** Every write-back is due now: the cache closes. */
  closing(): void {
    this.closed = true;
  }

  /** No write-back starts any more (the mount gave up storing). */
  halt(): void {
    this.paused = true;
    this.closed = true;
    this.stopTimer();
  }

  stopTimer(): void {
    clearTimeout(this.timer);
  }

  /**
   * Starts write-backs that are due, up to --blockCacheThreads uploads at once (and many more
   * deletes); else sets a timer for the next.
   */
  private pump(): void {
    while (this.uploading < this.host.o.threads && this.deleting < ZERO_WRITES_IN_FLIGHT && !this.paused) {
      // Writers waiting for room, or unmounting: everything is due now.
      const entry = this.order.takeDue(this.closed || this.host.room.waiting);
      if (typeof entry === "number") {
        this.arm(entry);
        return;
      }
      const upload = entry.data !== null;
      if (upload) this.uploading++;
      else this.deleting++;
      this.host.entries.evict();
      void this.writeBack(entry).finally(() => {
        if (upload) this.uploading--;
        else this.deleting--;
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
    const { entries, residency, lending, counters } = this.host;
    entry.state = "uploading";
    let data: Uint8Array | null = null;
    let own = false;
    try {
      // Bytes in the file alone are read back into a buffer of the upload's own, which takes no room
      // in memory: that may be full of blocks waiting for uploads to leave it (a cache file on a full
      // disk cannot take them). What a write put in memory meanwhile is newer still.
      while (entry.data === IN_FILE) {
        const into = lending.buffers.takeToFill();
        if (await residency.readBack(entry, into)) {
          data = into;
          own = true;
          break;
        }
        lending.recycle(into);
        if (!entries.holds(entry)) return; // abandoned
      }
      entry.state = "uploading"; // a write while the slot was read made it redirtied: that write is what goes up now
      const version = entry.version;
      if (!own) {
        data = entry.data as Uint8Array | null;
        if (data) lending.lend(entry, data);
      }
      // The cache file's record of the stored version needs its MD5: taken once, here, and handed
      // down for the upload, which would otherwise hash the same bytes again.
      const hashing = data ? residency.uploadMd5(data) : undefined;
      const md5 = hashing && (await hashing);
      await this.host.inner.writeBlock(entry.block, data, md5);
      entry.stored = version;
      entry.storedMd5 = md5;
      entry.failures = 0;
      entry.retryAt = 0;
      counters.add("write-backs");
      counters.add("write-back bytes", data ? data.length : 0);
      residency.stored(entry, version, data);
      if (entry.state === "uploading") {
        entry.state = "clean";
        entries.dirty.delete(entry);
        this.host.room.wake();
        entries.evict();
      } else {
        entry.state = "dirty";
        if (this.storeWaiters.has(entry)) this.hurry(entry); // written again meanwhile, and a flush waits for it
        else this.queue(entry); // written again meanwhile: the newer bytes wait their turn
      }
      this.settleWaiters(entry, undefined);
    } catch (err) {
      if (!entries.holds(entry)) return; // abandoned (see abandon)
      entry.state = "dirty";
      this.order.failedOnce(entry);
      counters.add("write-back errors");
      this.logError(entry, err);
      this.settleWaiters(entry, err);
    } finally {
      // An upload's own copy is reused, unless its MD5 is being taken for the cache file (see file-saves.ts).
      if (own) lending.letGo(data!, !entry.lent.includes(data!));
      else if (data) lending.giveBack(entry, data);
    }
  }

  /**
   * Write-back failures come in runs (an outage fails every block, round after round): one line
   * every ERROR_LOG_INTERVAL_MS at most, counting those left out since the last.
   */
  private logError(entry: Entry, err: unknown): void {
    const now = performance.now();
    if (now - this.errorLogged < ERROR_LOG_INTERVAL_MS) {
      this.errorsUnlogged++;
      return;
    }
    const more = this.errorsUnlogged > 0 ? ` (${this.errorsUnlogged} more failed since the last such line)` : "";
    this.errorLogged = now;
    this.errorsUnlogged = 0;
    this.host.o.log.error(`write-back of block ${entry.block} failed (${entry.failures}x), keeping it dirty: ${messageOf(err)}${more}`);
  }

  storedAt(entry: Entry, version: number): Promise<void> {
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
   * Settles when every block dirty now is stored. The first block that fails rejects it with EIO
   * at once (the others keep going out, and the failed one stays dirty and is retried): an fsync
   * against a server that refuses everything answers after one block's retries, not after all
   * of them.
   */
  storedAll(): Promise<unknown> {
    const targets = [...this.host.entries.dirty].map((entry) => ({ entry, version: entry.version }));
    // A flush tries failed blocks again at once.
    for (const { entry } of targets) this.hurry(entry);
    return Promise.all(targets.map(({ entry, version }) => this.storedAt(entry, version)));
  }

  /** Waits until a block's write-back, a save or a read ends (and makes write-back urgent meanwhile). */
  roomFreed(): Promise<void> {
    const freed = this.host.room.wait();
    this.pump(); // room is made by writing back at once
    return freed;
  }

  /**
   * Gives up a dirty block whose only copy, in the cache file, is unreadable (see
   * file-residency.ts): reads then get what storage holds, and a flush waiting for it fails.
   */
  abandon(entry: Entry, err: Error): void {
    this.order.remove(entry);
    this.host.entries.drop(entry);
    this.settleWaiters(entry, err);
    this.host.room.wake();
  }

  /** How many write-back queues hold the entry (for the invariant check: see WriteBackQueue.queuesHolding). */
  queuesHolding(entry: Entry): number {
    return this.order.queuesHolding(entry);
  }

  /** Every queued entry (for the invariant check). */
  queued(): Iterable<Entry> {
    return this.order.all();
  }
}
