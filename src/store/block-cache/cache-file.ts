/**
 * The block cache kept in a local file, so that it survives a restart and a crash.
 *
 * Layout: a 4 KiB header, a directory of 40-byte records (one per slot), then the slots, each one
 * block, page-aligned. A record: state (empty, clean, dirty, zero-clean, zero-dirty), block number,
 * sequence number, CRC32 of the slot's bytes, MD5 of the bytes (clean blocks, for checking them
 * against S3 after a restart), and a CRC32 of the record itself.
 *
 * Crash safety: a block's new bytes always go to a free slot, then (once they are written) its
 * record, then the old slot's record is cleared. Killed at any instant, the file holds the old or the new version of
 * each block, and a torn slot fails its CRC and is ignored, so the file always loads. A record that
 * fails its own CRC (damaged on disk) is never acted on: its block is read from S3 instead.
 *
 * The header holds the token of the mount that uses the file, and the token of a mount about to
 * set its flag: written before the flag, so that after a crash at any instant one of the two is
 * the flag's. Version 1 files (records without their own CRC) are read once and rewritten.
 *
 * Opening reads the directory alone; a slot's bytes are read when its block is wanted.
 */
import { md5Hex } from "../../util/md5.ts";
import { closeSync, fchmodSync, fstatSync, fsyncSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { ConfigError } from "../../errors.ts";
import { openWritableFile, reasonOf } from "../../util/flag-paths.ts";
import { runtime } from "../../runtime/index.ts";
import { isAllZero } from "../block-store.ts";

const MAGIC = 0x53334243; // "S3BC"
const VERSION = 2;
const HEADER = 4096;
/** Record size by file version. */
const RECORD: Record<number, number> = { 1: 32, 2: 40 };
/** Where a version 2 record keeps its own CRC (of the bytes before it). */
const RECORD_CRC = 32;
const PAGE = 4096;
const TOKEN_AT = 20;
const PENDING_TOKEN_AT = 24;

export const enum SlotState {
  Empty = 0,
  Clean = 1,
  Dirty = 2,
  ZeroClean = 3,
  ZeroDirty = 4,
}

/** A block the file holds, as its record says (its bytes stay in the slot until read). */
export interface LoadedBlock {
  block: number;
  /** The zero block: a record with no bytes. */
  zero: boolean;
  dirty: boolean;
  /** MD5 hex of the bytes, for clean blocks. */
  md5: string | undefined;
  /** CRC-32 of the slot's bytes (0 for the zero block), checked when they are read. */
  crc: number;
  slot: number;
  seq: number;
}

export interface CacheFileContents {
  file: CacheFile;
  /** The permissions the file had when they let others in (it has its owner's alone now). */
  narrowedFrom?: number;
  blocks: LoadedBlock[];
  /** The tokens of the mount that last used the file and of one that was setting its flag (0s left out). */
  tokens: number[];
  /** Records that failed their own CRC, and were ignored. */
  damaged: number;
}

/**
 * Free slots kept as they are for the next writes; a slot freed beyond these has its disk space
 * punched out, so the file takes the room of the blocks it holds.
 */
const UNPUNCHED_FREE_SLOTS = 64;

const u8 = (n: number) => new Uint8Array(n);

export class CacheFile {
  private readonly free: number[] = [];
  private seq = 1;
  private readonly record: Uint8Array;
  private readonly view: DataView;
  private readonly dataStart: number;
  /** Records that failed their own CRC when the file was read. */
  private damaged = 0;
  /**
   * --blockCacheFileAdvise: the kernel is told to drop the pages of each slot written or read.
   * Pages still dirty then stay (the advice only starts their write-out), so the whole file is
   * advised again every second: that costs a walk of only the pages still cached.
   */
  private advise = false;
  private adviser: ReturnType<typeof setInterval> | undefined;

  private constructor(
    private readonly fd: number,
    readonly blockSize: number,
    readonly slots: number,
    /** How errors name the file: the flag as typed (`--blockCacheFile=/var/cache/disk`). */
    private readonly label: string,
    private readonly version = VERSION,
  ) {
    this.record = u8(RECORD[version]!);
    this.view = new DataView(this.record.buffer);
    this.dataStart = dataStart(slots, version);
  }

  /**
   * Opens (or creates) the file for `slots` slots of `blockSize`, reading its directory only. A
   * file made for another disk size is refused if it holds dirty blocks, else started afresh; one
   * with another slot count is rewritten to the new count, dirty blocks first. A file that is not
   * a cache file (and not empty) is refused, never overwritten: the name may be a typo. Errors name
   * the file as `label` does.
   */
  static open(path: string, blockSize: number, numBlocks: number, slots: number, advise = false, label = path): CacheFileContents {
    let contents: CacheFileContents;
    try {
      contents = CacheFile.openFile(path, blockSize, numBlocks, slots, label);
    } catch (err) {
      throw err instanceof ConfigError ? err : new ConfigError(`${label}: ${reasonOf(err)}`);
    }
    const file = contents.file;
    file.advise = advise;
    if (advise) {
      const dropAll = () => runtime.libc.dropCachedPages(file.fd, 0, 0); // 0: to the end
      dropAll();
      file.adviser = setInterval(dropAll, 1000);
      file.adviser.unref?.();
    }
    return contents;
  }

  private static openFile(path: string, blockSize: number, numBlocks: number, slots: number, label: string): CacheFileContents {
    let blocks: LoadedBlock[] = [];
    let tokens: number[] = [];
    let damaged = 0;
    let old: CacheFile | undefined;
    let narrowedFrom: number | undefined;
    const fd = openWritableFile(label, path, "update");
    if (fd !== undefined) {
      const header = u8(HEADER);
      const got = readSync(fd, header, 0, HEADER, 0);
      const h = new DataView(header.buffer);
      const version = h.getUint32(4, true);
      if (got > 0 && (h.getUint32(0, true) !== MAGIC || RECORD[version] === undefined)) {
        closeSync(fd);
        throw new ConfigError(`${label}: not a cache file of this s3backer${h.getUint32(0, true) === MAGIC ? ` (version ${version})` : ""}: give another name, or delete it`);
      }
      // It holds plaintext blocks (even with --encrypt): readable by its owner alone.
      const mode = fstatSync(fd).mode & 0o777;
      if (mode & 0o077) {
        fchmodSync(fd, mode & 0o700);
        narrowedFrom = mode;
      }
      if (got > 0) {
        old = new CacheFile(fd, h.getUint32(8, true), h.getUint32(12, true), label, version);
        tokens = tokensOf(h, version);
        blocks = old.readIndex();
        damaged = old.damaged;
        const sameDisk = h.getUint32(8, true) === blockSize && h.getUint32(16, true) === numBlocks;
        if (!sameDisk) {
          if (blocks.some((b) => b.dirty)) {
            closeSync(fd);
            throw new ConfigError(`${path} holds unsaved blocks of a disk with other sizes: mount that disk to save them, or delete the file`);
          }
          blocks = [];
        } else if (old.slots === slots && version === VERSION) {
          old.seq = 1 + blocks.reduce((max, b) => Math.max(max, b.seq), 0); // newer than every record kept
          const used = new Set(blocks.map((b) => b.slot));
          for (let s = slots - 1; s >= 0; s--) if (!used.has(s)) old.free.push(s);
          // Records left by a crash that lost to a newer version, or failed a CRC: clear them.
          for (let s = 0; s < slots; s++) if (!used.has(s)) old.writeRecord(s, SlotState.Empty, 0, 0, undefined);
          return { file: old, blocks, tokens, damaged, narrowedFrom };
        }
      } else closeSync(fd); // empty: made afresh
    }
    // A new file, another slot count or an older version: the blocks worth keeping are copied into
    // a fresh file beside it, which then takes the old one's place (a crash meanwhile leaves the old one).
    const fresh = `${path}.new`;
    const file = new CacheFile(openWritableFile(`${label} (its new copy ${fresh})`, fresh, "new")!, blockSize, slots, label);
    const newFd = file.fd;
    const header = u8(HEADER);
    const h = new DataView(header.buffer);
    h.setUint32(0, MAGIC, true);
    h.setUint32(4, VERSION, true);
    h.setUint32(8, blockSize, true);
    h.setUint32(12, slots, true);
    h.setUint32(16, numBlocks, true);
    h.setUint32(TOKEN_AT, tokens[0] ?? 0, true);
    h.setUint32(PENDING_TOKEN_AT, tokens[1] ?? 0, true);
    const kept: LoadedBlock[] = [];
    try {
      writeFully(newFd, header, 0);
      // The whole directory is written now, so that a record never needs new disk space.
      writeFully(newFd, u8(file.dataStart - HEADER), HEADER);
      for (let s = slots - 1; s >= 0; s--) file.free.push(s);
      const data = u8(blockSize);
      for (const b of blocks.sort((a, b) => Number(b.dirty) - Number(a.dirty))) {
        if (kept.length === slots) break;
        if (!b.zero && !old!.readSlotSync(b.slot, b.crc, data)) continue; // torn by a crash: the older version is gone too
        const slot = file.store(b.block, b.zero ? null : data, b.dirty, b.md5);
        kept.push({ ...b, slot, seq: file.seq - 1 });
      }
      fsyncSync(newFd);
    } catch (err) {
      // A full disk, say: the copy goes, the old file stays as it was.
      closeSync(newFd);
      rmSync(fresh, { force: true });
      throw err;
    } finally {
      old?.close();
    }
    renameSync(fresh, path);
    return { file, blocks: kept, tokens, damaged, narrowedFrom };
  }

  /**
   * What a cache file holds, read without changing it (for --reset-mounted-flag): the tokens it
   * records and how many unsaved blocks; undefined if the file is not a cache file.
   */
  static inspect(path: string): { tokens: number[]; dirty: number } | undefined {
    const fd = openSync(path, "r");
    try {
      const header = u8(HEADER);
      readSync(fd, header, 0, HEADER, 0);
      const h = new DataView(header.buffer);
      const version = h.getUint32(4, true);
      if (h.getUint32(0, true) !== MAGIC || RECORD[version] === undefined) return undefined;
      const file = new CacheFile(fd, h.getUint32(8, true), h.getUint32(12, true), path, version);
      return { tokens: tokensOf(h, version), dirty: file.readIndex().filter((b) => b.dirty).length };
    } finally {
      closeSync(fd);
    }
  }

  /** Every block the directory names: the newest valid record per block (the bytes are checked when read). */
  private readIndex(): LoadedBlock[] {
    const size = RECORD[this.version]!;
    const dir = u8(this.slots * size);
    readSync(this.fd, dir, 0, dir.length, HEADER);
    const v = new DataView(dir.buffer);
    const best = new Map<number, LoadedBlock>();
    for (let s = 0; s < this.slots; s++) {
      const at = s * size;
      const record = dir.subarray(at, at + size);
      if (this.version >= 2 && !isAllZero(record) && runtime.crc32(record.subarray(0, RECORD_CRC)) !== v.getUint32(at + RECORD_CRC, true)) {
        this.damaged++;
        continue;
      }
      const state = v.getUint8(at);
      if (state === SlotState.Empty) continue;
      if (state > SlotState.ZeroDirty) {
        this.damaged++;
        continue;
      }
      const block = v.getUint32(at + 4, true);
      const seq = v.getUint32(at + 8, true);
      const current = best.get(block);
      if (current && seq <= current.seq) continue;
      best.set(block, {
        block, slot: s, seq, crc: v.getUint32(at + 12, true),
        zero: state === SlotState.ZeroClean || state === SlotState.ZeroDirty,
        dirty: state === SlotState.Dirty || state === SlotState.ZeroDirty,
        md5: state === SlotState.Clean ? Buffer.from(dir.subarray(at + 16, at + 32)).toString("hex") : undefined,
      });
    }
    return [...best.values()];
  }

  /** Reads a slot's bytes into `into`, synchronously; false if they fail their CRC. */
  private readSlotSync(slot: number, crc: number, into: Uint8Array): boolean {
    const got = readSync(this.fd, into, 0, this.blockSize, this.slotAt(slot));
    return got === this.blockSize && runtime.crc32(into) === crc;
  }

  /** Reads a slot's bytes into `into`; false if they fail their CRC (torn, or damaged on disk). */
  async readSlot(slot: number, crc: number, into: Uint8Array): Promise<boolean> {
    const at = this.slotAt(slot);
    const got = await runtime.readAt(this.fd, into, at);
    if (this.advise) runtime.libc.dropCachedPages(this.fd, at, this.blockSize);
    return got === this.blockSize && runtime.crc32(into) === crc;
  }

  /** Records, durably, the token of a mount about to set its flag. */
  announceToken(token: number): void {
    this.writeHeaderWord(PENDING_TOKEN_AT, token);
  }

  /** Records, durably, the token of the mount that set its flag and uses the file now. */
  setToken(token: number): void {
    this.writeHeaderWord(TOKEN_AT, token);
    this.writeHeaderWord(PENDING_TOKEN_AT, 0);
  }

  private writeHeaderWord(at: number, value: number): void {
    const b = u8(4);
    new DataView(b.buffer).setUint32(0, value, true);
    writeFully(this.fd, b, at);
    fsyncSync(this.fd);
  }

  /** A free slot to write new bytes to (undefined when none is), not yet pointed to by any record. */
  takeSlot(): number | undefined {
    return this.free.pop();
  }

  /** Writes a block's bytes to a slot from takeSlot; a record (`commit`) may point to it once this settles. */
  async writeSlot(slot: number, data: Uint8Array): Promise<void> {
    const at = this.slotAt(slot);
    try {
      await runtime.writeAt(this.fd, data, at);
    } catch (err) {
      // A full disk, say: the message names the file (and the flag that named it).
      throw Object.assign(new Error(`${this.label}: ${reasonOf(err)}`), { code: (err as { code?: string }).code });
    }
    if (this.advise) runtime.libc.dropCachedPages(this.fd, at, data.length);
  }

  /** Points a slot's record at the block whose bytes (CRC `crc`) the slot holds; the zero block needs no bytes. */
  commit(slot: number, block: number, data: Uint8Array | null, crc: number, dirty: boolean, md5?: string): void {
    const state = data ? (dirty ? SlotState.Dirty : SlotState.Clean) : dirty ? SlotState.ZeroDirty : SlotState.ZeroClean;
    this.writeRecord(slot, state, block, crc, state === SlotState.Clean ? (md5 ?? md5Hex(data!)) : undefined);
  }

  /** Writes a block to a free slot and points a record at it, synchronously (for a rewrite of the file). */
  store(block: number, data: Uint8Array | null, dirty: boolean, md5?: string): number {
    const slot = this.takeSlot();
    if (slot === undefined) throw new Error("cache file: no free slot");
    if (data) writeFully(this.fd, data, this.slotAt(slot));
    this.commit(slot, block, data, data ? runtime.crc32(data) : 0, dirty, md5);
    return slot;
  }

  /** Frees a slot: its record is cleared first, so the slot is never read again. */
  release(slot: number): void {
    this.writeRecord(slot, SlotState.Empty, 0, 0, undefined);
    this.putBack(slot);
  }

  /** Whether a slot is free (for the block cache's invariant check: a slot a block holds must not be). */
  isFree(slot: number): boolean {
    return this.free.includes(slot);
  }

  /** Returns a slot no record points to (from takeSlot, unused) to the free ones. */
  putBack(slot: number): void {
    this.free.push(slot);
    if (this.free.length > UNPUNCHED_FREE_SLOTS) this.punch(slot);
  }

  private punch(slot: number): void {
    try {
      runtime.libc.punchHole(this.fd, this.slotAt(slot), this.blockSize);
    } catch {
      // A file system without holes keeps the space: the file is correct either way.
    }
  }

  /** Makes everything written so far durable. */
  sync(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    clearInterval(this.adviser);
    fsyncSync(this.fd);
    closeSync(this.fd);
  }

  private slotAt(slot: number): number {
    return this.dataStart + slot * this.blockSize;
  }

  /** Writes a record (only ever of the current version: older files are rewritten before use). */
  private writeRecord(slot: number, state: SlotState, block: number, crc: number, md5: string | undefined): void {
    this.record.fill(0);
    if (state !== SlotState.Empty) {
      this.view.setUint8(0, state);
      this.view.setUint32(4, block, true);
      this.view.setUint32(8, this.seq++, true);
      this.view.setUint32(12, crc, true);
      if (md5) this.record.set(Buffer.from(md5, "hex"), 16);
      this.view.setUint32(RECORD_CRC, runtime.crc32(this.record.subarray(0, RECORD_CRC)), true);
    }
    writeFully(this.fd, this.record, HEADER + slot * this.record.length);
  }
}

/** The tokens a header records: of the mount that used the file, and of one that was setting its flag (0s left out). */
function tokensOf(h: DataView, version: number): number[] {
  return [h.getUint32(TOKEN_AT, true), version >= 2 ? h.getUint32(PENDING_TOKEN_AT, true) : 0].filter((t) => t !== 0);
}

/** Writes all of `data` at `position`: a write cut short (a full disk) is continued, so it ends in an error, never silently short. */
function writeFully(fd: number, data: Uint8Array, position: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position + done);
}

function dataStart(slots: number, version: number): number {
  return Math.ceil((HEADER + slots * RECORD[version]!) / PAGE) * PAGE;
}
