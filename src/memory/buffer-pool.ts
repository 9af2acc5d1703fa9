/**
 * Spare block buffers: the buffers of blocks the cache let go that nothing else holds, kept for
 * the next block's bytes (a write, or the body of a GET). Fresh memory is what a sustained transfer
 * costs most: faulting it in takes more CPU than moving the bytes, and it leaves garbage behind
 * (a sustained write: a quarter less CPU, a tenth of the forced collections; a read past a full
 * cache: see http-threads.ts). A buffer given back becomes spare on the next turn of the event loop (a
 * reader's view of a block is good for its turn).
 *
 * While the cache grows (no spare to reuse), the pool can keep a few new buffers faulted in ahead
 * by a thread of their own (see fresh-buffers.ts).
 */
import { FreshBuffers } from "./fresh-buffers.ts";

/** Most buffers kept, spare and faulted in ahead together. */
const KEPT_BLOCKS = 8;
/**
 * Smaller blocks are faulted in where they are used: a message to the thread and back costs about
 * what faulting in a few pages does.
 */
const AHEAD_MIN_BLOCK = 64 * 1024;

export class BufferPool {
  private readonly spare: Uint8Array[] = [];
  private released: Uint8Array[] = [];
  /** New buffers faulted in by the thread, not used yet. */
  private readonly ahead: Uint8Array[] = [];
  private readonly fresh: FreshBuffers | undefined;
  /** New buffers handed out: faulted in ahead, or where they were used. */
  readonly made = { ahead: 0, onUse: 0 };
  /** A buffer was given back since the last new one was made: the cache recycles, it does not grow. */
  private given = false;

  /** With `faultAhead`, new buffers are faulted in ahead on a thread (blocks of AHEAD_MIN_BLOCK and more). */
  constructor(
    readonly blockSize: number,
    faultAhead = false,
  ) {
    if (faultAhead && blockSize >= AHEAD_MIN_BLOCK) this.fresh = new FreshBuffers(blockSize, (b) => this.arrived(b));
  }

  /** A buffer for a block's bytes: a copy of `from`, else zeros; a spare one if there is one. */
  take(from: Uint8Array | null = null): Uint8Array {
    const spare = this.spare.pop();
    if (!spare) {
      const unused = this.unused();
      if (from) unused.set(from);
      return unused;
    }
    if (from) spare.set(from);
    else spare.fill(0);
    return spare;
  }

  /** A buffer whose bytes the caller overwrites in full (no need to clear a spare one). */
  takeToFill(): Uint8Array {
    return this.spare.pop() ?? this.unused();
  }

  /** A buffer no block has used yet (zeros): one faulted in ahead if there is one; more are asked for. */
  private unused(): Uint8Array {
    const ready = this.ahead.pop();
    if (ready) this.made.ahead++;
    else this.made.onUse++;
    if (this.fresh && !this.given) {
      // The stock follows the growth: after a write or two the pool holds one or two, not eight.
      const wanted = Math.min(KEPT_BLOCKS, this.made.ahead + this.made.onUse) - this.kept - this.fresh.pending;
      if (wanted > 0) this.fresh.ask(wanted);
    }
    this.given = false;
    return ready ?? new Uint8Array(this.blockSize);
  }

  private arrived(buffer: Uint8Array): void {
    if (this.kept < KEPT_BLOCKS) this.ahead.push(buffer);
  }

  /** Buffers the pool holds: spare, given back this turn, and faulted in ahead. */
  get kept(): number {
    return this.spare.length + this.released.length + this.ahead.length;
  }

  /** Stops the thread that faults buffers in ahead; new buffers are then faulted in where they are used. */
  close(): void {
    this.fresh?.close();
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
    if (!whole) return false;
    this.given = true;
    // One given back is kept over one faulted in ahead: it is as warm, and it is what recycling runs on.
    if (this.kept >= KEPT_BLOCKS && !this.ahead.pop()) return false;
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
    return [...this.spare, ...this.released, ...this.ahead].some((b) => b.buffer === buffer);
  }
}
