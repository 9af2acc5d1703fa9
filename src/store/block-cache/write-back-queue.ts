/**
 * The order in which dirty blocks are written back.
 *
 * A block goes out --blockCacheWriteDelay after its last write, so one written over and over (a
 * filesystem's metadata) is uploaded once, not every delay; but never later than MAX_AGE_DELAYS
 * delays after it became dirty; at once when a flush wants it or writers wait for room; and after
 * a failure, not before its retry time.
 *
 * Queues hold dirty blocks that are not uploading: `waiting` in the order of their last write and
 * `byAge` in the order they became dirty (the heads fall due first), `urgent` wanted now, `failed`
 * with their own retry times. A queued block is in `waiting` and `byAge`, or in one other queue.
 */

/** A block kept dirty by constant writes is uploaded at least this many write delays apart (30 s by default, the kernel's dirty_expire). */
export const MAX_AGE_DELAYS = 120;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30_000;

export interface Queued {
  /** When it became dirty, and when it was last written. */
  dirtySince: number;
  lastWrite: number;
  /** After a failed write-back, not before this time. */
  retryAt: number;
  failures: number;
}

export class WriteBackQueue<E extends Queued> {
  private readonly waiting = new Set<E>();
  private readonly byAge = new Set<E>();
  private readonly urgent = new Set<E>();
  private readonly failed = new Set<E>();

  constructor(private readonly writeDelayMs: number) {}

  /** A block just dirtied (again, after its upload): its write-back falls due after the delay. */
  add(entry: E): void {
    entry.dirtySince = entry.lastWrite = performance.now();
    this.waiting.add(entry);
    this.byAge.add(entry);
  }

  /** A queued block written again: its delay starts again. */
  rewritten(entry: E): void {
    entry.lastWrite = performance.now();
    if (this.waiting.delete(entry)) this.waiting.add(entry); // to the back
  }

  /** A queued block wanted now (a flush, --blockCacheSync): failed ones are tried again at once. */
  hurry(entry: E): void {
    this.unqueue(entry);
    this.failed.delete(entry);
    entry.retryAt = 0;
    this.urgent.add(entry);
  }

  /** A write-back failed: tried again after a backoff that grows with each failure. */
  failedOnce(entry: E): void {
    entry.failures++;
    entry.retryAt = performance.now() + Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (entry.failures - 1));
    this.failed.add(entry);
  }

  /**
   * Takes the next block that may go now (`pressed`: everything waiting is due, for writers that
   * wait for room or an unmount). Otherwise returns when the first one will be due (Infinity: none).
   */
  takeDue(pressed: boolean): E | number {
    const now = performance.now();
    let entry: E | undefined = this.urgent.values().next().value;
    if (entry) {
      this.urgent.delete(entry);
      return entry;
    }
    const rested: E | undefined = this.waiting.values().next().value;
    const oldest: E | undefined = this.byAge.values().next().value;
    const restedAt = rested ? rested.lastWrite + this.writeDelayMs : Infinity;
    const oldestAt = oldest ? oldest.dirtySince + MAX_AGE_DELAYS * this.writeDelayMs : Infinity;
    entry = restedAt <= oldestAt ? rested : oldest;
    let dueAt = Math.min(restedAt, oldestAt);
    if (entry && (pressed || dueAt <= now)) {
      this.unqueue(entry);
      return entry;
    }
    for (const failed of this.failed) {
      if (failed.retryAt <= now) {
        this.failed.delete(failed);
        return failed;
      }
      dueAt = Math.min(dueAt, failed.retryAt);
    }
    return dueAt;
  }

  /** Takes a block out of every queue. */
  remove(entry: E): void {
    this.unqueue(entry);
    this.urgent.delete(entry);
    this.failed.delete(entry);
  }

  private unqueue(entry: E): void {
    this.waiting.delete(entry);
    this.byAge.delete(entry);
  }

  /** How many queues hold the block, counting `waiting` and `byAge` as one; -1 if it is in only one of those two. */
  queuesHolding(entry: E): number {
    if (this.waiting.has(entry) !== this.byAge.has(entry)) return -1;
    return [this.waiting, this.urgent, this.failed].filter((q) => q.has(entry)).length;
  }

  /** Every queued block (for the invariant check). */
  *all(): Iterable<E> {
    yield* this.byAge;
    yield* this.urgent;
    yield* this.failed;
  }
}
