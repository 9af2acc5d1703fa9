/**
 * The --test mode faults of the original, as an object store over the real one: --test-errors
 * fails one read or write in a hundred with EIO, --test-delays holds each read and write back
 * 0 to 200 ms, --test-discard keeps nothing (writes vanish, every block reads as absent, and no
 * file is touched), to measure the layers above alone.
 */
import { Errno, FsError } from "../errors.ts";
import type { StatGroup } from "../util/stat-group.ts";
import { Counters } from "../util/counters.ts";
import { delay } from "../util/delay.ts";
import type { AcceptObject, ObjectHead, ObjectStore, ObjectToStore, StoredObject } from "./object-store.ts";

/** Which of --test-errors, --test-delays and --test-discard are on. */
export interface TestFaults {
  errors: boolean;
  delays: boolean;
  discard: boolean;
}

export const ERROR_PERCENT = 1;
export const MAX_DELAY_MS = 200;

export class FaultyObjects implements ObjectStore {
  readonly blockSize: number;
  readonly numBlocks: number;
  readonly freshBodies: boolean;
  private readonly counters = new Counters(["errors injected", "delays injected", "writes discarded"] as const);

  constructor(
    private readonly inner: ObjectStore,
    private readonly faults: TestFaults,
    private readonly random: () => number = Math.random,
  ) {
    this.blockSize = inner.blockSize;
    this.numBlocks = inner.numBlocks;
    this.freshBodies = inner.freshBodies;
  }

  private async before(what: string, block: number): Promise<void> {
    if (this.faults.delays) {
      this.counters.add("delays injected");
      await delay(Math.floor(this.random() * MAX_DELAY_MS));
    }
    if (this.faults.errors && this.random() * 100 < ERROR_PERCENT) {
      this.counters.add("errors injected");
      throw new FsError(Errno.EIO, `--test-errors: ${what} of block ${block} failed on purpose`);
    }
  }

  async get(block: number, accept?: AcceptObject): Promise<StoredObject | null> {
    await this.before("read", block);
    return this.faults.discard ? null : this.inner.get(block, accept);
  }

  async head(block: number): Promise<ObjectHead | null> {
    return this.faults.discard ? null : this.inner.head(block);
  }

  async put(block: number, object: ObjectToStore): Promise<string | undefined> {
    await this.before("write", block);
    if (!this.faults.discard) return this.inner.put(block, object);
    this.counters.add("writes discarded");
    return undefined;
  }

  async delete(block: number): Promise<void> {
    await this.before("delete", block);
    if (!this.faults.discard) await this.inner.delete(block);
  }

  async list(found: (block: number) => void): Promise<void> {
    if (!this.faults.discard) await this.inner.list(found);
  }

  async anyBlock(): Promise<number | undefined> {
    return this.faults.discard ? undefined : this.inner.anyBlock();
  }

  flush(): Promise<void> {
    return this.faults.discard ? Promise.resolve() : this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  stats(): StatGroup[] {
    return [...this.inner.stats(), { layer: "test faults", values: this.counters.entries() }];
  }
}
