/**
 * Where the cache keeps a block's bytes: the one interface, and its memory-only kind.
 *
 * With --blockCacheFile the kind is file-residency.ts; the cache's paths use the interface alone,
 * and never ask whether there is a file.
 */
import { DONE } from "../block-store.ts";
import type { Entry, ResidencyColumns } from "./entries.ts";
import type { Room } from "./lending.ts";
import type { Stat } from "../../util/stat-group.ts";

export interface Residency extends ResidencyColumns {
  /** Most blocks whose bytes are held in memory (for the memory budget). */
  readonly memoryCapacity: number;
  /** Each write-back in flight takes a block's room in the cache (see Entries.evict). */
  readonly uploadsTakeRoom: boolean;
  /** Sets an entry's bytes in memory (null: the zero block, which takes none). */
  setBytes(entry: Entry, data: Uint8Array | null): void;
  /** The entry was used: its bytes leave memory last. */
  touched(entry: Entry): void;
  /** The entry left the cache (its bytes are let go by the caller). */
  forgotten(entry: Entry): void;
  /** A read from the store below starts or ends: bytes on their way into memory. */
  fetchStarted(): void;
  fetchEnded(): void;
  /**
   * Makes room in memory for `n` more blocks; false if there is not enough now. Blocks read ahead
   * and not read yet go last (`evenAhead`: they may go at all): their reader is on its way.
   */
  memoryRoom(n: number, evenAhead?: boolean): boolean;
  /** The entry's bytes changed (written, or loaded). */
  changed(entry: Entry): void;
  /** Reads the bytes of an entry that are in the file alone back into memory (undefined: the entry changed meanwhile). */
  pageIn(entry: Entry): Promise<Uint8Array | undefined>;
  /** Reads the bytes of an entry that are in the file alone into `into`, for an upload; false if the entry changed meanwhile. */
  readBack(entry: Entry, into: Uint8Array): Promise<boolean>;
  /** The MD5 hex an upload of `data` hands down, when the residency needs it too (undefined: not needed). */
  uploadMd5(data: Uint8Array): Promise<string> | undefined;
  /** The store below has `version` of the entry now, whose bytes were `data` (the upload's copy, if it had one). */
  stored(entry: Entry, version: number, data: Uint8Array | null): void;
  /** Keeps the newest bytes of the dirty blocks (the mount gave up storing them): how many are kept, and how many could not be. */
  keepUnstored(dirty: ReadonlySet<Entry>): Promise<{ kept: number; lost: number }>;
  /** Saves what is still to be saved, and lets go of the file. */
  close(): Promise<void>;
  announceToken(token: number): void;
  setToken(token: number): void;
  /** Adds its own figures to the cache's stats. */
  stats(values: Stat[]): void;
}

/**
 * Bytes in memory alone: the cache size bounds them, and each upload in flight takes a block's
 * room, since the HTTP client holds its own copy of the bytes.
 */
export class MemoryResidency implements Residency {
  readonly uploadsTakeRoom = true;
  readonly memoryCounted = undefined;
  readonly memoryHeld = 0;
  readonly memoryLimit = Infinity;
  readonly unsaved: Iterable<Entry> = [];
  readonly fileWork = 0;

  constructor(private readonly host: { readonly o: { size: number }; readonly room: Room }) {}

  get memoryCapacity(): number {
    return this.host.o.size;
  }

  inMemory(entry: Entry): boolean {
    return entry.data instanceof Uint8Array;
  }

  setBytes(entry: Entry, data: Uint8Array | null): void {
    const freed = data === null && entry.data instanceof Uint8Array;
    entry.data = data;
    if (freed) this.host.room.released();
  }

  forgotten(entry: Entry): void {
    if (entry.data instanceof Uint8Array) this.host.room.released();
  }

  memoryRoom(): boolean {
    return true;
  }

  touched(): void {}
  fetchStarted(): void {}
  fetchEnded(): void {}
  changed(): void {}
  stored(): void {}
  announceToken(): void {}
  setToken(): void {}
  stats(): void {}

  slotFree(): undefined {
    return undefined;
  }

  pageIn(entry: Entry): Promise<Uint8Array | undefined> {
    throw new Error(`block cache: block ${entry.block} paged in with no cache file`);
  }

  readBack(entry: Entry): Promise<boolean> {
    throw new Error(`block cache: block ${entry.block} read back with no cache file`);
  }

  uploadMd5(): undefined {
    return undefined;
  }

  keepUnstored(dirty: ReadonlySet<Entry>): Promise<{ kept: number; lost: number }> {
    return Promise.resolve({ kept: 0, lost: dirty.size });
  }

  close(): Promise<void> {
    return DONE;
  }
}
