/**
 * What every wrapping layer of the stack shares: its geometry is the inner store's, partial reads
 * and writes go through its own whole-block operations unless it does better, listing, flushing
 * and closing pass down, and its counters come before those of the layers below.
 */
import type { BlockStore } from "./block-store.ts";
import type { StatGroup } from "../util/stat-group.ts";
import { readPartOf, writePartOf } from "./partial.ts";

export abstract class Layer<Inner extends BlockStore = BlockStore> implements BlockStore {
  readonly blockSize: number;

  constructor(protected readonly inner: Inner) {
    this.blockSize = inner.blockSize;
  }

  /** The inner store's: a disk may grow while in use. */
  get numBlocks(): number {
    return this.inner.numBlocks;
  }

  abstract readBlock(block: number): Promise<Uint8Array>;
  abstract writeBlock(block: number, data: Uint8Array | null, md5?: string): Promise<void>;
  /** This layer's own counters. */
  protected abstract ownStats(): StatGroup;

  get freshReads(): boolean {
    return this.inner.freshReads;
  }

  readBlockPart(block: number, offset: number, length: number): Promise<Uint8Array> {
    return readPartOf(this, block, offset, length);
  }

  writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    return writePartOf(this, block, offset, data);
  }

  listBlocks(found: (block: number) => void): Promise<void> {
    return this.inner.listBlocks(found);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  stats(): StatGroup[] {
    return [this.ownStats(), ...this.inner.stats()];
  }
}
