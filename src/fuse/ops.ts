/**
 * What the FUSE session needs of a filesystem, in plain values: the session decodes requests into
 * these and encodes the answers (wire.ts), the filesystem implements the operations and knows no
 * protocol bytes. Errors are thrown as FsError with the errno the kernel should see. Reads and
 * writes may answer at once (a cache hit) or with a promise.
 */

export interface Attr {
  ino: number; size: number; blocks: number; mode: number; nlink: number; uid: number; gid: number;
  blksize: number; atime: number; mtime: number; ctime: number;
}

export interface SetattrIn {
  valid: number; size: number; atime: number; mtime: number; atimensec: number; mtimensec: number;
  mode: number; uid: number; gid: number;
}

export interface StatfsOut { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; frsize: number }

export interface DirEntry { ino: number; name: string; type: number }

export interface Opened {
  fh: number;
  /** FOPEN_* flags for the kernel. */
  flags: number;
}

export interface FuseOps {
  /** How long the kernel may cache a name, that a name is absent (0: not at all), and an inode's attributes, in seconds. */
  readonly nameValidSeconds: number;
  readonly negativeValidSeconds: number;
  attrValidSeconds(ino: number): number;
  lookup(parent: number, name: string): Attr;
  getattr(ino: number): Attr;
  setattr(ino: number, s: SetattrIn): Attr;
  open(ino: number, flags: number): Opened;
  read(ino: number, fh: number, offset: number, size: number): Uint8Array[] | Promise<Uint8Array[]>;
  write(ino: number, offset: number, data: Uint8Array): number | Promise<number>;
  release(ino: number, fh: number): void;
  fsync(ino: number): Promise<void>;
  readdir(ino: number): DirEntry[];
  statfs(): StatfsOut;
  access(ino: number, mask: number): void;
  unlink(parent: number, name: string): void;
  fallocate(ino: number, offset: number, length: number, mode: number): Promise<void>;
}
