/**
 * The block cache's entries, the grid of their states and its one check; LRU order and eviction.
 *
 * One entry per cached block, in LRU order. Each entry is in one row of the grid (`state`); the
 * columns are the rest of its state, and say what each piece may be in each row. Only the moves
 * listed under the grid happen. `checkInvariants` checks every column; the tests run it after
 * every step.
 *
 * | state     | bytes (`data`)       | version    | dirty set | write-back   | slot in the cache file     | lent, saving, pins | verification        |
 * |-----------|----------------------|------------|-----------|--------------|----------------------------|--------------------|---------------------|
 * | loading   | none yet             | 0 = stored | no        | none         | none                       | none               | none                |
 * | clean     | memory, zero or file | = stored   | no        | none         | none, or `version`         | any                | pending if reloaded |
 * | dirty     | memory, zero or file | > stored   | yes       | in one queue | none, or stored..`version` | any                | none                |
 * | uploading | memory, zero or file | > stored   | yes       | in flight    | none, or stored..`version` | any                | none                |
 * | redirtied | memory or zero       | > stored   | yes       | in flight    | none, or stored..`version` | any                | none                |
 *
 * - Bytes: "memory" is a buffer the residency (residency.ts) counts as held in memory; no two
 *   entries share one, and none is a spare buffer of the pool. With a cache file, the bytes held
 *   in memory and those on their way there never pass --blockCacheMemory. "Zero" (`null`) takes
 *   no memory. "File" (IN_FILE): the slot holds the current version, and the bytes are neither
 *   being saved nor waiting to be; only clean and dirty bytes move there, and an upload reads
 *   them back.
 * - Version: bumped by every write; `stored` is the version the store below has.
 * - Write-back: a dirty block waits in exactly one of the queues (write-back-queue.ts); uploads in
 *   flight are at most --blockCacheThreads (deletes, ZERO_WRITES_IN_FLIGHT).
 * - Slot: the entry's own, and taken in the file (none without a file). It holds a version from
 *   the stored one to the current one, never older: after a crash, an older one would be written
 *   back over newer data.
 * - Lent: buffers an upload, a save or an MD5 reads now, not to be changed or reused: at most one
 *   per upload and per piece of file work in flight. An entry being saved lends its bytes. Pins:
 *   readers and writers waiting for bytes read back from the file keep them in memory (never < 0).
 * - Verification: a clean block reloaded from the cache file is checked against storage before
 *   its bytes are used (reload-check.ts); until then it is unwritten (version 0) and has its slot.
 * - Every entry in the dirty set, the write-back queues or waiting to be saved is in the map.
 *
 * Moves:
 * - (none) -> loading -> clean, or (none) on a failed read; (none) -> dirty by a write that needs
 *   no old bytes, made room for before the entry exists, so it can never be the one evicted.
 * - clean -> dirty, dirty -> uploading, uploading -> redirtied by writes; write-back ends
 *   uploading -> clean, or -> dirty (redirtied, or failed: queued for a retry).
 * - clean -> (none) by eviction; dirty -> (none) when its only copy, in the cache file, is
 *   unreadable (abandoned). Nothing else leaves the map, so one block never has two entries.
 */
import { Counters } from "../../util/counters.ts";
import { ZERO_WRITES_IN_FLIGHT } from "../block-store.ts";

export type State = "loading" | "clean" | "dirty" | "uploading" | "redirtied";

/** The bytes are in the cache file's slot alone (a symbol, so that no use can mistake it for bytes). */
export const IN_FILE: unique symbol = Symbol("in the cache file");

