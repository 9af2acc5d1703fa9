/**
 * Knows which blocks are zero (absent), so that reading them or writing zeros over them costs no
 * request. It learns from the reads and writes that pass through it, and with --listBlocks from a
 * listing of the bucket that runs while the disk is in use: when it ends, every block it did not
 * find is known zero, and every block it found is known not to be, except the blocks written
 * since it began, whose state the writes told.
 *
 * A read learns "zero" only from an answer no write overtook: one that began before a write ended
 * may be from before it. Writes are tracked per slot (block modulo SLOTS): a write to another block
 * of the same slot only costs a lesson, never a wrong one.
 */
import type { BlockStore } from "../block-store.ts";
import type { StatGroup } from "../../util/stat-group.ts";
import { isAllZero, zeroBlock } from "../block-store.ts";
import { Counters } from "../../util/counters.ts";
import { Layer } from "../layer.ts";

const SLOTS = 4096;

export class ZeroBlockCache extends Layer {
  /** One bit per block: set = known to be zero. */
  private readonly zeroBits: Uint8Array;
  private readonly zero: Uint8Array;
  private readonly counters = new Counters(["zero reads avoided", "zero writes avoided"] as const);
  /** Per slot: writes begun plus writes ended, and writes in flight. */
  private readonly changes = new Uint32Array(SLOTS);
  private readonly writing = new Uint32Array(SLOTS);
  /** While a listing runs: one bit per block written since it began (the listing may predate the write). */
  private touched: Uint8Array | undefined;
  private listing: { found: number; state: string } | undefined;

  constructor(inner: BlockStore) {
    super(inner);
    this.zeroBits = new Uint8Array(Math.ceil(inner.numBlocks / 8));
    this.zero = zeroBlock(inner.blockSize);
  }

  /**
   * Lists the blocks that exist, alongside reads and writes; once done, every block not found and
   * not written meanwhile is known zero. Returns how many exist. Its progress is in the stats.
   */
  async loadListing(): Promise<number> {
    const existing = new Uint8Array(this.zeroBits.length);
    const touched = (this.touched = new Uint8Array(this.zeroBits.length));
    const listing = (this.listing = { found: 0, state: "running" });
    const started = performance.now();
    try {
      await this.inner.listBlocks((b) => {
        existing[b >>> 3]! |= 1 << (b & 7);
        listing.found++;
      });
    } catch (err) {
      listing.state = "failed";
      throw err;
    } finally {
      this.touched = undefined;
    }
    for (let i = 0; i < this.zeroBits.length; i++) {
      // Untouched bits take the listing's word; touched ones keep what their writes set.
      this.zeroBits[i] = (this.zeroBits[i]! & touched[i]!) | (~existing[i]! & ~touched[i]! & 0xff);
    }
    // Bits past the last block stay clear.
    for (let b = this.numBlocks; b < this.zeroBits.length * 8; b++) this.zeroBits[b >>> 3]! &= ~(1 << (b & 7));
    listing.state = `done in ${((performance.now() - started) / 1000).toFixed(1)} s`;
    return listing.found;
  }

  /** True when the block is known to be absent (it reads as zeros); false when it may hold data. */
  isZero(block: number): boolean {
    return (this.zeroBits[block >>> 3]! & (1 << (block & 7))) !== 0;
  }

  private mark(block: number, zero: boolean): void {
    if (zero) this.zeroBits[block >>> 3]! |= 1 << (block & 7);
    else this.zeroBits[block >>> 3]! &= ~(1 << (block & 7));
  }

  async readBlock(block: number): Promise<Uint8Array> {
    if (this.isZero(block)) {
      this.counters.add("zero reads avoided");
      return this.zero;
    }
    const slot = block % SLOTS;
    const seen = this.changes[slot];
    const data = await this.inner.readBlock(block);
    // Stored blocks are never all zeros, so an all-zero answer means the block is absent.
    if (this.changes[slot] === seen && this.writing[slot] === 0 && isAllZero(data)) this.mark(block, true);
    return data;
  }

  async writeBlock(block: number, data: Uint8Array | null, md5?: string): Promise<void> {
    if (!data && this.isZero(block)) {
      this.counters.add("zero writes avoided");
      return;
    }
    await this.tracked(block, () => this.inner.writeBlock(block, data, md5));
    this.mark(block, data === null);
  }

  /** Runs a write of `block`: until it is done the block is in between, not known zero. */
  private async tracked(block: number, write: () => Promise<void>): Promise<void> {
    const slot = block % SLOTS;
    this.mark(block, false);
    if (this.touched) this.touched[block >>> 3]! |= 1 << (block & 7);
    this.changes[slot]!++;
    this.writing[slot]!++;
    try {
      await write();
    } finally {
      this.changes[slot]!++;
      this.writing[slot]!--;
    }
  }

  override async writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    if (this.isZero(block)) {
      if (isAllZero(data)) {
        this.counters.add("zero writes avoided");
        return;
      }
      // The old block is zeros: no need to read it.
      const whole = new Uint8Array(this.blockSize);
      whole.set(data, offset);
      return this.writeBlock(block, whole);
    }
    return this.tracked(block, () => this.inner.writeBlockPart(block, offset, data));
  }

  protected ownStats(): StatGroup {
    let known = 0;
    for (const byte of this.zeroBits) {
      let b = byte;
      for (; b; known++) b &= b - 1;
    }
    const listing = this.listing ? ([["listing", this.listing.state], ["blocks listed", this.listing.found]] as const) : [];
    return { layer: "zero-block cache", values: [...this.counters.entries(), ["blocks known zero", known], ...listing] };
  }
}
