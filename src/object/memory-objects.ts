/** Objects in RAM, as a server would keep them: for `--test :memory:` (benchmarks) and tests. Gone at unmount. */
import type { StatGroup } from "../util/stat-group.ts";
import { Counters } from "../util/counters.ts";
import { HashedLater, type ObjectHead, type ObjectStore, type ObjectToStore, type StoredObject } from "./object-store.ts";

export class MemoryObjects implements ObjectStore {
  private readonly objects = new Map<number, StoredObject>();
  private readonly counters = new Counters(["gets", "puts", "deletes"] as const);
  readonly freshBodies = false; // bodies are the stored buffers themselves

  constructor(
    readonly blockSize: number,
    readonly numBlocks: number,
  ) {}

  async get(block: number): Promise<StoredObject | null> {
    this.counters.add("gets");
    return this.objects.get(block) ?? null;
  }

  async head(block: number): Promise<ObjectHead | null> {
    const o = this.objects.get(block);
    return o ? { md5: o.md5, encoding: o.encoding } : null;
  }

  async put(block: number, object: ObjectToStore): Promise<undefined> {
    this.counters.add("puts");
    this.objects.set(block, new HashedLater(object.body.slice(), object.encoding ?? null, object.hmac ?? null));
  }

  async delete(block: number): Promise<void> {
    this.counters.add("deletes");
    this.objects.delete(block);
  }

  async list(found: (block: number, size?: number) => void): Promise<void> {
    for (const [block, object] of this.objects) found(block, object.body.length);
  }

  async anyBlock(): Promise<number | undefined> {
    return this.objects.keys().next().value;
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.objects.clear();
  }

  stats(): StatGroup[] {
    return [{ layer: "memory", values: [...this.counters.entries(), ["objects stored", this.objects.size]] }];
  }
}
