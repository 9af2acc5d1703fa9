/**
 * Spare block buffers: the buffers of blocks the cache let go that nothing else holds, kept for
 * the next block's bytes (a write, or the body of a GET). Fresh memory is what a sustained transfer
 * costs most: faulting it in takes more CPU than moving the bytes, and it leaves garbage behind
 * (a sustained write: a quarter less CPU, a tenth of the forced collections; a read past a full
 * cache: see http-threads.ts). A buffer given back becomes spare on the next turn of the event loop (a
 * reader's view of a block is good for its turn).
 */
import { onHugePages } from "./huge-pages.ts";

/** Most buffers kept for reuse. */
const SPARE_BLOCKS = 8;

export class BufferPool {
  private readonly spare: Uint8Array[] = [];
  private released: Uint8Array[] = [];

  constructor(readonly blockSize: number) {}

  /** A buffer for a block's bytes: a copy of `from`, else zeros; a spare one if there is one. */
  take(from: Uint8Array | null = null): Uint8Array {
    const spare = this.spare.pop();
    if (!spare) {
      const fresh = this.fresh();
      if (from) fresh.set(from);
      return fresh;
    }
    if (from) spare.set(from);
    else spare.fill(0);
    return spare;
  }

  /** A buffer whose bytes the caller overwrites in full (no need to clear a spare one). */
  takeToFill(): Uint8Array {
    return this.spare.pop() ?? this.fresh();
  }

  private fresh(): Uint8Array {
    return onHugePages(new Uint8Array(this.blockSize));
  }

  /** A spare buffer, if there is one (none is made). */
  takeSpare(): Uint8Array | undefined {
    return this.spare.pop();
  }

  /**
   * Takes back a whole block's buffer that nobody else holds; false when it is not kept (not a
   * whole block's, or enough are kept), and the caller lets it go.
   */
  give(data: Uint8Array): boolean {
    const whole = data.byteOffset === 0 && data.byteLength === this.blockSize && data.buffer.byteLength === this.blockSize;
    if (!whole || this.spare.length + this.released.length >= SPARE_BLOCKS) return false;
    if (this.released.length === 0) {
      setTimeout(() => {
        this.spare.push(...this.released);
        this.released = [];
      }, 0);
    }
    this.released.push(data);
    return true;
  }

  /** Whether the pool holds this memory (for the cache's invariant check: a cached block must not). */
  holds(buffer: ArrayBufferLike): boolean {
    return [...this.spare, ...this.released].some((b) => b.buffer === buffer);
  }
}
