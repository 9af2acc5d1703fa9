/**
 * What the NBD server needs of the disk it exports: byte ranges, durability, and which ranges
 * read as zeros. The app layer implements it over the file layer; nothing here knows of blocks in
 * S3 or of caches.
 */
import type { Extent } from "../file/extents.ts";

export interface NbdDevice {
  readonly size: number;
  /** The preferred request size: one block of the disk. */
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** The bytes of the range, valid until the caller's next turn of the event loop. */
  read(offset: number, length: number): Promise<Uint8Array[]>;
  write(offset: number, data: Uint8Array): Promise<number>;
  /** Returns once every write completed before the call is stored durably. */
  flush(): Promise<void>;
  /** The whole blocks of the range are freed (they read as zeros); its edges are left alone. */
  trim(offset: number, length: number): Promise<void>;
  /** The range reads as zeros afterwards; whole blocks are freed. */
  zero(offset: number, length: number): Promise<void>;
  /** The range is fetched into the cache. */
  prefetch(offset: number, length: number): Promise<void>;
  /** At most `max` extents from `offset`, covering at most `length` bytes. */
  extents(offset: number, length: number, max: number): Extent[];
}
