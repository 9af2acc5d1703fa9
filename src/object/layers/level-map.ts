/**
 * What is known of one level's blocks, one bit each: whether it holds data, or a zero marker (an
 * empty object that hides the levels below), or nothing. A read-only level learns it once, from
 * a listing; the live layer also from its own writes, which tell the state of every block they
 * touch. Until a level is listed every block's state is unknown (reads ask the server).
 *
 * A listing may predate a write that lands while it runs, so blocks written meanwhile keep what
 * their writes said; a block whose write is in flight or failed is unknown until a write succeeds.
 */
export type BlockState = "unknown" | "absent" | "data" | "marker";

export class LevelMap {
  private data: Uint8Array;
  private marker: Uint8Array;
  /** Blocks whose state the map cannot vouch for: a write in flight, or one that failed. */
  private unsure: Uint8Array;
  /** While a listing runs: blocks written since it began. */
  private touched: Uint8Array | undefined;
  listed = false;
  /** "not listed", "listing", "listed", or "listing failed: why". */
  progress = "not listed";
  found = 0;
  markers = 0;

  constructor(private numBlocks: number) {
    const bytes = Math.ceil(numBlocks / 8);
    this.data = new Uint8Array(bytes);
    this.marker = new Uint8Array(bytes);
    this.unsure = new Uint8Array(bytes);
  }

  /** A layer known to be empty: one made by a snapshot a moment ago. */
  static empty(numBlocks: number): LevelMap {
    const map = new LevelMap(numBlocks);
    map.listed = true;
    map.progress = "new, empty";
    return map;
  }

  state(block: number): BlockState {
    const i = block >>> 3;
    const bit = 1 << (block & 7);
    if (!this.listed || block >= this.numBlocks || this.unsure[i]! & bit) return "unknown";
    if (this.marker[i]! & bit) return "marker";
    return this.data[i]! & bit ? "data" : "absent";
  }

  /** A write of `block` begins: its state is unknown until it ends. */
  writing(block: number): void {
    const i = block >>> 3;
    const bit = 1 << (block & 7);
    this.unsure[i]! |= bit;
    if (this.touched) this.touched[i]! |= bit;
  }

  /** A write of `block` ended: it stored `now`. */
  wrote(block: number, now: "data" | "marker" | "absent"): void {
    const i = block >>> 3;
    const bit = 1 << (block & 7);
    this.unsure[i]! &= ~bit;
    this.data[i] = now === "data" ? this.data[i]! | bit : this.data[i]! & ~bit;
    this.marker[i] = now === "marker" ? this.marker[i]! | bit : this.marker[i]! & ~bit;
  }

  /**
   * Fills the map from a listing of the level (`list` calls back with each block and its size; an
   * empty object is a marker). Blocks written meanwhile keep what their writes said.
   */
  async load(list: (found: (block: number, size?: number) => void) => Promise<void>): Promise<void> {
    const bytes = this.data.length;
    const data = new Uint8Array(bytes);
    const marker = new Uint8Array(bytes);
    const touched = (this.touched = new Uint8Array(bytes));
    this.progress = "listing";
    this.found = 0;
    this.markers = 0;
    try {
      await list((block, size) => {
        if (block >= this.numBlocks) return;
        const bit = 1 << (block & 7);
        if (size === 0) {
          marker[block >>> 3]! |= bit;
          this.markers++;
        } else {
          data[block >>> 3]! |= bit;
          this.found++;
        }
      });
    } catch (err) {
      this.progress = `listing failed: ${(err as Error).message}`;
      throw err;
    } finally {
      this.touched = undefined;
    }
    for (let i = 0; i < bytes; i++) {
      const t = touched[i]!;
      this.data[i] = (this.data[i]! & t) | (data[i]! & ~t);
      this.marker[i] = (this.marker[i]! & t) | (marker[i]! & ~t);
    }
    this.listed = true;
    this.progress = "listed";
  }

  /** Blocks holding data and zero markers now (the listing's, and the writes' since). */
  counts(): { data: number; markers: number } {
    return { data: popcount(this.data), markers: popcount(this.marker) };
  }

  /** The disk grew: the new blocks are absent (a level never holds blocks past the disk's end). */
  grow(numBlocks: number): void {
    if (numBlocks <= this.numBlocks) return;
    const bytes = Math.ceil(numBlocks / 8);
    const widen = (a: Uint8Array) => {
      const b = new Uint8Array(bytes);
      b.set(a);
      return b;
    };
    this.data = widen(this.data);
    this.marker = widen(this.marker);
    this.unsure = widen(this.unsure);
    if (this.touched) this.touched = widen(this.touched);
    this.numBlocks = numBlocks;
  }
}

function popcount(bits: Uint8Array): number {
  let n = 0;
  for (const byte of bits) {
    let b = byte;
    for (; b; n++) b &= b - 1;
  }
  return n;
}
