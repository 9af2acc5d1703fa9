/**
 * The filesystem itself: a root directory holding the backed file and the stats file. Pure
 * semantics: no protocol bytes here (those are wire.ts) and no block arithmetic (backed-file.ts).
 */
import type { BackedFile } from "../file/backed-file.ts";
import { Errno, FsError } from "../errors.ts";
import type { Attr, DirEntry, FuseOps, Opened, SetattrIn, StatfsOut } from "./ops.ts";
import { DT_DIR, DT_REG, Falloc, O_ACCMODE, O_DIRECT, O_RDONLY, O_WRONLY, OpenFlag, ROOT_INODE, S_IFDIR, S_IFREG, SetattrValid, W_OK } from "./kernel-abi.ts";

export const FILE_INODE = 2;
export const STATS_INODE = 3;

export interface FilesystemOptions {
  filename: string;
  /** Empty: no stats file. */
  statsFilename: string;
  fileMode: number;
  uid: number;
  gid: number;
  readOnly: boolean;
  directIO: boolean;
  blockSize: number;
  /** -o entry_timeout, attr_timeout, negative_timeout (seconds); undefined: ours. */
  entryTimeout?: number;
  attrTimeout?: number;
  negativeTimeout?: number;
  /** -o umask: every inode's permissions are 0777 & ~umask, whatever else they would be (libfuse's meaning). */
  umask?: number;
  /** The stats file's text at this moment. */
  statsText(): string;
  resetStats(): void;
  /** Makes every completed write durable (FSYNC, and FLUSH on close). */
  flush(): Promise<void>;
}

const now = () => Date.now() / 1000;
const ATTR_VALID = 1;
const utf8 = new TextEncoder();

export class SingleFileFs implements FuseOps {
  private readonly started = now();
  private fileAtime = this.started;
  private fileMtime = this.started;
  private fileCtime = this.started;
  private fileMode: number;
  private uid: number;
  private gid: number;
  /** Stats snapshots of open handles: a reader sees one consistent text. */
  private readonly statsHandles = new Map<number, Uint8Array>();
  /** Open handles of the backed file: whether the kernel's page cache serves each (see fileOpenFlags). */
  private readonly fileHandles = new Map<number, "cached" | "direct">();
  /** A direct handle was opened since the kernel last dropped the file's page cache. */
  private pageCacheStale = false;
  private nextHandle = 1;

  constructor(
    private readonly file: BackedFile,
    private readonly o: FilesystemOptions,
  ) {
    this.fileMode = o.fileMode;
    this.uid = o.uid;
    this.gid = o.gid;
  }

  /** How long the kernel may cache a name, and that a name is absent, in seconds. */
  get nameValidSeconds(): number {
    return this.o.entryTimeout ?? ATTR_VALID;
  }
  get negativeValidSeconds(): number {
    return this.o.negativeTimeout ?? 0;
  }

  /** How long the kernel may cache an inode's attributes, in seconds (never the stats file's: its size changes). */
  attrValidSeconds(ino: number): number {
    return ino === STATS_INODE ? 0 : (this.o.attrTimeout ?? ATTR_VALID);
  }

  lookup(parent: number, name: string): Attr {
    if (parent !== ROOT_INODE) throw new FsError(Errno.ENOTDIR, "not a directory");
    if (name === this.o.filename) return this.getattr(FILE_INODE);
    if (this.o.statsFilename !== "" && name === this.o.statsFilename) return this.getattr(STATS_INODE);
    throw new FsError(Errno.ENOENT, `no ${name}`);
  }

  getattr(ino: number): Attr {
    const attr = this.attrOf(ino);
    const umask = this.o.umask;
    if (umask !== undefined) attr.mode = (attr.mode & ~0o7777) | (0o777 & ~umask);
    return attr;
  }