/** One cached block: its row of the grid, its fields grouped by column. */
export interface Entry {
  block: number;
  state: State;
  /** Settles when a loading entry's read is done. */
  loading: Promise<void> | undefined;
  // bytes
  /** null: the zero block. */
  data: Uint8Array | null | typeof IN_FILE;
  /** `data` came from nobody else (our copy, or a fresh read): we may change it unless it is lent. */
  owned: boolean;
  // version
  version: number;
  stored: number;
  /** The MD5 hex of the `stored` version's bytes, when its write-back took it (see write-back.ts). */
  storedMd5: string | undefined;
  // write-back: when it became dirty and was last written, and its retry time (see write-back-queue.ts)
  dirtySince: number;
  lastWrite: number;
  retryAt: number;
  failures: number;
  // slot: the cache file's slot whose record names this block, which version it holds, and its CRC
  slot: number | undefined;
  slotVersion: number;
  slotCrc: number;
  // lent, saving, pins
  /** Buffers of this block an upload or a save reads now: not to be changed or reused. */
  lent: Uint8Array[];
  /** A save to the cache file is in flight. */
  saving: boolean;
  /** Callers waiting to use the bytes being read back: they stay in memory until then (see read-path.ts). */
  pins: number;
  /** Settles when the bytes are read back from the cache file. */
  paging: Promise<Uint8Array | undefined> | undefined;
  // use
  lastUsed: number;
  /** Fetched by read-ahead and not read yet. */
  aheadUnread: boolean;
}

const COUNTED = [
  "read hits", "read misses", "read-ahead fetches", "read-ahead hits", "writes", "coalesced writes",
  "write-backs", "write-back bytes", "write-back errors", "evictions", "writer waits",
  "cache file reads", "cache file writes", "cache file errors",
] as const;

export type CacheCounters = Counters<(typeof COUNTED)[number]>;

export function cacheCounters(): CacheCounters {
  return new Counters(COUNTED);
}

/** What the grid asks of a residency (residency.ts): its column of bytes and slots. */
export interface ResidencyColumns {
  /** Whether the entry's bytes are counted as held in memory. */
  inMemory(entry: Entry): boolean;
  /** How many entries are counted in memory (undefined: not counted apart from the entries). */
  readonly memoryCounted: number | undefined;
  /** Blocks in memory and on their way there, and the most there may be. */
  readonly memoryHeld: number;
  readonly memoryLimit: number;
  /** Whether a slot of the cache file is free (undefined: there is no file). */
  slotFree(slot: number): boolean | undefined;
  /** Entries waiting to be saved to the cache file. */
  readonly unsaved: Iterable<Entry>;
  /** Saves and MD5s for the cache file in flight (each lends a buffer). */
  readonly fileWork: number;
}

/** What the entries need of the rest of the cache, and what the check reads of it. */
export interface EntriesHost {
  readonly o: { size: number; numProtected: number; timeoutMs: number; threads: number };
  readonly counters: CacheCounters;
  readonly lending: { letGo(data: Uint8Array, reuse: boolean): void; spare(buffer: ArrayBufferLike): boolean };
  readonly residency: ResidencyColumns & {
    /** Each write-back in flight takes a block's room in the cache. */
    readonly uploadsTakeRoom: boolean;
    touched(entry: Entry): void;
    forgotten(entry: Entry): void;
  };
  readonly writeBack: {
    readonly uploads: number;
    readonly deletes: number;
    queuesHolding(entry: Entry): number;
    queued(): Iterable<Entry>;
  };
  readonly check: { skip(block: number): void; unchecked(): Iterable<number> } | undefined;
}

export class Entries {
  /** In LRU order: the first entry is the least recently used. */
  readonly map = new Map<number, Entry>();
  /** Entries dirty, uploading or redirtied: what --blockCacheMaxDirty counts. */
  readonly dirty = new Set<Entry>();

  /** Taken at construction, since every hit and write touches an entry. */
  private readonly residency: EntriesHost["residency"];

  constructor(private readonly host: EntriesHost) {
    this.residency = host.residency;
  }

  /** Whether the entry is still its block's (not evicted or abandoned meanwhile). */
  holds(entry: Entry): boolean {
    return this.map.get(entry.block) === entry;
  }

  /** A new entry, most recently used; its bytes are zeros until loaded or written. */
  create(block: number, state: State, ahead: boolean): Entry {
    const entry: Entry = {
      block, state, loading: undefined, data: null, owned: false, version: 0, stored: 0, storedMd5: undefined, dirtySince: 0,
      lastWrite: 0, retryAt: 0, failures: 0, slot: undefined, slotVersion: 0, slotCrc: 0, lent: [], saving: false, pins: 0,
      paging: undefined, lastUsed: performance.now(), aheadUnread: ahead,
    };
    this.map.set(block, entry);
    return entry;
  }

