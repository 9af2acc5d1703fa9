/**
 * The eventual-consistency guard, directly above the codec (which is directly above the object store).
 *
 * After a block is written (or deleted) its MD5 (or "no object") is remembered for --md5CacheTime.
 * A read of a remembered block must come back with exactly that: an older version, data where a
 * delete was done, or 404 where data was written is a stale answer, asked again with backoff until
 * it matches or --maxRetryPause runs out (then EIO). Stale data never goes up.
 *
 * A read holds what it expects for as long as it runs: an entry a read judges answers against is
 * not forgotten under it, however long its retries take. A stale answer also proves the server
 * still inconsistent, so the entry is kept another --md5CacheTime from then: a server stale for
 * longer than the retry budget gets EIO, read after read, never the old bytes.
 *
 * What a read of a block may return, by the block's state:
 *
 * | state     | kept in                   | a read returns                                          |
 * |-----------|---------------------------|---------------------------------------------------------|
 * | unknown   | nothing                   | what the server answers                                 |
 * | writing   | `queues`                  | the bytes being written (the newest queued)             |
 * | written   | `known`: one MD5          | an answer with that MD5, else it is stale and retried   |
 * | uncertain | `known`: MD5s and bytes   | after a failed write: a version it had before or bytes  |
 * |           |                           | a failed write sent; an answer that matches settles it  |
 *
 * A write moves the block to writing, then to written (or uncertain if it failed). An answer to a
 * read that overlapped a write is judged against the state from before the write, and if it does
 * not match that, asked again: never judged against the state of before, nor taken as stale.
 *
 * --minWriteDelay keeps two writes of one block that far apart, so the server cannot apply them in
 * the wrong order; writes that arrive while one waits are coalesced (only the newest goes out).
 */
import { Errno, FsError } from "../../errors.ts";
import type { VerifiedStore } from "../block-store.ts";
import type { StatGroup } from "../../util/stat-group.ts";
import { isAllZero, zeroBlock } from "../block-store.ts";
import { Counters } from "../../util/counters.ts";
import { Layer } from "../layer.ts";
import { delay } from "../../util/delay.ts";
import { Backoff } from "../../util/backoff.ts";

export interface ConsistencyGuardOptions {
  /** Most blocks remembered; a write waits for room beyond it. */
  cacheSize: number;
  /** How long a write is remembered (0: forever). */
  cacheTimeMs: number;
  minWriteDelayMs: number;
  initialRetryPauseMs: number;
  maxRetryPauseMs: number;
}

interface Remembered {
  /** MD5 hex of versions the server may hold; null: no object (or, for block 0, all zeros). */
  md5s: (string | null)[];
  /** Uncertain: the bytes of writes that failed and may have landed (null: a delete). */
  attempts: (Uint8Array | null)[];
  /** When the write that set it ended (for --minWriteDelay). */
  completed: number;
  /** Forgotten after this, unless a read holds it. */
  expires: number;
  /** Reads in flight that judge answers against this entry. */
  readers: number;
}

interface Job {
  data: Uint8Array | null;
  /** The MD5 hex of `data`, when the writer gave it. */
  md5: string | undefined;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Queue {
  /** The write waiting to go (it takes newer data until it does). */
  waiting: Job | undefined;
  /** The write on its way to the server. */
  sending: Job | undefined;
}

/** Uncertain versions kept per block; past this a block that keeps failing is unknown. */
const MAX_ATTEMPTS = 4;

export class ConsistencyGuard extends Layer<VerifiedStore> {
  /** In expiry order: the first entry expires first (an entry whose expiry moves moves to the end). */
  private readonly known = new Map<number, Remembered>();
  /** Per block with writes in progress. */
  private readonly queues = new Map<number, Queue>();
  private readonly zero: Uint8Array;
  /** Settled when a read lets go of an entry, for a write waiting for room that only held entries fill. */
  private released: PromiseWithResolvers<void> | undefined;
  private readonly counters = new Counters(["stale answers", "stale retries", "writes delayed", "writes coalesced", "cache full waits"] as const);

  constructor(
    inner: VerifiedStore,
    private readonly o: ConsistencyGuardOptions,
  ) {
    super(inner);
    this.zero = zeroBlock(inner.blockSize);
  }

  /** The block's entry, unless it expired (then it is forgotten). */
  private remembered(block: number): Remembered | undefined {
    const entry = this.known.get(block);
    if (entry && this.expired(entry)) {
      this.known.delete(block);
      return undefined;
    }
    return entry;
  }

  private expired(entry: Remembered): boolean {
    return this.o.cacheTimeMs > 0 && entry.readers === 0 && performance.now() > entry.expires;
  }