  private attrOf(ino: number): Attr {
    const base = { uid: this.uid, gid: this.gid, blksize: this.o.blockSize };
    switch (ino) {
      case ROOT_INODE:
        return { ...base, ino, size: 0, blocks: 0, mode: S_IFDIR | 0o755, nlink: 2, atime: this.started, mtime: this.started, ctime: this.started };
      case FILE_INODE:
        return {
          ...base, ino, size: this.file.size, blocks: Math.ceil(this.file.size / 512), mode: S_IFREG | this.fileMode, nlink: 1,
          atime: this.fileAtime, mtime: this.fileMtime, ctime: this.fileCtime,
        };
      case STATS_INODE:
        if (this.o.statsFilename === "") break;
        return {
          ...base, ino, size: utf8.encode(this.o.statsText()).length, blocks: 0, mode: S_IFREG | 0o444, nlink: 1,
          atime: now(), mtime: now(), ctime: this.started,
        };
    }
    throw new FsError(Errno.ENOENT, `no inode ${ino}`);
  }

  /** Mode, owner and times of the backed file may change (in memory only); its size may not. */
  setattr(ino: number, s: SetattrIn): Attr {
    if (ino !== FILE_INODE) throw new FsError(Errno.EPERM, "only the backed file's attributes can change");
    if (s.valid & SetattrValid.SIZE && s.size !== this.file.size) {
      throw new FsError(Errno.EPERM, `the backed file has a fixed size of ${this.file.size} bytes (truncate refused)`);
    }
    if (this.o.readOnly && s.valid & (SetattrValid.MODE | SetattrValid.UID | SetattrValid.GID | SetattrValid.ATIME | SetattrValid.MTIME)) {
      throw new FsError(Errno.EROFS, "read-only");
    }
    const t = now();
    if (s.valid & SetattrValid.MODE) this.fileMode = s.mode & 0o7777;
    if (s.valid & SetattrValid.UID) this.uid = s.uid;
    if (s.valid & SetattrValid.GID) this.gid = s.gid;
    if (s.valid & SetattrValid.ATIME) this.fileAtime = s.valid & SetattrValid.ATIME_NOW ? t : s.atime + s.atimensec / 1e9;
    if (s.valid & SetattrValid.MTIME) this.fileMtime = s.valid & SetattrValid.MTIME_NOW ? t : s.mtime + s.mtimensec / 1e9;
    this.fileCtime = t;
    return this.getattr(FILE_INODE);
  }

  open(ino: number, flags: number): Opened {
    if (ino === FILE_INODE) {
      if (this.o.readOnly && (flags & O_ACCMODE) !== O_RDONLY) throw new FsError(Errno.EROFS, "read-only");
      this.fileAtime = now();
      const fh = this.nextHandle++;
      return { fh, flags: this.fileOpenFlags(fh, flags) | OpenFlag.PARALLEL_DIRECT_WRITES };
    }
    if (ino === STATS_INODE && this.o.statsFilename !== "") {
      if ((flags & O_ACCMODE) !== O_RDONLY) throw new FsError(Errno.EACCES, "the stats file is read-only");
      const fh = this.nextHandle++;
      this.statsHandles.set(fh, utf8.encode(this.o.statsText()));
      return { fh, flags: OpenFlag.DIRECT_IO };
    }
    throw new FsError(Errno.EISDIR, "not a file");
  }

  /** The bytes at once when the store has them (a cache hit), else a promise of them. */
  read(ino: number, fh: number, offset: number, size: number): Uint8Array[] | Promise<Uint8Array[]> {
    if (ino === STATS_INODE) {
      const text = this.statsHandles.get(fh);
      if (!text) throw new FsError(Errno.EBADF, "stats file not open");
      return [text.subarray(offset, offset + size)];
    }
    this.fileAtime = now();
    return this.file.readNow(offset, size) ?? this.file.read(offset, size);
  }

  /** How many bytes were written: at once when the write landed without a wait, else a promise. */
  write(ino: number, offset: number, data: Uint8Array): number | Promise<number> {
    if (ino !== FILE_INODE) throw new FsError(Errno.EBADF, "not writable");
    if (this.o.readOnly) throw new FsError(Errno.EROFS, "read-only");
    this.fileMtime = now();
    return this.file.writeNow(offset, data) ?? this.file.write(offset, data);
  }

  release(ino: number, fh: number): void {
    if (ino === STATS_INODE) this.statsHandles.delete(fh);
    if (ino === FILE_INODE) this.fileHandles.delete(fh);
  }

