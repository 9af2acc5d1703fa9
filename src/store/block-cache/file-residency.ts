/**
 * Residency in memory and the cache file: bytes paged out to the file and back in.
 *
 * Every block's bytes are saved to a slot of the file in the background (file-saves.ts), and a
 * block whose current bytes are saved may drop them from memory (`data` is then IN_FILE) once
 * more than --blockCacheMemory is held: reads and write-backs read them back from the file. The
 * file holds as many blocks as --blockCacheSize, and so may hold far more dirty blocks than memory.
 */
import { messageOf } from "../../errors.ts";
import type { CacheFile } from "./cache-file.ts";
import { type Entry, IN_FILE } from "./entries.ts";
import { FileSaves, type SavesHost } from "./file-saves.ts";
import type { Lending, Room } from "./lending.ts";
import type { Residency } from "./residency.ts";
import type { Stat } from "../../util/stat-group.ts";

/** What the file's residency needs of the rest of the cache. */
export interface FileResidencyHost extends SavesHost {
  readonly o: SavesHost["o"] & { readonly memoryBlocks: number; readonly threads: number };
  readonly entries: SavesHost["entries"] & { forget(entry: Entry): void };
  readonly lending: Lending;
  readonly room: Room;
  readonly writeBack: { roomFreed(): Promise<void>; abandon(entry: Entry, err: Error): void };
  readonly check: { readonly left: number } | undefined;
}

export class FileResidency implements Residency {
  readonly uploadsTakeRoom = false;
  /** Entries with their bytes in memory, in LRU order (for paging out to the cache file). */
  private readonly resident = new Set<Entry>();
  /** Bytes on their way into memory (loads and reads from the cache file). */
  private arriving = 0;
  private readonly saves: FileSaves;

  constructor(
    private readonly file: CacheFile,
    private readonly host: FileResidencyHost,
  ) {
    this.saves = new FileSaves(file, host);
  }

  /**
   * Uploads in flight come on top of --blockCacheMemory: each may hold its own copy read back from
   * the file, and the HTTP client holds one more.
   */
  get memoryCapacity(): number {
    return this.host.o.memoryBlocks + 2 * this.host.o.threads;
  }

  get memoryCounted(): number {
    return this.resident.size;
  }

  /** Blocks in memory, and on their way there. */
  get memoryHeld(): number {
    return this.resident.size + this.arriving;
  }

  get memoryLimit(): number {
    return this.host.o.memoryBlocks;
  }

  get unsaved(): Iterable<Entry> {
    return this.saves.unsaved;
  }

  get fileWork(): number {
    return this.saves.fileWork;
  }

  inMemory(entry: Entry): boolean {
    return this.resident.has(entry);
  }

  slotFree(slot: number): boolean {
    return this.file.isFree(slot);
  }

  setBytes(entry: Entry, data: Uint8Array | null): void {
    entry.data = data;
    const was = this.resident.delete(entry);
    if (data) this.resident.add(entry);
    else if (was) this.host.room.released();
  }

  touched(entry: Entry): void {
    if (this.resident.delete(entry)) this.resident.add(entry);
  }

  forgotten(entry: Entry): void {
    if (this.resident.delete(entry)) this.host.room.released();
    this.saves.drop(entry);
  }

  fetchStarted(): void {
    this.arriving++;
  }

  fetchEnded(): void {
    this.arriving--;
  }

  private fits(n: number): boolean {
    return this.memoryHeld + n <= this.host.o.memoryBlocks;
  }

  /**
   * Least recently used bytes already saved in the file are dropped from memory, clean ones that
   * could not be saved are evicted.
   */
  memoryRoom(n: number, evenAhead = true): boolean {
    if (this.fits(n)) return true;
    const held = this.resident.size;
    for (const aheadToo of evenAhead ? [false, true] : [false]) {
      for (const entry of this.resident) {
        if (this.fits(n)) break;
        if ((entry.aheadUnread && !aheadToo) || entry.lent.length > 0 || entry.pins > 0 || entry.saving || this.saves.unsaved.has(entry)) continue;
        if (entry.state !== "clean" && entry.state !== "dirty") continue;
        if (this.saves.inFile(entry)) {
          this.host.lending.letGo(entry.data as Uint8Array, entry.owned);
          entry.data = IN_FILE;
          this.resident.delete(entry);
        } else if (entry.state === "clean") this.host.entries.forget(entry);
      }
    }
    if (this.resident.size < held) this.host.room.released(); // others waiting may fit in what this freed
    return this.fits(n);
  }

  changed(entry: Entry): void {
    this.saves.toSave(entry);
  }

