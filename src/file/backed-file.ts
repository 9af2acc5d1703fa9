/**
 * The backed file as byte ranges over the top block store: splits reads and writes at block
 * boundaries, runs the pieces in parallel, and keeps writes to one block in arrival order (a
 * partial write is read-modify-write below the cache, so two of them must not interleave).
 */
import { Errno, FsError } from "../errors.ts";
import type { BlockStore, ImmediateStore } from "../store/block-store.ts";
import { DONE, zeroToNull } from "../store/block-store.ts";

interface Piece {
  block: number;
  /** Offset inside the block. */
  offset: number;
  length: number;
  /** Offset inside the caller's range. */
  at: number;
}

export class BackedFile {
  private readonly blockSize: number;
  /** Tail of the write chain of each block that has writes in flight. */
  private readonly writeChains = new Map<number, Promise<void>>();

  /** `now`: the top of the stack again, where it can answer at once (the block cache). */
  constructor(
    private readonly store: BlockStore,
    private readonly now?: ImmediateStore,
  ) {
    this.blockSize = store.blockSize;
  }

  /** The store's: a disk may grow while in use (s3backer resize). */
  get size(): number {
    return this.blockSize * this.store.numBlocks;
  }

  private pieces(offset: number, length: number): Piece[] {
    const pieces: Piece[] = [];
    let at = 0;
    while (at < length) {
      const pos = offset + at;
      const block = Math.floor(pos / this.blockSize);
      const inBlock = pos - block * this.blockSize;
      const n = Math.min(this.blockSize - inBlock, length - at);
      pieces.push({ block, offset: inBlock, length: n, at });
      at += n;
    }
    return pieces;
  }

  /**
   * The bytes of [offset, offset+length) clipped to the file. Within one block, or when every block
   * is there at once (cached), they are the store's own bytes (no copy). Otherwise each piece is
   * copied out in the turn it arrives: a store's bytes are good for that turn only, and the pieces
   * arrive in different turns.
   */
  read(offset: number, length: number): Promise<Uint8Array[]> {
    const end = Math.min(this.size, offset + length);
    if (offset >= end) return Promise.resolve([]);
    const pieces = this.pieces(offset, end - offset);
    if (pieces.length === 1) return this.readPiece(pieces[0]!).then((bytes) => [bytes]);
    const now = this.now;
    const ready = now ? pieces.map((p) => now.readBlockPartNow(p.block, p.offset, p.length)) : [];
    if (now && ready.every((bytes) => bytes !== undefined)) return Promise.resolve(ready as Uint8Array[]);
    const out = new Uint8Array(end - offset);
    return Promise.all(
      pieces.map((p, i) => {
        const bytes = ready[i];
        if (bytes) return void out.set(bytes, p.at);
        return this.readPiece(p).then((later) => out.set(later, p.at));
      }),
    ).then(() => [out]);
  }

  /**
   * The read answered at once when the store can (within one block, and cached), else undefined:
   * then `read` does it.
   */
  readNow(offset: number, length: number): Uint8Array[] | undefined {
    const inBlock = this.oneBlock(offset, length);
    if (inBlock === undefined || !this.now) return undefined;
    const bytes = this.now.readBlockPartNow(Math.floor(offset / this.blockSize), inBlock, length);
    return bytes && [bytes];
  }

  /**
   * The write done at once when the store can (within one block, not all of it, with no earlier
   * write to that block still in flight): its length, else undefined: then `write` does it.
   */
  writeNow(offset: number, data: Uint8Array): number | undefined {
    const inBlock = this.oneBlock(offset, data.length);
    // A whole block goes through write(), which recognises the zero block.
    if (inBlock === undefined || data.length === this.blockSize || !this.now) return undefined;
    const block = Math.floor(offset / this.blockSize);
    if (this.writeChains.has(block)) return undefined;
    return this.now.writeBlockPartNow(block, inBlock, data) ? data.length : undefined;
  }

