/**
 * The block cache's writes: landing at once, or once there is room and the old bytes are at hand.
 *
 * A write lands in the cache and returns (write-back stores it later), or, with
 * --blockCacheSync, once stored. Writers wait for room for one more dirty block, for the old
 * bytes a partial write needs, or for room in memory.
 *
 * Like a read hit, a write that can land at once does so without an async function; it returns
 * DONE. A write changes the cached bytes in place unless they are lent or someone else's (see
 * lending.ts); then it copies them first.
 */
import { DONE, isAllZero } from "../block-store.ts";
import { type CacheCounters, type Entries, type Entry, IN_FILE } from "./entries.ts";
import type { Lending, Room } from "./lending.ts";
import type { ReloadCheck } from "./reload-check.ts";
import type { Residency } from "./residency.ts";

/** What the writes need of the rest of the cache. */
export interface WriteHost {
  readonly o: { readonly sync: boolean; readonly maxDirty: number };
  readonly counters: CacheCounters;
  readonly entries: Entries;
  readonly residency: Residency;
  readonly lending: Lending;
  readonly room: Room;
  readonly check: ReloadCheck | undefined;
  readonly writeBack: {
    queue(entry: Entry): void;
    rewritten(entry: Entry): void;
    hurry(entry: Entry): void;
    storedAt(entry: Entry, version: number): Promise<void>;
    roomFreed(): Promise<void>;
  };
  readonly reads: { load(block: number, ahead: boolean): Entry };
}

export class WritePath {
  /** Taken at construction, since every write uses them; the other parts are reached through the host. */
  private readonly o: WriteHost["o"];
  private readonly counters: CacheCounters;
  private readonly entries: Entries;
  private readonly residency: Residency;
  private readonly lending: Lending;
  private readonly check: ReloadCheck | undefined;
  private readonly writeBack: WriteHost["writeBack"];

  constructor(private readonly host: WriteHost) {
    this.o = host.o;
    this.counters = host.counters;
    this.entries = host.entries;
    this.residency = host.residency;
    this.lending = host.lending;
    this.check = host.check;
    this.writeBack = host.writeBack;
  }

  whole(block: number, data: Uint8Array | null): Promise<void> {
    const entry = this.writableNow(block, false);
    if (entry) return this.putWhole(entry, data);
    return this.writeWhenReady(block, false, (e) => this.putWhole(e, data));
  }

  part(block: number, offset: number, data: Uint8Array): Promise<void> {
    const entry = this.writableNow(block, true);
    if (entry) return this.putPart(entry, offset, data);
    return this.writeWhenReady(block, true, (e) => this.putPart(e, offset, data));
  }

  /** Writes part of a block if that can be done at once; false if the caller must use `part`. */
  partNow(block: number, offset: number, data: Uint8Array): boolean {
    if (this.o.sync) return false; // a synchronous write waits for the store below
    const entry = this.writableNow(block, true);
    if (entry) void this.putPart(entry, offset, data); // DONE: the write landed
    return entry !== undefined;
  }

  private putWhole(entry: Entry, data: Uint8Array | null): Promise<void> {
    const { lending, residency } = this;
    const old = entry.data;
    const inPlace = data !== null && lending.changeable(entry);
    if (old instanceof Uint8Array && !inPlace) lending.dropped(old);
    if (!data) residency.setBytes(entry, null);
    else if (inPlace) (old as Uint8Array).set(data);
    else residency.setBytes(entry, lending.buffers.take(data));
    entry.owned = data !== null;
    return this.dirtied(entry);
  }

  private putPart(entry: Entry, offset: number, data: Uint8Array): Promise<void> {
    const { lending, residency } = this;
    if (!lending.changeable(entry)) {
      const old = entry.data;
      if (old === IN_FILE) throw new Error(`block cache: partial write of block ${entry.block} while in the cache file only`);
      residency.setBytes(entry, lending.buffers.take(old));
      if (old) lending.dropped(old);
      entry.owned = true;
    }
    const bytes = entry.data as Uint8Array;
    bytes.set(data, offset);
    if (isAllZero(data) && isAllZero(bytes)) residency.setBytes(entry, null);
    return this.dirtied(entry);
  }

  /**
   * The entry a write can go to right now (no wait for room, the old bytes or their check), or
   * undefined. The caller writes to it before anything else runs.
   */
  private writableNow(block: number, needOld: boolean): Entry | undefined {
    const { entries, check } = this;
    const entry = entries.map.get(block);
    if (entry ? entry.state === "loading" : needOld) return undefined;
    if (entry && needOld && (entry.data === IN_FILE || check?.has(block))) return undefined;
    if ((!entry || entry.state === "clean") && entries.dirty.size >= this.o.maxDirty) return undefined;
    // Room in memory before the entry is looked at again: making it never drops a block that is not in memory.
    if (!(entry?.data instanceof Uint8Array) && !this.residency.memoryRoom(1)) return undefined;
    if (entry) {
      if (!needOld) check?.skip(block); // written whole: what storage held no longer matters
      entries.touch(entry);
      return entry;
    }
    // Room first: the new entry must not be what the eviction picks.
    entries.evict(1);
    return entries.create(block, "dirty", false);
  }

  /**
   * Writes once there is room for one more dirty block: `put` runs in the same step as the last
   * check, so nothing can evict or replace the entry in between. A partial write needs the old
   * bytes: from the cache (or its file), else read below (free for a block the zero cache knows).
   */
  private async writeWhenReady(block: number, needOld: boolean, put: (entry: Entry) => Promise<void>): Promise<void> {
    const { entries, residency, check, counters, writeBack } = this;
    const room = this.host.room;
    for (;;) {
      const ready = this.writableNow(block, needOld);
      if (ready) return put(ready);
      const entry = entries.map.get(block);
      if (entry?.state === "loading") {
        // A failed read (even a read-ahead) only matters if this write needs the old bytes.
        await entry.loading!.catch((err) => (needOld ? Promise.reject(err) : undefined));
      } else if ((!entry || entry.state === "clean") && entries.dirty.size >= this.o.maxDirty) {
        counters.add("writer waits");
        await writeBack.roomFreed();
      } else if (entry && needOld && check?.has(block)) {
        await check.check(block);
      } else if (entry && needOld && entry.data === IN_FILE) {
        entry.pins++; // until written to (see ReadPath.miss)
        try {
          await residency.pageIn(entry);
          const now = this.writableNow(block, needOld);
          if (now) return put(now);
        } finally {
          entry.pins--;
          room.released();
        }
      } else if (!entry && needOld && residency.memoryRoom(1)) {
        await this.host.reads.load(block, false).loading;
      } else {
        counters.add("writer waits");
        await writeBack.roomFreed(); // for memory
      }
    }
  }

  /** The entry was written: it is dirty (again), and its residency keeps the new bytes. */
  private dirtied(entry: Entry): Promise<void> {
    const { counters, entries, writeBack } = this;
    counters.add("writes");
    entry.version++;
    entry.aheadUnread = false;
    this.residency.changed(entry);
    if (entries.dirty.has(entry)) {
      counters.add("coalesced writes");
      writeBack.rewritten(entry);
      if (entry.state === "uploading") entry.state = "redirtied";
    } else {
      entry.state = "dirty"; // was clean, or is new
      entries.dirty.add(entry);
      writeBack.queue(entry);
    }
    if (!this.o.sync) return DONE;
    writeBack.hurry(entry);
    return writeBack.storedAt(entry, entry.version);
  }
}
