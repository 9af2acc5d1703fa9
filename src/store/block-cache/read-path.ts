/**
 * The block cache's reads: hits at once, misses that wait, and read-ahead's fetches.
 *
 * A miss waits for the store below, the cache file, a check or room; read-ahead.ts decides
 * which blocks to fetch ahead.
 *
 * A reader gets the cached bytes themselves, valid for its turn of the event loop (see
 * block-store.ts). A hit is answered without an async function: at tens of thousands of requests
 * a second, the garbage of one per call is what the collector spends its time on.
 */
import { isAllZero, zeroBlock, type BlockStore } from "../block-store.ts";
import { type CacheCounters, type Entries, type Entry, IN_FILE } from "./entries.ts";
import type { Room } from "./lending.ts";
import { ReadAhead, type ReadAheadHost } from "./read-ahead.ts";
import type { ReloadCheck } from "./reload-check.ts";
import type { Residency } from "./residency.ts";

/** What the reads need of the rest of the cache. */
export interface ReadHost {
  readonly inner: BlockStore;
  readonly o: { readonly size: number; readonly readAhead: number; readonly readAheadTrigger: number };
  readonly counters: CacheCounters;
  readonly entries: Entries;
  readonly residency: Residency;
  readonly room: Room;
  readonly writeBack: { roomFreed(): Promise<void> };
  readonly check: ReloadCheck | undefined;
}

export class ReadPath implements ReadAheadHost {
  /** Taken at construction, since every hit uses them; the other parts are reached through the host. */
  private readonly entries: Entries;
  private readonly counters: CacheCounters;
  private readonly check: ReloadCheck | undefined;
  private readonly zero: Uint8Array;
  private readonly ahead: ReadAhead;

  constructor(private readonly host: ReadHost) {
    this.entries = host.entries;
    this.counters = host.counters;
    this.check = host.check;
    this.zero = zeroBlock(host.inner.blockSize);
    this.ahead = new ReadAhead(host.o.readAhead, host.o.readAheadTrigger, host.inner.numBlocks, this);
  }

  /** Fetches kept in flight ahead of a sequential reader now. */
  get aheadDepth(): number {
    return this.ahead.currentDepth;
  }

  /**
   * Whether a cached block reads as zeros: true or false when the cache holds it (its bytes are
   * what reads return), undefined when it does not (the layers below know).
   */
  cachedZero(block: number): boolean | undefined {
    const entry = this.entries.map.get(block);
    if (!entry || entry.state === "loading" || this.check?.has(block)) return undefined;
    return entry.data === null;
  }

  /**
   * The bytes of a cached block that has them to read now (counted and touched), or undefined. They
   * are taken before read-ahead looks past the block: making room, it may page this one out too.
   */
  hit(block: number): Uint8Array | undefined {
    const entry = this.entries.map.get(block);
    if (!entry || entry.state === "loading" || entry.data === IN_FILE || this.check?.has(block)) return undefined;
    this.counters.add("read hits");
    const bytes = this.bytesOf(entry);
    // `used`, written out: on the hottest path every level of calls counts.
    if (entry.aheadUnread) this.aheadHit(entry);
    this.entries.touch(entry);
    this.ahead.noteRead(block);
    return bytes;
  }

  /** A read that must wait: for the block's bytes from below or from the cache file, its check, or room. */
  async miss(block: number): Promise<Uint8Array> {
    const { entries, check } = this;
    const residency = this.host.residency;
    let counted = false;
    for (;;) {
      // The reader is at this block from now on: read-ahead looks past it while it waits. (Its
      // fetches may evict, so the entry is looked up after.)
      this.ahead.noteRead(block);
      let entry = entries.map.get(block);
      const miss = !entry;
      if (!entry) {
        if (!residency.memoryRoom(1)) {
          await this.host.writeBack.roomFreed();
          continue;
        }
        entry = this.load(block, false);
      }
      if (!counted) this.counters.add(miss ? "read misses" : "read hits");
      counted = true;
      if (entry.loading) await entry.loading;
      else if (check?.has(block)) await check.check(block);
      else if (entry.data === IN_FILE) {
        // Pinned until this reader has them: else waiters for memory could take turns paging out each other's blocks.
        entry.pins++;
        try {
          const bytes = await residency.pageIn(entry);
          // Evicted since the bytes came in (its buffer may hold another block by now): look again.
          if (bytes && this.entries.map.get(block) === entry) {
            this.used(entry); // read now, even if read-ahead had asked for it first
            return bytes;
          }
        } finally {
          entry.pins--;
          this.host.room.released();
        }
      } else {
        this.used(entry);
        return this.bytesOf(entry);
      }
    }
  }

  /** A reader has the entry's bytes (read-ahead looked past the block already). */
  private used(entry: Entry): void {
    if (entry.aheadUnread) this.aheadHit(entry);
    this.entries.touch(entry);
  }

  private aheadHit(entry: Entry): void {
    this.counters.add("read-ahead hits");
    entry.aheadUnread = false;
  }

  /** The bytes of an entry that has them in memory, for a reader. */
  private bytesOf(entry: Entry): Uint8Array {
    if (entry.data === IN_FILE) throw new Error(`block cache: block ${entry.block} read while in the cache file only`);
    return entry.data ?? this.zero;
  }

  /** Starts fetching a block into a new entry (`entry.loading` settles when it is there). */
  load(block: number, ahead: boolean): Entry {
    const { residency, inner, room } = this.host;
    const entries = this.entries;
    entries.evict(1);
    const entry = entries.create(block, "loading", ahead);
    residency.fetchStarted();
    // Writes wait for a loading entry, so what arrives is the newest there is.
    entry.loading = inner.readBlock(block).then(
      (data) => {
        residency.fetchEnded();
        entry.loading = undefined;
        entry.state = "clean";
        residency.setBytes(entry, isAllZero(data) ? null : data);
        if (entry.data === null) room.released();
        // Bytes nobody else holds can take writes in place: no copy of a whole block for a small write.
        entry.owned = entry.data !== null && inner.freshReads;
        residency.changed(entry);
      },
      (err) => {
        residency.fetchEnded();
        entry.loading = undefined;
        entries.drop(entry);
        room.wake();
        throw err;
      },
    );
    return entry;
  }

  // ---- read-ahead's host ----

  /** The cache holds the block (or is fetching it). */
  has(block: number): boolean {
    const entry = this.entries.map.get(block);
    return entry !== undefined && (entry.data !== IN_FILE || entry.paging !== undefined);
  }

  /**
   * Memory stays full once it has filled: room is what paging out saved blocks frees, but never
   * blocks read ahead and not read yet, nor room someone waits for. (Fetches in flight are counted
   * there already, as bytes arriving.)
   */
  hasRoom(inFlight: number): boolean {
    const { o, room, residency } = this.host;
    return this.entries.dirty.size + inFlight < o.size && !room.waiting && residency.memoryRoom(1, false);
  }

  fetch(block: number): Promise<void> {
    this.counters.add("read-ahead fetches");
    const entry = this.entries.map.get(block);
    // Nobody awaits a read-ahead: a failed one is left to the reader, who tries again.
    const fetched = entry ? this.host.residency.pageIn(entry).then((bytes) => void (bytes && (entry.aheadUnread = true))) : this.load(block, true).loading!;
    return fetched.catch(() => {});
  }
}