  /** The offset inside its block of a non-empty range that lies within one block of the file, else undefined. */
  private oneBlock(offset: number, length: number): number | undefined {
    if (length === 0 || offset + length > this.size) return undefined;
    const inBlock = offset % this.blockSize;
    return inBlock + length <= this.blockSize ? inBlock : undefined;
  }

  private readPiece(p: Piece): Promise<Uint8Array> {
    return p.length === this.blockSize ? this.store.readBlock(p.block) : this.store.readBlockPart(p.block, p.offset, p.length);
  }

  /** Writes `data` at `offset`; returns how many bytes fit before the end of the file. */
  write(offset: number, data: Uint8Array): Promise<number> {
    if (data.length === 0) return Promise.resolve(0);
    if (offset >= this.size) return Promise.reject(new FsError(Errno.ENOSPC, `write at ${offset} is past the end of the file`));
    const length = Math.min(data.length, this.size - offset);
    const pieces = this.pieces(offset, length);
    const done = pieces.length === 1 ? this.writePiece(pieces[0]!, data) : Promise.all(pieces.map((p) => this.writePiece(p, data)));
    return done.then(() => length);
  }

  private writePiece(p: Piece, data: Uint8Array): Promise<void> {
    const bytes = p.at === 0 && p.length === data.length ? data : data.subarray(p.at, p.at + p.length);
    return this.inOrder(p.block, () =>
      p.length === this.blockSize ? this.store.writeBlock(p.block, zeroToNull(bytes)) : this.store.writeBlockPart(p.block, p.offset, bytes),
    );
  }

  /** Zeroes [offset, offset+length): whole blocks are deleted, the edges are overwritten with zeros. */
  async zeroRange(offset: number, length: number): Promise<void> {
    const end = Math.min(this.size, offset + length);
    if (offset >= end) return;
    const zeros = new Uint8Array(Math.min(this.blockSize, end - offset));
    await Promise.all(
      this.pieces(offset, end - offset).map((p) =>
        this.inOrder(p.block, () =>
          p.length === this.blockSize
            ? this.store.writeBlock(p.block, null)
            : this.store.writeBlockPart(p.block, p.offset, zeros.subarray(0, p.length)),
        ),
      ),
    );
  }

  /**
   * Lets go of [offset, offset+length): the whole blocks in it are deleted (read as zeros from
   * then on); the bytes of partly covered blocks at its edges stay as they are.
   */
  async trim(offset: number, length: number): Promise<void> {
    const end = Math.min(this.size, offset + length);
    const first = Math.ceil(offset / this.blockSize);
    const last = Math.floor(end / this.blockSize);
    const writes: Promise<void>[] = [];
    for (let block = first; block < last; block++) writes.push(this.inOrder(block, () => this.store.writeBlock(block, null)));
    await Promise.all(writes);
  }

  /** Brings the blocks of [offset, offset+length) into the cache below, a few at a time; returns nothing. */
  async prefetch(offset: number, length: number, parallel: number): Promise<void> {
    const end = Math.min(this.size, offset + length);
    let next = Math.floor(offset / this.blockSize);
    const last = Math.ceil(end / this.blockSize);
    const fetch = async () => {
      while (next < last) await this.store.readBlock(next++);
    };
    await Promise.all(Array.from({ length: Math.min(parallel, last - next) }, fetch));
  }

  private inOrder(block: number, write: () => Promise<void>): Promise<void> {
    const previous = this.writeChains.get(block);
    const mine = previous ? previous.then(write, write) : write();
    if (mine === DONE) return mine; // finished at once: nothing for a later write to wait for
    // The chain's tail settles (never rejects) when this write is done, then forgets itself if last.
    const tail: Promise<void> = mine.then(
      () => this.untail(block, tail),
      () => this.untail(block, tail),
    );
    this.writeChains.set(block, tail);
    return mine;
  }

  private untail(block: number, tail: Promise<void>): void {
    if (this.writeChains.get(block) === tail) this.writeChains.delete(block);
  }
}
