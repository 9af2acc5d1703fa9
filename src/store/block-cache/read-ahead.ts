/**
 * Read-ahead: while a reader goes through blocks in order, --readAhead fetches are kept in flight
 * ahead of it (each one that completes starts the next), never more than twice that many blocks
 * ahead, and never more than the cache has room for.
 */

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

  constructor(
    private readonly depth: number,
    /** Sequential reads that start it. */
    private readonly trigger: number,
    private readonly numBlocks: number,
    private readonly host: ReadAheadHost,
  ) {}

  /** A reader is at `block` now (its read may still be waiting): read-ahead looks past it. */
  noteRead(block: number): void {
    if (block === this.lastRead) return; // another piece of the same block
    this.sequentialRun = block === this.lastRead + 1 ? this.sequentialRun + 1 : 1;
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
