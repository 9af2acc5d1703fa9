/**
 * The one interface of the store stack. Each layer implements it and wraps the next, as in the
 * original s3backer; the FUSE side only ever sees the top of the stack.
 *
 * Conventions every layer keeps:
 * - A block that does not exist reads as zeros, and writing the zero block (`null`) deletes it.
 * - Bytes handed to `writeBlock`/`writeBlockPart` are borrowed until the promise settles: a layer
 *   that keeps them must copy. Bytes returned by a read must not be modified by the caller, and
 *   stay valid only until the caller's next turn of the event loop (the FUSE reply is written in
 *   the same turn, with no copy): a caller that keeps them longer must copy.
 * - The caller (the FUSE file layer) serialises writes to one block; reads may run alongside.
 * - Failures are thrown as `FsError` with the errno the kernel should see.
 */
import type { StatGroup } from "../util/stat-group.ts";


export interface BlockStore {
  readonly blockSize: number;
  readonly numBlocks: number;
  /**
   * True when the non-zero bytes a read returns are new and kept by nobody else, so the caller
   * may keep and change them (the block cache then needs no copy before a write).
   */
  readonly freshReads: boolean;

  readBlock(block: number): Promise<Uint8Array>;
  readBlockPart(block: number, offset: number, length: number): Promise<Uint8Array>;
  /**
   * `null` is the all-zero block: the block is deleted. `md5` is the MD5 hex of `data` when the
   * caller has taken it: a layer below that needs it uses it instead of hashing the bytes again.
   */
  writeBlock(block: number, data: Uint8Array | null, md5?: string): Promise<void>;
  writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void>;

  /** Calls `found` for every block that exists (in no particular order). */
  listBlocks(found: (block: number) => void): Promise<void>;
  /** Returns once every write that completed before the call is durable in the backing storage. */
  flush(): Promise<void>;
  /** Flushes and releases everything; the store is unusable afterwards. */
  close(): Promise<void>;

  /** Counters of this layer followed by those of the layers below it. */
  stats(): StatGroup[];
}

/**
 * The bottom of the block tier: the codec over an object store. Its reads and writes also say the
 * MD5 of the object as stored, which the consistency guard above compares.
 */
export interface VerifiedStore extends BlockStore {
  /** A block's plain bytes (null: no object) and the MD5 hex of the object as stored. */
  readVerified(block: number): Promise<{ data: Uint8Array | null; md5: string | null }>;
  /** Stores a block (null: deletes it) and returns the MD5 hex of the object now stored (null: none). */
  writeVerified(block: number, data: Uint8Array | null, md5?: string): Promise<string | null>;
  /** The MD5 hex of the block's plain bytes as stored, or null when there is none (to check a reloaded cache). */
  storedMd5(block: number): Promise<string | null>;
}

/**
 * A store that can often answer at once (the block cache: a hit, a write that lands without a
 * wait): the bytes, or true once written; undefined or false when the caller must use the async
 * method. Not part of every layer: at tens of thousands of small requests a second, a promise per
 * request is much of their cost, and only the top of the stack can save it.
 */
export interface ImmediateStore {
  readBlockPartNow(block: number, offset: number, length: number): Uint8Array | undefined;
  writeBlockPartNow(block: number, offset: number, data: Uint8Array): boolean;
}

/** A settled promise for operations that finished at once (callers may test for it). */
export const DONE: Promise<void> = Promise.resolve();

/**
 * How many zero-block writes (deletes) a layer sends down at once: enough for a few bulk
 * deletes of 1000 objects each, which the S3 store gathers them into.
 */
export const ZERO_WRITES_IN_FLIGHT = 4096;

const zeroBlocks = new Map<number, Uint8Array>();

/**
 * The one all-zero block of this size, which the layers answer for blocks that hold nothing.
 * Nothing writes into it or pools it; `isAllZero` knows it without reading its bytes.
 */
export function zeroBlock(size: number): Uint8Array {
  let zero = zeroBlocks.get(size);
  if (!zero) {
    // Written once so that its pages are its own: pages never written map the kernel's shared zero
    // page, which the kernel cannot pin the fast way: every reply sent from them cost 1.5x the CPU.
    zeroBlocks.set(size, (zero = new Uint8Array(size).fill(0)));
  }
  return zero;
}

/** True when every byte is zero; reads four bytes at a time where the alignment allows. */
export function isAllZero(data: Uint8Array): boolean {
  if (zeroBlocks.get(data.length) === data) return true;
  let i = 0;
  if (data.byteOffset % 4 === 0) {
    const words = new Uint32Array(data.buffer, data.byteOffset, data.length >>> 2);
    for (let w = 0; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length * 4;
  }
  for (; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/** `null` for an all-zero block (to be deleted), else the block itself. */
export function zeroToNull(data: Uint8Array): Uint8Array | null {
  return isAllZero(data) ? null : data;
}
