/**
 * The block cache kept in a local file, so that it survives a restart and a crash.
 *
 * Layout: a 4 KiB header, a directory of 32-byte records (one per slot), then the slots, each one
 * block, page-aligned. A record: state (empty, clean, dirty, zero-clean, zero-dirty), block number,
 * sequence number, CRC32 of the slot's bytes, MD5 of the bytes (clean blocks, for checking them
 * against S3 after a restart).
 *
 * Crash safety: a block's new bytes always go to a free slot, then its record is written, then the
 * old slot's record is cleared. Killed at any instant, the file holds the old or the new version of
 * each block, and a torn slot fails its CRC and is ignored, so the file always loads.
 */
import { closeSync, existsSync, fsyncSync, openSync, readSync, writeSync } from "node:fs";
import { createHash } from "node:crypto";
import { ConfigError } from "../../errors.ts";
import { runtime } from "../../runtime/index.ts";

const MAGIC = 0x53334243; // "S3BC"
const VERSION = 1;
const HEADER = 4096;
const RECORD = 32;
const PAGE = 4096;

export const enum SlotState {
  Empty = 0,
  Clean = 1,
  Dirty = 2,
  ZeroClean = 3,
  ZeroDirty = 4,
}

export interface LoadedBlock {
  block: number;
  /** null: the zero block. */
  data: Uint8Array | null;
  dirty: boolean;
  /** MD5 hex of the bytes, for clean blocks. */
  md5: string | undefined;
  slot: number;
}

export interface CacheFileContents {
  file: CacheFile;
  blocks: LoadedBlock[];
  /** The mount token of the mount that last used the file (0: none). */
  token: number;
}

const u8 = (n: number) => new Uint8Array(n);

export class CacheFile {
  private readonly free: number[] = [];
  private seq = 1;
  private readonly record = u8(RECORD);
  private readonly view = new DataView(this.record.buffer);

  private constructor(
    private readonly fd: number,
    private readonly blockSize: number,
    readonly slots: number,
    private readonly dataStart: number,
  ) {}

  /**
   * Opens (or creates) the file for `slots` slots of `blockSize`. A file made for another disk
   * size is refused if it holds dirty blocks, else started afresh; one with another slot count is
   * rewritten to the new count, dirty blocks first.
   */
  static open(path: string, blockSize: number, numBlocks: number, slots: number): CacheFileContents {
    let blocks: LoadedBlock[] = [];
    let token = 0;
    if (existsSync(path)) {
      const fd = openSync(path, "r+");
      const header = u8(HEADER);
      readSync(fd, header, 0, HEADER, 0);
      const h = new DataView(header.buffer);
      const ok = h.getUint32(0, true) === MAGIC && h.getUint32(4, true) === VERSION;
      if (ok) {
        const old = new CacheFile(fd, h.getUint32(8, true), h.getUint32(12, true), dataStart(h.getUint32(12, true)));
        token = h.getUint32(20, true);
        blocks = old.readAll();
        const sameDisk = h.getUint32(8, true) === blockSize && h.getUint32(16, true) === numBlocks;
        if (!sameDisk) {
          if (blocks.some((b) => b.dirty)) {
            closeSync(fd);
            throw new ConfigError(`${path} holds unsaved blocks of a disk with other sizes: mount that disk to save them, or delete the file`);
          }
          blocks = [];
        } else if (old.slots === slots) {
          old.seq = 1 + blocks.length;
          const used = new Set(blocks.map((b) => b.slot));
          for (let s = slots - 1; s >= 0; s--) if (!used.has(s)) old.free.push(s);
          // Records left by a crash that lost to a newer version, or failed their CRC: clear them.
          for (let s = 0; s < slots; s++) if (!used.has(s)) old.writeRecord(s, SlotState.Empty, 0, 0, undefined);
          return { file: old, blocks, token };
        }
      }
      closeSync(fd);
    }
    // A new file, or another slot count: write the blocks worth keeping into a fresh one.
    const fd = openSync(path, "w+");
    const file = new CacheFile(fd, blockSize, slots, dataStart(slots));
    const header = u8(HEADER);
    const h = new DataView(header.buffer);
    h.setUint32(0, MAGIC, true);
    h.setUint32(4, VERSION, true);
    h.setUint32(8, blockSize, true);
    h.setUint32(12, slots, true);
    h.setUint32(16, numBlocks, true);
    h.setUint32(20, token, true);
    writeSync(fd, header, 0, HEADER, 0);
    writeSync(fd, u8(dataStart(slots) - HEADER), 0, dataStart(slots) - HEADER, HEADER); // an empty directory
    for (let s = slots - 1; s >= 0; s--) file.free.push(s);
    const kept = blocks.sort((a, b) => Number(b.dirty) - Number(a.dirty)).slice(0, slots);
    for (const b of kept) b.slot = file.store(b.block, b.data, b.dirty, b.md5)!;
    fsyncSync(fd);
    return { file, blocks: kept, token };
  }