  touch(entry: Entry): void {
    entry.lastUsed = performance.now();
    this.map.delete(entry.block);
    this.map.set(entry.block, entry);
    this.residency.touched(entry);
  }

  /**
   * Drops least recently used clean blocks until the cache fits, the protected ones (below
   * --blockCacheNumProtected) only once no other is left. Dirty blocks are never dropped. In
   * memory alone, each upload in flight takes a block's room: the HTTP client holds its own copy
   * of the bytes. The evicted buffers are spare for the next blocks' bytes.
   */
  evict(newEntries = 0): void {
    const { o, residency, writeBack } = this.host;
    const room = o.size - (residency.uploadsTakeRoom ? writeBack.uploads : 0) - newEntries;
    if (this.map.size <= room) return;
    for (const protectedToo of [false, true]) {
      for (const entry of this.map.values()) {
        if (this.map.size <= room) return;
        if (entry.state === "clean" && (protectedToo || entry.block >= o.numProtected)) this.forget(entry, true);
      }
    }
  }

  /** Drops clean blocks unused for --blockCacheTimeout. */
  dropIdle(): void {
    const limit = performance.now() - this.host.o.timeoutMs;
    for (const entry of this.map.values()) {
      if (entry.lastUsed >= limit) break; // LRU order: the rest are newer
      if (entry.state === "clean") this.forget(entry);
    }
  }

  /** Drops a clean block; `reuse`: its buffer is spare for the next block's bytes if nothing else holds it. */
  forget(entry: Entry, reuse = false): void {
    if (entry.state !== "clean") throw new Error(`block cache: evicting block ${entry.block} in state ${entry.state}`);
    this.map.delete(entry.block);
    this.host.residency.forgotten(entry);
    this.host.check?.skip(entry.block);
    const data = entry.data;
    if (data instanceof Uint8Array) this.host.lending.letGo(data, entry.owned && reuse && entry.lent.length === 0);
    this.host.counters.add("evictions");
  }

  /** Takes out an entry that is not evicted: a failed read's, or a dirty block's that is abandoned. */
  drop(entry: Entry): void {
    if (this.holds(entry)) this.map.delete(entry.block);
    this.dirty.delete(entry);
  }

  /** Drops a block that failed its check against storage. */
  discard(block: number): void {
    const entry = this.map.get(block);
    if (entry?.state === "clean") this.forget(entry);
  }