  /**
   * Whether the kernel's page cache serves a new handle of the backed file. With --directIO never.
   * Otherwise it serves readers (read-ahead, repeated small reads) and, since only this process
   * writes the disk, is kept across opens. Two kinds of open go around it:
   * - write-only: it never reads, and writing through the page cache would make the kernel
   *   allocate a second copy of every byte written next to the block cache (a gigabyte written by
   *   dd: a gigabyte of fresh kernel memory);
   * - O_DIRECT: it asked for that, and on a cached handle the kernel runs its direct writes one at
   *   a time: one write waiting for a block from S3 holds up every other writer and reader.
   * The two must not overlap: before the fix of 2025 (6.6 stable and later carry it) the kernel
   * left cached pages stale after a direct write. So such an open is direct only while no cached
   * handle is open, every open is direct while a direct handle is, and the first cached open after
   * one drops the page cache (no KEEP_CACHE).
   */
  private fileOpenFlags(fh: number, flags: number): number {
    const open = [...this.fileHandles.values()];
    const wantsDirect = (flags & O_ACCMODE) === O_WRONLY || (flags & O_DIRECT) !== 0;
    const direct = this.o.directIO || open.includes("direct") || (wantsDirect && !open.includes("cached"));
    this.fileHandles.set(fh, direct ? "direct" : "cached");
    if (direct) {
      this.pageCacheStale = true;
      return OpenFlag.DIRECT_IO;
    }
    if (!this.pageCacheStale) return OpenFlag.KEEP_CACHE;
    this.pageCacheStale = false;
    return 0;
  }

  async fsync(ino: number): Promise<void> {
    if (ino === FILE_INODE && !this.o.readOnly) await this.o.flush();
  }

  readdir(ino: number): DirEntry[] {
    if (ino !== ROOT_INODE) throw new FsError(Errno.ENOTDIR, "not a directory");
    const entries: DirEntry[] = [
      { ino: ROOT_INODE, name: ".", type: DT_DIR },
      { ino: ROOT_INODE, name: "..", type: DT_DIR },
      { ino: FILE_INODE, name: this.o.filename, type: DT_REG },
    ];
    if (this.o.statsFilename !== "") entries.push({ ino: STATS_INODE, name: this.o.statsFilename, type: DT_REG });
    return entries;
  }

  statfs(): StatfsOut {
    const blocks = this.file.size / this.o.blockSize;
    return { blocks, bfree: 0, bavail: 0, files: 3, ffree: 0, bsize: this.o.blockSize, frsize: this.o.blockSize };
  }

  access(ino: number, mask: number): void {
    this.getattr(ino);
    if (this.o.readOnly && ino === FILE_INODE && mask & W_OK) throw new FsError(Errno.EROFS, "read-only");
  }

  /** Deleting the stats file resets the counters (the file stays); nothing else can be deleted. */
  unlink(parent: number, name: string): void {
    if (parent === ROOT_INODE && this.o.statsFilename !== "" && name === this.o.statsFilename) {
      this.o.resetStats();
      return;
    }
    throw new FsError(Errno.EOPNOTSUPP, `cannot remove ${name}`);
  }

  /**
   * PUNCH_HOLE and ZERO_RANGE (with KEEP_SIZE) zero the range: whole blocks in it are deleted, which
   * is how discard on a loop device frees objects. Plain allocation inside the file has nothing to do.
   */
  async fallocate(ino: number, offset: number, length: number, mode: number): Promise<void> {
    if (ino !== FILE_INODE) throw new FsError(Errno.EOPNOTSUPP, "not the backed file");
    if (offset + length > this.file.size && !(mode & Falloc.KEEP_SIZE)) throw new FsError(Errno.ENOSPC, "past the end of the file");
    if (mode === 0 || mode === Falloc.KEEP_SIZE) return;
    const zeroing = mode & (Falloc.PUNCH_HOLE | Falloc.ZERO_RANGE);
    if (!zeroing || mode & ~(Falloc.KEEP_SIZE | Falloc.PUNCH_HOLE | Falloc.ZERO_RANGE)) {
      throw new FsError(Errno.EOPNOTSUPP, `fallocate mode ${mode} not supported`);
    }
    if (this.o.readOnly) throw new FsError(Errno.EROFS, "read-only");
    await this.file.zeroRange(offset, length);
    this.fileMtime = now();
  }
}