  /** Reads an entry's bytes back from the cache file (once, however many wait for them). */
  pageIn(entry: Entry): Promise<Uint8Array | undefined> {
    entry.paging ??= this.readFromFile(entry).finally(() => (entry.paging = undefined));
    return entry.paging;
  }

  /** The bytes read back, which are the entry's now; undefined if the entry changed meanwhile. */
  private async readFromFile(entry: Entry): Promise<Uint8Array | undefined> {
    // Looked at again after every wait: a write may bring the bytes into memory meanwhile, and the
    // pins of those waiting for them keep them there, so waiting on for room would wait on itself.
    for (;;) {
      if (entry.data !== IN_FILE || !this.host.entries.holds(entry)) return undefined;
      if (this.memoryRoom(1)) break;
      await this.host.writeBack.roomFreed();
    }
    const into = this.host.lending.buffers.takeToFill();
    this.arriving++;
    let read: boolean;
    try {
      read = await this.readBack(entry, into);
    } finally {
      this.arriving--;
      this.host.room.wake();
    }
    if (!read) {
      this.host.lending.recycle(into);
      return undefined;
    }
    this.setBytes(entry, into);
    entry.owned = true;
    return into;
  }

  /**
   * Reads the slot of an entry whose bytes are in the file alone into `into`. False if the entry
   * changed meanwhile, or if the slot is unreadable: a clean block is then dropped (storage has
   * it), a dirty one abandoned.
   */
  async readBack(entry: Entry, into: Uint8Array): Promise<boolean> {
    const slot = entry.slot!;
    let ok = false;
    let why = "its CRC does not match";
    try {
      ok = await this.file.readSlot(slot, entry.slotCrc, into);
    } catch (err) {
      why = messageOf(err);
    }
    // Written whole, evicted or saved again meanwhile: what was read is not the block's now.
    if (entry.data !== IN_FILE || entry.slot !== slot || !this.host.entries.holds(entry)) return false;
    if (ok) {
      this.host.counters.add("cache file reads");
      return true;
    }
    this.host.counters.add("cache file errors");
    if (entry.state === "clean") {
      this.host.o.log.warn(`cache file: block ${entry.block} could not be read back (${why}): reading it from storage`);
      this.host.entries.forget(entry);
    } else this.abandon(entry, why);
    return false;
  }

  /**
   * Gives up a dirty block whose only copy, in the cache file, is unreadable (a slot torn by a power
   * loss, or damaged): it was never stored, so no fsync promised it.
   */
  private abandon(entry: Entry, why: string): void {
    this.host.o.log.error(`cache file: unsaved block ${entry.block} could not be read back (${why}): it is lost, reads get what storage holds`);
    this.saves.drop(entry);
    this.host.writeBack.abandon(entry, new Error("its unsaved bytes in the cache file are unreadable"));
  }

  uploadMd5(data: Uint8Array): Promise<string> {
    return this.saves.md5Hex(data);
  }

  stored(entry: Entry, version: number, data: Uint8Array | null): void {
    this.saves.stored(entry, version, data);
  }

  /**
   * Every dirty block's newest bytes go to the file, whose records keep them unsaved for
   * --blockCacheRecoverDirtyBlocks; what uploads still end changes no record.
   */
  async keepUnstored(dirty: ReadonlySet<Entry>): Promise<{ kept: number; lost: number }> {
    this.saves.keeping = true;
    // Blocks whose save failed before get one more try.
    for (const entry of dirty) if (!this.saves.inFile(entry)) this.saves.unsaved.add(entry);
    this.saves.pump();
    await this.saves.idle();
    const kept = [...dirty].filter((entry) => this.saves.inFile(entry)).length;
    // Made durable, but left open: uploads still in flight may read their bytes from it (and
    // change no record: see FileSaves.stored) until the process exits.
    this.file.sync();
    return { kept, lost: dirty.size - kept };
  }

  /** What is not in the file yet goes there too: the next mount finds every block the cache held. */
  async close(): Promise<void> {
    this.saves.pump();
    await this.saves.idle();
    this.file.close();
  }

  /** Records in the file the token of a mount about to set its flag (see CacheFile.announceToken). */
  announceToken(token: number): void {
    this.file.announceToken(token);
  }

  /** Records in the file which mount uses it now. */
  setToken(token: number): void {
    this.file.setToken(token);
  }

  stats(values: Stat[]): void {
    values.push(["blocks in memory", this.resident.size], ["blocks not yet in the file", this.saves.unsaved.size + this.saves.fileWork]);
    values.push(["blocks to verify", this.host.check?.left ?? 0]);
  }
}
