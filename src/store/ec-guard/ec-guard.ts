/**
 * The eventual-consistency guard, directly above the codec (which is directly above S3).
 *
 * After a block is written (or deleted) its MD5 (or "no object") is remembered for --md5CacheTime.
 * A read of a remembered block must come back with exactly that: an older version, data where a
 * delete was done, or 404 where data was written is a stale answer, asked again with backoff until
 * it matches or --maxRetryPause runs out (then EIO). Stale data never goes up.
 *
 * --minWriteDelay keeps two writes of one block that far apart, so the server cannot apply them in
 * the wrong order; writes that arrive while one waits are coalesced (only the newest goes out).
 */
import { Errno, FsError } from "../../errors.ts";
import type { StatGroup } from "../block-store.ts";
import { isAllZero } from "../block-store.ts";
import { Counters } from "../counters.ts";
import { Layer } from "../layer.ts";
import { delay } from "../../util/delay.ts";
import type { Codec } from "../codec/codec.ts";

export interface EcGuardOptions {
  /** Most blocks remembered; a write waits for room beyond it. */
  cacheSize: number;
  /** How long a write is remembered (0: forever). */
  cacheTimeMs: number;
  minWriteDelayMs: number;
  initialRetryPauseMs: number;
  maxRetryPauseMs: number;
}

interface Remembered {
  /** MD5 hex of the stored bytes; null: no object (or, for block 0, all zeros). */
  md5: string | null;
  completed: number;
}

interface Job {
  data: Uint8Array | null;
  promise: Promise<void>;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export class EcGuard extends Layer<Codec> {
  /** In completion order: the first entry expires first. */
  private readonly known = new Map<number, Remembered>();
  /** Per block with writes in progress: the write waiting to go (it takes newer data until it does). */
  private readonly queues = new Map<number, { waiting: Job | undefined }>();
  private readonly zero: Uint8Array;
  private readonly counters = new Counters(["stale answers", "stale retries", "writes delayed", "writes coalesced", "cache full waits"] as const);

  constructor(
    inner: Codec,
    private readonly o: EcGuardOptions,
  ) {
    super(inner);
    this.zero = new Uint8Array(inner.blockSize);
  }

  private remembered(block: number): Remembered | undefined {
    const entry = this.known.get(block);
    if (entry && this.o.cacheTimeMs > 0 && performance.now() - entry.completed > this.o.cacheTimeMs) {
      this.known.delete(block);
      return undefined;
    }
    return entry;
  }

  async readBlock(block: number): Promise<Uint8Array> {
    const expected = this.remembered(block);
    if (!expected) return this.inner.readBlock(block);
    let pause = this.o.initialRetryPauseMs;
    let paused = 0;
    for (;;) {
      const got = await this.inner.readVerified(block);
      const fresh = expected.md5 === null ? got.data === null || isAllZero(got.data) : got.md5 === expected.md5;
      if (fresh) return got.data ?? this.zero;
      this.counters.add("stale answers");
      if (paused + pause > this.o.maxRetryPauseMs) {
        throw new FsError(Errno.EIO, `block ${block}: the server still answers an older version after ${paused} ms of retries`);
      }
      this.counters.add("stale retries");
      await delay(pause);
      paused += pause;
      pause *= 2;
    }
  }

  writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    let queue = this.queues.get(block);
    if (queue?.waiting) {
      this.counters.add("writes coalesced");
      queue.waiting.data = data;
      return queue.waiting.promise;
    }
    let resolve!: () => void;
    let reject!: (err: unknown) => void;
    const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
    const job: Job = { data, promise, resolve, reject };
    if (queue) queue.waiting = job;
    else {
      queue = { waiting: job };
      this.queues.set(block, queue);
      void this.drain(block, queue);
    }
    return promise;
  }

  /** Sends a block's queued writes one after the other, each --minWriteDelay after the previous. */
  private async drain(block: number, queue: { waiting: Job | undefined }): Promise<void> {
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
      try {
        const md5 = await this.inner.writeVerified(block, job.data);
        this.known.delete(block);
        this.known.set(block, { md5: job.data === null ? null : md5, completed: performance.now() });
        job.resolve();
      } catch (err) {
        job.reject(err);
      }
    }
    this.queues.delete(block);
  }

  /** Waits until the MD5 cache can remember one more block. */
  private async room(block: number): Promise<void> {
    let waited = false;
    while (!this.known.has(block) && this.known.size >= this.o.cacheSize) {
      const [oldest, entry] = this.known.entries().next().value as [number, Remembered];
      // Remembered forever (--md5CacheTime=0) only when every block fits, so this wait always ends.
      const left = this.o.cacheTimeMs === 0 ? Infinity : entry.completed + this.o.cacheTimeMs - performance.now();
      if (left <= 0) this.known.delete(oldest);
      else {
        if (!waited) this.counters.add("cache full waits");
        waited = true;
        await delay(left);
      }
    }
  }

  protected ownStats(): StatGroup {
    return { layer: "consistency guard", values: [...this.counters.entries(), ["blocks remembered", this.known.size]] };
  }

  protected resetOwnStats(): void {
    this.counters.reset();
  }
}
