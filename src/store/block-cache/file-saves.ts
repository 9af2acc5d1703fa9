/**
 * Saves to the cache file, and the MD5s their records keep.
 *
 * Every block's changed bytes go to a slot in the background (SAVES_IN_FLIGHT at a time), and a
 * clean block's record keeps the MD5 of its bytes.
 *
 * A slot never holds a version older than the one stored below: a write-back that passes the
 * saved version frees the slot at once, so that a crash can never bring the older bytes back.
 */
import { messageOf } from "../../errors.ts";
import type { Logger } from "../../log.ts";
import { runtime } from "../../runtime/index.ts";
import { Md5Batch } from "../../util/md5.ts";
import type { CacheFile } from "./cache-file.ts";
import { type CacheCounters, type Entry, IN_FILE } from "./entries.ts";
import { ERROR_LOG_INTERVAL_MS } from "./write-back.ts";

/** Saves to the cache file in flight: enough to keep a disk busy; each holds a slot of the file's spare ones. */
const SAVES_IN_FLIGHT = 8;

/** What the saves need of the rest of the cache. */
export interface SavesHost {
  readonly o: { readonly log: Logger };
  readonly counters: CacheCounters;
  readonly entries: { holds(entry: Entry): boolean };
  readonly lending: { lend(entry: Entry, data: Uint8Array): void; giveBack(entry: Entry, data: Uint8Array): void };
}

export class FileSaves {
  /** Entries whose bytes are newer than their slot in the cache file, in the order they changed. */
  readonly unsaved = new Set<Entry>();
  /** Cache file work in flight: saves, and the MD5s of blocks to be marked clean. */
  private work = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly md5 = new Md5Batch();
  /** Last time a failed save was logged (they come in runs: a full disk fails them all). */
  private errorLogged = -Infinity;
  /** Given up (keepUnstored): what uploads still end is not recorded in the file, which keeps the blocks unsaved. */
  keeping = false;

  constructor(
    private readonly file: CacheFile,
    private readonly host: SavesHost,
  ) {}

  get fileWork(): number {
    return this.work;
  }

  /** The entry's current bytes are in the cache file. */
  inFile(entry: Entry): boolean {
    return entry.slot !== undefined && entry.slotVersion === entry.version;
  }

  /** The entry's bytes changed: they are saved in the background. */
  toSave(entry: Entry): void {
    this.unsaved.add(entry);
    this.pump();
  }

  /** The entry left the cache: nothing of it is saved any more, and its slot is free. */
  drop(entry: Entry): void {
    this.unsaved.delete(entry);
    if (entry.slot !== undefined) this.file.release(entry.slot);
    entry.slot = undefined;
  }

  pump(): void {
    for (const entry of this.unsaved) {
      if (this.work >= SAVES_IN_FLIGHT) return;
      if (entry.saving) continue; // saved again when the save in flight ends
      this.unsaved.delete(entry);
      const data = entry.data;
      if (!this.host.entries.holds(entry) || data === IN_FILE || this.inFile(entry)) continue;
      const slot = this.file.takeSlot();
      if (slot === undefined) throw new Error("block cache: the cache file has no free slot");
      if (data === null) this.committed(entry, slot, entry.version, null, 0, undefined);
      else void this.save(entry, slot, data);
    }
  }

  /** Settles once no save or MD5 is in flight. */
  async idle(): Promise<void> {
    while (this.work > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private async save(entry: Entry, slot: number, data: Uint8Array): Promise<void> {
    const version = entry.version;
    const clean = entry.stored === version;
    entry.saving = true;
    this.host.lending.lend(entry, data);
    this.work++;
    try {
      const crc = runtime.crc32(data);
      const [md5] = await Promise.all([clean ? this.versionMd5(entry, version, data) : undefined, this.file.writeSlot(slot, data)]);
      this.host.counters.add("cache file writes");
      this.committed(entry, slot, version, data, crc, md5);
    } catch (err) {
      this.file.putBack(slot);
      this.saveFailed(entry, err);
    } finally {
      entry.saving = false;
      this.host.lending.giveBack(entry, data);
      this.workDone();
    }
  }

  /**
   * A slot holds a block's `version` (null: the zero block, which needs no bytes): its record
   * points to it now, unless that version is older than storage's, and the old slot is freed.
   */
  private committed(entry: Entry, slot: number, version: number, data: Uint8Array | null, crc: number, md5: string | undefined): void {
    if (!this.host.entries.holds(entry) || version < entry.stored) {
      this.file.putBack(slot);
      return;
    }
    const clean = entry.stored === version;
    this.file.commit(slot, entry.block, data, crc, !(clean && (md5 !== undefined || data === null)), md5);
    if (entry.slot !== undefined) this.file.release(entry.slot);
    entry.slot = slot;
    entry.slotVersion = version;
    entry.slotCrc = crc;
    // Stored while being saved: the record says dirty until its MD5 is known.
    if (clean && md5 === undefined && data !== null) void this.markClean(entry, slot, version, data);
  }

  /**
   * `version` is stored below now: the slot that holds it is marked clean, and one that holds an
   * older version is freed at once, since after a crash it would be written back over newer data.
   */
  stored(entry: Entry, version: number, data: Uint8Array | null): void {
    const slot = entry.slot;
    if (slot === undefined || entry.slotVersion > version || this.keeping) return;
    if (entry.slotVersion < version) {
      this.file.release(slot);
      entry.slot = undefined;
      if (entry.data !== IN_FILE) this.toSave(entry);
    } else if (data === null) this.file.commit(slot, entry.block, null, 0, false);
    else void this.markClean(entry, slot, version, data);
  }

  private async markClean(entry: Entry, slot: number, version: number, data: Uint8Array): Promise<void> {
    this.host.lending.lend(entry, data);
    this.work++;
    try {
      const md5 = await this.versionMd5(entry, version, data);
      // Saved again or evicted meanwhile: the slot is not this version's any more.
      if (this.host.entries.holds(entry) && entry.slot === slot && entry.slotVersion === version && entry.stored === version) {
        this.file.commit(slot, entry.block, data, entry.slotCrc, false, md5);
      }
    } finally {
      this.host.lending.giveBack(entry, data);
      this.workDone();
    }
  }

  /** The MD5 hex of `data`, the entry's bytes at `version`: its write-back's, if that stored this version, else hashed now. */
  private versionMd5(entry: Entry, version: number, data: Uint8Array): string | Promise<string> {
    return (entry.stored === version ? entry.storedMd5 : undefined) ?? this.md5Hex(data);
  }

  /** The MD5 of a block's bytes in hex (the cache file's records keep it so), hashed in batches. */
  async md5Hex(data: Uint8Array): Promise<string> {
    return Buffer.from(await this.md5.digest(data)).toString("hex");
  }

  private saveFailed(entry: Entry, err: unknown): void {
    this.host.counters.add("cache file errors");
    const now = performance.now();
    if (now - this.errorLogged < ERROR_LOG_INTERVAL_MS) return;
    this.errorLogged = now;
    this.host.o.log.error(
      `cache file: saving block ${entry.block} failed (${messageOf(err)}); blocks that cannot be saved stay in memory until stored in S3`,
    );
  }

  /** A save or an MD5 is done: the next saves may start (both count to SAVES_IN_FLIGHT). */
  private workDone(): void {
    this.work--;
    this.pump();
    if (this.work === 0) this.idleWaiters.splice(0).forEach((resolve) => resolve());
  }
}
