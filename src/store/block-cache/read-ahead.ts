/**
 * Read-ahead: which blocks to fetch ahead of a sequential reader, and how far.
 *
 * While a reader goes through blocks in order, --readAhead fetches are kept in flight ahead of it
 * (each one that completes starts the next), never more than twice that many blocks ahead, and
 * never more than the cache has room for.
 *
 * The depth adapts to the store's latency: a reader that reaches a block read-ahead is still
 * fetching had to wait for it, so the fetches were not far enough ahead; each such wait keeps one
 * more in flight, up to MAX_GROWTH times --readAhead. A jump starts over at --readAhead.
 *
 * A reader with several requests in flight (the kernel's own read-ahead, a loop device) reaches us
 * a little out of order: once read-ahead runs, a block up to REORDER behind the last one is a late
 * request of the same stream, and one up to REORDER past the next an early one, not jumps.
 */

/** How far the depth may grow, as a multiple of --readAhead. */
const MAX_GROWTH = 4;
/** How many blocks out of order the reads of one stream may arrive (see the top of this file). */
const REORDER = 2;

/** What read-ahead needs of the cache. */
export interface ReadAheadHost {
  /** The cache holds the block (or is fetching it): nothing to do. */
  has(block: number): boolean;
  /** The cache has (or makes) room for one more block besides `inFlight` fetches. */
  hasRoom(inFlight: number): boolean;
  /** Fetches a block into the cache; settles (never rejects) when done. */
  fetch(block: number): Promise<void>;
}

export class ReadAhead {
  private lastRead = -2;
  private sequentialRun = 0;
  /** The next block to fetch, and the blocks being fetched. */
  private next = 0;
  private readonly loading = new Set<number>();
  /** Fetches kept in flight now (see the top of this file). */
  private depth: number;

  constructor(
    /** --readAhead. */
    private readonly configured: number,
    /** Sequential reads that start it. */
    private readonly trigger: number,
    private readonly numBlocks: number,
    private readonly host: ReadAheadHost,
  ) {
    this.depth = configured;
  }

  /** Fetches kept in flight ahead of a sequential reader now. */
  get currentDepth(): number {
    return this.depth;
  }

  /** A reader is at `block` now (its read may still be waiting): read-ahead looks past it. */
  noteRead(block: number): void {
    if (block === this.lastRead) return; // another piece of the same block
    const running = this.sequentialRun >= this.trigger;
    if (running && block < this.lastRead && block >= this.lastRead - REORDER) return; // a late request of this stream
    const sequential = block === this.lastRead + 1 || (running && block > this.lastRead && block <= this.lastRead + 1 + REORDER);
    this.sequentialRun = sequential ? this.sequentialRun + 1 : 1;
    if (!sequential) this.depth = this.configured;
    else if (this.loading.has(block)) this.depth = Math.min(this.depth + 1, MAX_GROWTH * this.configured);
    this.lastRead = block;
    if (this.sequentialRun === 1) this.next = block + 1;
    this.topUp();
  }

  private topUp(): void {
    if (this.depth <= 0 || this.sequentialRun < this.trigger) return;
    this.next = Math.max(this.next, this.lastRead + 1);
    const limit = Math.min(this.numBlocks, this.lastRead + 1 + 2 * this.depth);
    // Only fetches past the reader count: the one it waits for is its own read now.
    let ahead = 0;
    for (const block of this.loading) if (block > this.lastRead) ahead++;
    while (ahead < this.depth && this.next < limit) {
      const block = this.next;
      if (this.host.has(block)) {
        this.next++;
        continue;
      }
      if (!this.host.hasRoom(this.loading.size)) break; // asked only for a block to fetch: it may make room
      this.next++;
      this.loading.add(block);
      ahead++;
      void this.host.fetch(block).then(() => {
        this.loading.delete(block);
        this.topUp();
      });
    }
  }
}
