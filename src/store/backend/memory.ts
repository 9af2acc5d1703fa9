/** Blocks in RAM: for benchmarks of the FUSE path and for tests. Gone at unmount. */
import { md5Hex } from "../../util/md5.ts";
import type { Backend, StatGroup } from "../block-store.ts";
import { Counters } from "../counters.ts";
import { readPartOf } from "../partial.ts";
import { isAllZero } from "../block-store.ts";

export class MemoryStore implements Backend {
  private readonly blocks = new Map<number, Uint8Array>();
  private readonly zero: Uint8Array;
  private readonly counters = new Counters(["reads", "zero reads", "writes", "deletes"] as const);
  readonly freshReads = false; // reads return the stored buffers themselves

  constructor(
    readonly blockSize: number,
    readonly numBlocks: number,
  ) {
    this.zero = new Uint8Array(blockSize);
  }

  async readBlock(block: number): Promise<Uint8Array> {
    const data = this.blocks.get(block);
    this.counters.add(data ? "reads" : "zero reads");
    return data ?? this.zero;
  }

  async storedMd5(block: number): Promise<string | null> {
    const data = this.blocks.get(block);
    return data ? md5Hex(data) : null;
  }

  readBlockPart(block: number, offset: number, length: number) {
    return readPartOf(this, block, offset, length);
  }

  async writeBlock(block: number, data: Uint8Array | null): Promise<void> {
    if (data) {
      this.counters.add("writes");
      this.blocks.set(block, data.slice());
    } else {
      this.counters.add("deletes");
      this.blocks.delete(block);
    }
  }

  /** In place, like pwrite on a file: no read-modify-write copy of the whole block. */
  async writeBlockPart(block: number, offset: number, data: Uint8Array): Promise<void> {
    const existing = this.blocks.get(block);
    if (!existing) {
      if (isAllZero(data)) return;
      const fresh = new Uint8Array(this.blockSize);
      fresh.set(data, offset);
      this.blocks.set(block, fresh);
    } else {
      existing.set(data, offset);
      if (isAllZero(data) && isAllZero(existing)) this.blocks.delete(block);
    }
    this.counters.add("writes");
  }

  async listBlocks(found: (block: number) => void): Promise<void> {
    for (const block of this.blocks.keys()) found(block);
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.blocks.clear();
  }

  stats(): StatGroup[] {
    return [{ layer: "memory", values: [...this.counters.entries(), ["blocks stored", this.blocks.size]] }];
  }

  resetStats(): void {
    this.counters.reset();
  }
}
