/**
 * Block buffers lent, given back, reused or let go; and the wait for room.
 *
 * Room is for one more dirty block, or in memory: buffers given back, uploads and saves that end
 * make it.
 *
 * A block's bytes lent to an upload or a save, or read from a store below that keeps its bytes,
 * are not ours to change, so a write copies them first; otherwise writes change the cached bytes
 * in place. Freed buffers are reused through buffer-pool.ts: the pool may be shared with the
 * store below, whose GETs then read bodies into them.
 */
import type { BufferPool } from "../../memory/buffer-pool.ts";
import type { Entry } from "./entries.ts";

/** Waiting for room: for one more dirty block, or in memory. */
export class Room {
  private waiters: (() => void)[] = [];

  get waiting(): boolean {
    return this.waiters.length > 0;
  }

  /** Settles at the next wake (the caller sees that something will make room). */
  wait(): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  wake(): void {
    if (this.waiters.length > 0) this.waiters.splice(0).forEach((resolve) => resolve());
  }

  /** Memory was freed: those waiting for room try again, once the step that freed it is done. */
  released(): void {
    if (this.waiters.length > 0) queueMicrotask(() => this.wake());
  }
}

export class Lending {
  /**
   * Told the size of each block buffer the cache lets go (evicted, or replaced by a copy): the
   * process's memory budget collects such garbage in step with it (see memory-budget.ts).
   */
  onBlockDropped: ((bytes: number) => void) | undefined;

  constructor(
    readonly buffers: BufferPool,
    private readonly room: Room,
  ) {}

  /** Whether a write may change the entry's bytes in place. */
  changeable(entry: Entry): boolean {
    return entry.owned && entry.data instanceof Uint8Array && !entry.lent.includes(entry.data);
  }

  /** An upload or a save reads the bytes now: until given back, they are not changed or reused, nor leave memory. */
  lend(entry: Entry, data: Uint8Array): void {
    entry.lent.push(data);
  }

  /** An upload or a save is done with bytes it read: the block may leave memory now. */
  giveBack(entry: Entry, data: Uint8Array): void {
    entry.lent.splice(entry.lent.indexOf(data), 1);
    this.room.wake();
  }

  /** A block buffer the cache is done with: spare if `reuse` (nothing else holds it) and the pool keeps it, else garbage. */
  letGo(data: Uint8Array, reuse: boolean): void {
    if (!reuse || !this.buffers.give(data)) this.onBlockDropped?.(data.byteLength);
  }

  /** A buffer of the cache's own that nothing holds. */
  recycle(data: Uint8Array): void {
    this.letGo(data, true);
  }

  /** A buffer that stood for a block's bytes and was replaced by a copy: garbage now. */
  dropped(data: Uint8Array): void {
    this.onBlockDropped?.(data.byteLength);
  }

  /** Whether a buffer is a spare one of the pool (for the invariant check: no cached or lent bytes may be). */
  spare(buffer: ArrayBufferLike): boolean {
    return this.buffers.holds(buffer);
  }
}