  async readBlock(block: number): Promise<Uint8Array> {
    const backoff = new Backoff(this.o.initialRetryPauseMs, this.o.maxRetryPauseMs);
    let held: Remembered | undefined;
    try {
      for (;;) {
        const queue = this.queues.get(block);
        const writing = queue?.waiting ?? queue?.sending;
        // The writer's bytes stay valid until its write settles, past the reader's turn.
        if (writing) return writing.data ?? this.zero;
        const expected = this.remembered(block);
        if (expected !== held) {
          if (held) this.release(held);
          if (expected) expected.readers++;
          held = expected;
        }
        const got = await this.inner.readVerified(block);
        if (!expected) return got.data ?? this.zero;
        if (this.accepts(expected, got)) return got.data ?? this.zero;
        // A write began or ended meanwhile: the answer may be its, so ask again before judging.
        if (this.queues.has(block) || this.known.get(block) !== expected) continue;
        this.counters.add("stale answers");
        this.keep(block, expected);
        if (!backoff.canWait()) {
          throw new FsError(Errno.EIO, `block ${block}: the server still answers an older version after ${backoff.paused} ms of retries`);
        }
        this.counters.add("stale retries");
        await backoff.wait();
      }
    } finally {
      if (held) this.release(held);
    }
  }

  /** The server was just seen stale for this block: remember it another --md5CacheTime from now. */
  private keep(block: number, entry: Remembered): void {
    entry.expires = performance.now() + this.o.cacheTimeMs;
    this.known.delete(block);
    this.known.set(block, entry);
  }

  private release(entry: Remembered): void {
    entry.readers--;
    if (entry.readers === 0 && this.released) {
      this.released.resolve();
      this.released = undefined;
    }
  }

  /** Whether an answer is one the block's remembered state allows; an uncertain state it matches is settled. */
  private accepts(expected: Remembered, got: { data: Uint8Array | null; md5: string | null }): boolean {
    const absent = () => got.data === null || isAllZero(got.data);
    const known = expected.md5s.some((md5) => (md5 === null ? absent() : got.md5 === md5));
    if (expected.attempts.length === 0) return known;
    if (!known && !expected.attempts.some((a) => (a === null ? absent() : got.data !== null && equal(a, got.data)))) return false;
    expected.md5s = [absent() ? null : got.md5];
    expected.attempts = [];
    return true;
  }

  writeBlock(block: number, data: Uint8Array | null, md5?: string): Promise<void> {
    let queue = this.queues.get(block);
    if (queue?.waiting) {
      this.counters.add("writes coalesced");
      queue.waiting.data = data;
      queue.waiting.md5 = md5;
      return queue.waiting.promise;
    }
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    const job: Job = { data, md5, promise, resolve, reject };
    if (queue) queue.waiting = job;
    else {
      queue = { waiting: job, sending: undefined };
      this.queues.set(block, queue);
      void this.drain(block, queue);
    }
    return promise;
  }

  /** Sends a block's queued writes one after the other, each --minWriteDelay after the previous. */
  private async drain(block: number, queue: Queue): Promise<void> {
    while (queue.waiting) {
      const job = queue.waiting;
      const last = this.known.get(block)?.completed;
      const wait = last === undefined ? 0 : last + this.o.minWriteDelayMs - performance.now();
      if (wait > 0) {
        this.counters.add("writes delayed");
        await delay(wait);
      }
      await this.room(block);
      queue.waiting = undefined; // from here on a new write queues behind this one
      queue.sending = job;
      try {
        const md5 = await this.inner.writeVerified(block, job.data, job.md5);
        this.remember(block, { md5s: [job.data === null ? null : md5], attempts: [] });
        job.resolve();
      } catch (err) {
        this.uncertain(block, job.data);
        job.reject(err);
      } finally {
        queue.sending = undefined;
      }
    }
    this.queues.delete(block);
  }

  private remember(block: number, state: Pick<Remembered, "md5s" | "attempts">): void {
    this.forgetExpired(); // as entries come, the expired ones go: the cache holds --md5CacheTime of writes, not --md5CacheSize
    this.known.delete(block); // to the end: the expiry order
    const now = performance.now();
    this.known.set(block, { ...state, completed: now, expires: now + this.o.cacheTimeMs, readers: 0 });
  }

  /**
   * A write failed, maybe after the server stored it: from now on the block may hold what it held
   * before or what was sent. If what it held before was not known, nothing is.
   */
  private uncertain(block: number, data: Uint8Array | null): void {
    const before = this.remembered(block);
    if (!before || before.attempts.length >= MAX_ATTEMPTS) {
      this.known.delete(block);
      return;
    }
    // The writer's bytes are only lent for the write.
    this.remember(block, { md5s: before.md5s, attempts: [...before.attempts, data && data.slice()] });
  }

  /** Waits until the MD5 cache can remember one more block. */
  private async room(block: number): Promise<void> {
    let waited = false;
    while (!this.known.has(block) && this.known.size >= this.o.cacheSize) {
      const left = this.forgetExpired();
      if (this.known.size < this.o.cacheSize) return;
      if (!waited) this.counters.add("cache full waits");
      waited = true;
      // Remembered forever (--md5CacheTime=0) only when every block fits, so this wait always ends.
      if (left !== undefined) await delay(left);
      else await (this.released ??= Promise.withResolvers<void>()).promise; // every entry is held by a read
    }
  }

  /** Forgets every expired entry no read holds; returns the ms until the next one expires (undefined: all are held). */
  private forgetExpired(): number | undefined {
    for (const [block, entry] of this.known) {
      if (entry.readers > 0) continue;
      if (!this.expired(entry)) return entry.expires - performance.now();
      this.known.delete(block);
    }
    return undefined;
  }

  protected ownStats(): StatGroup {
    return { layer: "consistency guard", values: [...this.counters.entries(), ["blocks remembered", this.known.size]] };
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
