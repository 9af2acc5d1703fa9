/**
 * The FUSE kernel ABI (include/linux/fuse.h, protocol 7.x): opcodes, flags and struct sizes.
 * Only constants live here; decoding and encoding are in wire.ts, the filesystem in filesystem.ts.
 */

export const FUSE_KERNEL_VERSION = 7;
/** The minor version we speak: 7.31 has max_pages and everything we use. */
export const OUR_MINOR = 31;
/** Oldest kernel minor we accept: 7.28 introduced FUSE_MAX_PAGES. */
export const MIN_KERNEL_MINOR = 28;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  UNLINK: 10,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  ACCESS: 34,
  INTERRUPT: 36,
  DESTROY: 38,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
} as const;

/** Flags of fuse_init_in / fuse_init_out. */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  BIG_WRITES: 1 << 5,
  ASYNC_DIO: 1 << 15,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
} as const;

/** Flags of fuse_open_out. */
export const OpenFlag = {
  DIRECT_IO: 1 << 0,
  KEEP_CACHE: 1 << 1,
  PARALLEL_DIRECT_WRITES: 1 << 6,
} as const;

/** Bits of fuse_setattr_in.valid. */
export const SetattrValid = {
  MODE: 1 << 0,
  UID: 1 << 1,
  GID: 1 << 2,
  SIZE: 1 << 3,
  ATIME: 1 << 4,
  MTIME: 1 << 5,
  FH: 1 << 6,
  ATIME_NOW: 1 << 7,
  MTIME_NOW: 1 << 8,
  LOCKOWNER: 1 << 9,
  CTIME: 1 << 10,
  KILL_SUIDGID: 1 << 11,
} as const;

export const Falloc = {
  KEEP_SIZE: 0x01,
  PUNCH_HOLE: 0x02,
  ZERO_RANGE: 0x10,
} as const;

export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const DT_DIR = 4;
export const DT_REG = 8;

export const W_OK = 2;

/** The access mode of an OPEN's flags (open(2)), and O_DIRECT (whose value depends on the CPU). */
export const O_ACCMODE = 3;
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_DIRECT = process.arch === "arm64" || process.arch === "arm" ? 0o200000 : 0o40000;

/** Byte sizes of the structs we read or write. */
export const Size = {
  IN_HEADER: 40,
  OUT_HEADER: 16,
  ATTR: 88,
  ENTRY_OUT: 128,
  ATTR_OUT: 104,
  INIT_OUT: 64,
  OPEN_OUT: 16,
  WRITE_IN: 40,
  WRITE_OUT: 8,
  STATFS_OUT: 80,
  DIRENT_HEADER: 24,
} as const;

/** The kernel refuses a device read whose buffer is smaller than this, whatever max_write is. */
export const MIN_READ_BUFFER = 8192;

export const ROOT_INODE = 1;

/** ioctl on a new /dev/fuse descriptor that attaches it to an existing connection: _IOR(229, 0, uint32_t). */
export const FUSE_DEV_IOC_CLONE = 0x8004e500;