  /** Throws if the grid at the top of this file does not hold (for tests: it walks every entry). */
  checkInvariants(): void {
    const { o, lending, residency, writeBack, check } = this.host;
    const fail = (what: string) => {
      throw new Error(`block cache invariant: ${what}`);
    };
    const buffers = new Map<ArrayBufferLike, Set<number>>();
    const slots = new Set<number>();
    let uploading = 0;
    let inMemory = 0;
    let lent = 0;
    let saving = 0;
    for (const [block, e] of this.map) {
      // state, versions, dirty set, queues
      if (e.block !== block) fail(`entry of block ${e.block} filed under ${block}`);
      if ((e.state === "loading") !== (e.loading !== undefined)) fail(`block ${block} ${e.state} with loading=${e.loading !== undefined}`);
      const dirtyRow = e.state === "dirty" || e.state === "uploading" || e.state === "redirtied";
      if (dirtyRow ? e.version <= e.stored : e.version !== e.stored) fail(`block ${block} ${e.state} at version ${e.version}, stored ${e.stored}`);
      if (dirtyRow !== this.dirty.has(e)) fail(`block ${block} ${e.state} but ${this.dirty.has(e) ? "" : "not "}counted dirty`);
      const inQueues = writeBack.queuesHolding(e);
      if (inQueues < 0) fail(`block ${block} in only one of the waiting queues`);
      if (e.state === "dirty" ? inQueues !== 1 : inQueues !== 0) fail(`block ${block} ${e.state} in ${inQueues} write-back queues`);
      if (e.state === "uploading" || e.state === "redirtied") uploading++;
      if (e.state === "loading" && (e.version !== 0 || e.data !== null || e.slot !== undefined || e.lent.length > 0 || e.saving || e.pins !== 0 || e.paging)) {
        fail(`block ${block} loading at version ${e.version}, with bytes, a slot, lent buffers, a save, pins or a read from the file`);
      }
      // bytes
      if ((e.data instanceof Uint8Array) !== residency.inMemory(e)) fail(`block ${block} ${residency.inMemory(e) ? "" : "not "}counted in memory`);
      if (e.data instanceof Uint8Array) {
        inMemory++;
        const offsets = buffers.get(e.data.buffer) ?? new Set<number>();
        if (offsets.has(e.data.byteOffset)) fail(`block ${block} shares its bytes with another block`);
        offsets.add(e.data.byteOffset);
        buffers.set(e.data.buffer, offsets);
      } else if (e.data === IN_FILE) {
        if (e.slot === undefined || e.slotVersion !== e.version) fail(`block ${block} at version ${e.version} only in the file, whose slot holds ${e.slotVersion}`);
        if (e.state !== "clean" && e.state !== "dirty" && e.state !== "uploading") fail(`block ${block} ${e.state} with its bytes in the file alone`);
        if (e.saving) fail(`block ${block} being saved with its bytes in the file alone`);
      }
      // slot
      if (e.slot !== undefined) {
        const free = residency.slotFree(e.slot);
        if (free !== false) fail(`block ${block} has slot ${e.slot}, ${free ? "free in the cache file" : "with no cache file"}`);
        if (slots.has(e.slot)) fail(`block ${block}'s slot ${e.slot} is another block's too`);
        slots.add(e.slot);
        if (e.slotVersion < e.stored) fail(`block ${block}'s slot holds version ${e.slotVersion}, older than the stored ${e.stored}: a crash would bring it back`);
        if (e.slotVersion > e.version) fail(`block ${block}'s slot holds version ${e.slotVersion}, newer than its ${e.version}`);
      }
      // lent, saving, pins
      lent += e.lent.length;
      for (const b of e.lent) if (lending.spare(b.buffer)) fail(`a buffer block ${block} lent is a spare one`);
      if (e.saving) {
        saving++;
        if (e.lent.length === 0) fail(`block ${block} being saved lends no bytes`);
      }
      if (e.pins < 0) fail(`block ${block} has ${e.pins} pins`);
    }
    // verification
    for (const block of check?.unchecked() ?? []) {
      const e = this.map.get(block);
      if (e?.state !== "clean" || e.version !== 0 || e.slot === undefined) {
        fail(`block ${block} awaits its check against storage, but ${e ? `is ${e.state} at version ${e.version}${e.slot === undefined ? " with no slot" : ""}` : "is not cached"}`);
      }
    }
    for (const e of [...this.dirty, ...writeBack.queued()]) {
      if (!this.holds(e)) fail(`block ${e.block} (${e.state}) is queued but not in the cache`);
    }
    for (const e of residency.unsaved) {
      if (!this.holds(e) || e.state === "loading" || e.data === IN_FILE) {
        fail(`block ${e.block} waits to be saved but is ${!this.holds(e) ? "not in the cache" : e.state === "loading" ? "loading" : "in the file alone already"}`);
      }
    }
    if (uploading > writeBack.uploads + writeBack.deletes) fail(`${uploading} blocks uploading, ${writeBack.uploads + writeBack.deletes} write-backs counted`);
    if (writeBack.uploads > o.threads || writeBack.deletes > ZERO_WRITES_IN_FLIGHT) fail(`${writeBack.uploads} uploads and ${writeBack.deletes} deletes in flight`);
    if (lent > writeBack.uploads + residency.fileWork) fail(`${lent} buffers lent, by ${writeBack.uploads} uploads and ${residency.fileWork} pieces of file work`);
    if (saving > residency.fileWork) fail(`${saving} blocks being saved, ${residency.fileWork} pieces of file work counted`);
    if (residency.memoryCounted !== undefined && residency.memoryCounted !== inMemory) fail(`${residency.memoryCounted} blocks counted in memory, ${inMemory} cached there`);
    if (residency.memoryHeld > residency.memoryLimit) fail(`${residency.memoryHeld} blocks in memory or on their way, more than ${residency.memoryLimit}`);
    for (const b of buffers.keys()) if (lending.spare(b)) fail("a spare buffer still holds a cached block");
  }
}