  /** Every valid block of the file: the newest record per block whose bytes pass their CRC. */
  private readAll(): LoadedBlock[] {
    const dir = u8(this.slots * RECORD);
    readSync(this.fd, dir, 0, dir.length, HEADER);
    const v = new DataView(dir.buffer);
    const best = new Map<number, { slot: number; seq: number; state: number; crc: number; md5: string | undefined }>();
    for (let s = 0; s < this.slots; s++) {
      const at = s * RECORD;
      const state = v.getUint8(at);
      if (state === SlotState.Empty || state > SlotState.ZeroDirty) continue;
      const block = v.getUint32(at + 4, true);
      const seq = v.getUint32(at + 8, true);
      const md5 = state === SlotState.Clean ? Buffer.from(dir.subarray(at + 16, at + 32)).toString("hex") : undefined;
      const current = best.get(block);
      if (!current || seq > current.seq) best.set(block, { slot: s, seq, state, crc: v.getUint32(at + 12, true), md5 });
    }
    const blocks: LoadedBlock[] = [];
    for (const [block, r] of best) {
      const zero = r.state === SlotState.ZeroClean || r.state === SlotState.ZeroDirty;
      let data: Uint8Array | null = null;
      if (!zero) {
        data = u8(this.blockSize);
        const got = readSync(this.fd, data, 0, this.blockSize, this.dataStart + r.slot * this.blockSize);
        if (got !== this.blockSize || runtime.crc32(data) !== r.crc) continue; // torn by a crash: the older version is gone too
      }
      blocks.push({ block, data, dirty: r.state === SlotState.Dirty || r.state === SlotState.ZeroDirty, md5: r.md5, slot: r.slot });
    }
    return blocks;
  }

  /** Records the mount token of the current mount. */
  setToken(token: number): void {
    const b = u8(4);
    new DataView(b.buffer).setUint32(0, token, true);
    writeSync(this.fd, b, 0, 4, 20);
  }

  /**
   * Writes a block's bytes to a free slot and points a record at it; returns the slot, or
   * undefined when no slot is free (the caller then keeps the block in memory only).
   */
  store(block: number, data: Uint8Array | null, dirty: boolean, md5?: string): number | undefined {
    const slot = this.free.pop();
    if (slot === undefined) return undefined;
    let crc = 0;
    if (data) {
      writeSync(this.fd, data, 0, data.length, this.dataStart + slot * this.blockSize);
      crc = runtime.crc32(data);
    }
    const state = data ? (dirty ? SlotState.Dirty : SlotState.Clean) : dirty ? SlotState.ZeroDirty : SlotState.ZeroClean;
    this.writeRecord(slot, state, block, crc, state === SlotState.Clean ? (md5 ?? createHash("md5").update(data!).digest("hex")) : undefined);
    return slot;
  }

  /** Marks a slot's block as stored in S3 (clean). */
  markClean(slot: number, block: number, data: Uint8Array | null): void {
    if (!data) return this.writeRecord(slot, SlotState.ZeroClean, block, 0, undefined);
    this.writeRecord(slot, SlotState.Clean, block, runtime.crc32(data), createHash("md5").update(data).digest("hex"));
  }

  /** Frees a slot (its record is cleared first, so the slot is never read again). */
  release(slot: number): void {
    this.writeRecord(slot, SlotState.Empty, 0, 0, undefined);
    this.free.push(slot);
  }

  close(): void {
    fsyncSync(this.fd);
    closeSync(this.fd);
  }

  private writeRecord(slot: number, state: SlotState, block: number, crc: number, md5: string | undefined): void {
    this.record.fill(0);
    this.view.setUint8(0, state);
    this.view.setUint32(4, block, true);
    this.view.setUint32(8, state === SlotState.Empty ? 0 : this.seq++, true);
    this.view.setUint32(12, crc, true);
    if (md5) this.record.set(Buffer.from(md5, "hex"), 16);
    writeSync(this.fd, this.record, 0, RECORD, HEADER + slot * RECORD);
  }
}

function dataStart(slots: number): number {
  return Math.ceil((HEADER + slots * RECORD) / PAGE) * PAGE;
}
