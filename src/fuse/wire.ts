/**
 * Decoding of kernel requests and encoding of replies, byte for byte as include/linux/fuse.h lays
 * them out (little-endian). 64-bit fields are read and written as two 32-bit halves: the values we
 * handle (offsets, sizes, ids) stay far below 2^53, so a Number is exact and no BigInt is needed.
 */
import { concatBytes } from "../util/bytes.ts";
import type { Attr, DirEntry, SetattrIn, StatfsOut } from "./ops.ts";
import { Size } from "./kernel-abi.ts";

const TWO32 = 2 ** 32;
const utf8 = new TextDecoder();
const utf8Encode = new TextEncoder();

export function getU64(view: DataView, offset: number): number {
  return view.getUint32(offset, true) + view.getUint32(offset + 4, true) * TWO32;
}

export function setU64(view: DataView, offset: number, value: number): void {
  view.setUint32(offset, value % TWO32, true);
  view.setUint32(offset + 4, Math.floor(value / TWO32), true);
}

/** One request as read from /dev/fuse; `bytes` is borrowed from the reader's buffer. */
export class Request {
  readonly view: DataView;
  readonly opcode: number;
  readonly unique: number;
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.opcode = this.view.getUint32(4, true);
    this.unique = getU64(this.view, 8);
    this.nodeid = getU64(this.view, 16);
    this.uid = this.view.getUint32(24, true);
    this.gid = this.view.getUint32(28, true);
    this.pid = this.view.getUint32(32, true);
  }

  /** The 8 bytes of the unique id, copied into the reply header. */
  get uniqueBytes(): Uint8Array {
    return this.bytes.subarray(8, 16);
  }

  u32(bodyOffset: number): number {
    return this.view.getUint32(Size.IN_HEADER + bodyOffset, true);
  }

  u64(bodyOffset: number): number {
    return getU64(this.view, Size.IN_HEADER + bodyOffset);
  }

  /** The NUL-terminated name that LOOKUP and UNLINK carry as their body. */
  name(bodyOffset = 0): string {
    const start = Size.IN_HEADER + bodyOffset;
    const end = this.bytes.indexOf(0, start);
    return utf8.decode(this.bytes.subarray(start, end < 0 ? this.bytes.length : end));
  }
}

export interface InitIn { major: number; minor: number; maxReadahead: number; flags: number }
export const decodeInit = (r: Request): InitIn => ({ major: r.u32(0), minor: r.u32(4), maxReadahead: r.u32(8), flags: r.u32(12) });

export interface ReadIn { fh: number; offset: number; size: number }
export const decodeRead = (r: Request): ReadIn => ({ fh: r.u64(0), offset: r.u64(8), size: r.u32(16) });

export interface WriteIn { fh: number; offset: number; data: Uint8Array }
export function decodeWrite(r: Request): WriteIn {
  const start = Size.IN_HEADER + Size.WRITE_IN;
  return { fh: r.u64(0), offset: r.u64(8), data: r.bytes.subarray(start, start + r.u32(16)) };
}

export const decodeSetattr = (r: Request): SetattrIn => ({
  valid: r.u32(0), size: r.u64(16), atime: r.u64(32), mtime: r.u64(40), atimensec: r.u32(56),
  mtimensec: r.u32(60), mode: r.u32(68), uid: r.u32(76), gid: r.u32(80),
});

export const decodeOpen = (r: Request) => ({ flags: r.u32(0) });
export const decodeFh = (r: Request) => ({ fh: r.u64(0) });
export const decodeAccess = (r: Request) => ({ mask: r.u32(0) });
export const decodeInterrupt = (r: Request) => ({ unique: r.u64(0) });

export interface FallocateIn { fh: number; offset: number; length: number; mode: number }
export const decodeFallocate = (r: Request): FallocateIn => ({ fh: r.u64(0), offset: r.u64(8), length: r.u64(16), mode: r.u32(24) });

// ---- replies ----

export function outHeader(length: number, errno: number, unique: Uint8Array, at = 0): Uint8Array {
  return fillOutHeader(new Uint8Array(Size.OUT_HEADER), length, errno, unique, at);
}

/**
 * Writes a reply header into `header` (16 bytes, little-endian as the kernel reads it); the
 * request's unique id is the 8 bytes of `unique` from `at`.
 */
export function fillOutHeader(header: Uint8Array, length: number, errno: number, unique: Uint8Array, at = 0): Uint8Array {
  const e = -errno >>> 0;
  header[0] = length & 0xff;
  header[1] = (length >>> 8) & 0xff;
  header[2] = (length >>> 16) & 0xff;
  header[3] = length >>> 24;
  header[4] = e & 0xff;
  header[5] = (e >>> 8) & 0xff;
  header[6] = (e >>> 16) & 0xff;
  header[7] = e >>> 24;
  for (let i = 0; i < 8; i++) header[8 + i] = unique[at + i]!;
  return header;
}


function putAttr(view: DataView, at: number, a: Attr): void {
  setU64(view, at, a.ino);
  setU64(view, at + 8, a.size);
  setU64(view, at + 16, a.blocks);
  setU64(view, at + 24, Math.floor(a.atime));
  setU64(view, at + 32, Math.floor(a.mtime));
  setU64(view, at + 40, Math.floor(a.ctime));
  view.setUint32(at + 48, nanos(a.atime), true);
  view.setUint32(at + 52, nanos(a.mtime), true);
  view.setUint32(at + 56, nanos(a.ctime), true);
  view.setUint32(at + 60, a.mode, true);
  view.setUint32(at + 64, a.nlink, true);
  view.setUint32(at + 68, a.uid, true);
  view.setUint32(at + 72, a.gid, true);
  view.setUint32(at + 80, a.blksize, true);
}

/** Nanoseconds part of a time given in seconds. */
function nanos(seconds: number): number {
  return Math.min(999_999_999, Math.round((seconds - Math.floor(seconds)) * 1e9));
}

function body(size: number): [Uint8Array, DataView] {
  const bytes = new Uint8Array(size);
  return [bytes, new DataView(bytes.buffer)];
}

/** A validity time in seconds (fractions too, as -o entry_timeout=0.5 gives): seconds, then nanoseconds at `nanosAt`. */
function putValid(view: DataView, at: number, nanosAt: number, seconds: number): void {
  setU64(view, at, Math.floor(seconds));
  view.setUint32(nanosAt, nanos(seconds), true);
}

/** `fuse_entry_out`; validity times in seconds. */
export function entryOut(attr: Attr, entryValid: number, attrValid: number): Uint8Array {
  const [bytes, view] = body(Size.ENTRY_OUT);
  setU64(view, 0, attr.ino);
  putValid(view, 16, 32, entryValid);
  putValid(view, 24, 36, attrValid);
  putAttr(view, 40, attr);
  return bytes;
}

/** A name known absent, for the kernel to remember `valid` seconds (node id 0: a negative entry). */
export function negativeEntryOut(valid: number): Uint8Array {
  const [bytes, view] = body(Size.ENTRY_OUT);
  putValid(view, 16, 32, valid);
  return bytes;
}

export function attrOut(attr: Attr, attrValid: number): Uint8Array {
  const [bytes, view] = body(Size.ATTR_OUT);
  putValid(view, 0, 8, attrValid);
  putAttr(view, 16, attr);
  return bytes;
}

export interface InitOut {
  minor: number; maxReadahead: number; flags: number; maxBackground: number;
  congestionThreshold: number; maxWrite: number; maxPages: number;
}
export function initOut(o: InitOut, major: number): Uint8Array {
  const [bytes, view] = body(Size.INIT_OUT);
  view.setUint32(0, major, true);
  view.setUint32(4, o.minor, true);
  view.setUint32(8, o.maxReadahead, true);
  view.setUint32(12, o.flags, true);
  view.setUint16(16, o.maxBackground, true);
  view.setUint16(18, o.congestionThreshold, true);
  view.setUint32(20, o.maxWrite, true);
  view.setUint32(24, 1, true); // time_gran: nanoseconds
  view.setUint16(28, o.maxPages, true);
  return bytes;
}

export function openOut(fh: number, flags: number): Uint8Array {
  const [bytes, view] = body(Size.OPEN_OUT);
  setU64(view, 0, fh);
  view.setUint32(8, flags, true);
  return bytes;
}

export function writeOut(size: number): Uint8Array {
  const [bytes, view] = body(Size.WRITE_OUT);
  view.setUint32(0, size, true);
  return bytes;
}

export function statfsOut(s: StatfsOut): Uint8Array {
  const [bytes, view] = body(Size.STATFS_OUT);
  setU64(view, 0, s.blocks);
  setU64(view, 8, s.bfree);
  setU64(view, 16, s.bavail);
  setU64(view, 24, s.files);
  setU64(view, 32, s.ffree);
  view.setUint32(40, s.bsize, true);
  view.setUint32(44, 255, true); // namelen
  view.setUint32(48, s.frsize, true);
  return bytes;
}


/**
 * The `fuse_dirent` records of `entries` from index `offset` on that fit in `maxSize` bytes; each
 * record's `off` is the index of the entry after it, which the kernel sends back to continue.
 */
export function dirents(entries: readonly DirEntry[], offset: number, maxSize: number): Uint8Array {
  const records: Uint8Array[] = [];
  let total = 0;
  for (let i = offset; i < entries.length; i++) {
    const name = utf8Encode.encode(entries[i]!.name);
    const size = (Size.DIRENT_HEADER + name.length + 7) & ~7;
    if (total + size > maxSize) break;
    const [bytes, view] = body(size);
    setU64(view, 0, entries[i]!.ino);
    setU64(view, 8, i + 1);
    view.setUint32(16, name.length, true);
    view.setUint32(20, entries[i]!.type, true);
    bytes.set(name, Size.DIRENT_HEADER);
    records.push(bytes);
    total += size;
  }
  return concatBytes(records);
}
