/** Store stacks for tests that need no server. */
import { Errno, FsError } from "../../src/errors.ts";
import { MemoryObjects } from "../../src/object/memory-objects.ts";
import type { ObjectHead, ObjectStore, ObjectToStore, StoredObject } from "../../src/object/object-store.ts";
import type { BlockCacheOptions } from "../../src/store/block-cache/block-cache.ts";
import type { Codec } from "../../src/store/codec/codec.ts";
import type { StatGroup } from "../../src/util/stat-group.ts";
import { testStack } from "./stack.ts";

/** Blocks over an object store with no transform (the codec as a plain disk uses it). */
export function plainCodec(objects: ObjectStore): Codec {
  return testStack(objects).codec;
}

/** A count from the top layer's stats. */
export function statOf(layer: { stats(): StatGroup[] }, name: string): number {
  return Number(layer.stats()[0]!.values.find(([n]) => n === name)![1]);
}

/** A block cache kept in a new cache file at `path` (`slots` of them), over `objects`, write-back started. */
export function cacheInFile(objects: ObjectStore, path: string, slots: number, options: Partial<BlockCacheOptions>) {
  return testStack(objects, { cache: options, cacheFile: { path, slots } });
}

type RequestKind = "GET" | "HEAD" | "PUT" | "DELETE" | "LIST";
interface WireFaults {
  latencyMs: number;
  /** The share of GETs, PUTs and DELETEs that fail with EIO. */
  errorRate: number;
}
const NO_FAULTS: WireFaults = { latencyMs: 0, errorRate: 0 };

/**
 * What the embedded server keeps for a test, without HTTP: request counters and faults (latency,
 * failures) shared by any number of disks in memory. `counters`, `faults`, `setFaults` and `reset`
 * work as the server's do.
 */
export class MemoryWire {
  faults: WireFaults = { ...NO_FAULTS };
  readonly counters = {
    requests: { GET: 0, HEAD: 0, PUT: 0, DELETE: 0, LIST: 0 } satisfies Record<RequestKind, number>,
    reset: () => {
      for (const kind of Object.keys(this.counters.requests) as RequestKind[]) this.counters.requests[kind] = 0;
    },
  };

  /** Sets some faults (the rest keep theirs). */
  setFaults(faults: Partial<WireFaults>): void {
    this.faults = { ...this.faults, ...faults };
  }

  reset(): void {
    this.faults = { ...NO_FAULTS };
    this.counters.reset();
    this.release();
  }

  private gate: Promise<void> | undefined;
  private opened = () => {};

  /** Holds every request after it is counted until `release()`: what runs at once, without a clock. */
  hold(): void {
    this.gate ??= new Promise((resolve) => (this.opened = resolve));
  }

  release(): void {
    this.opened();
    this.gate = undefined;
  }

  /** A new disk of `numBlocks` blocks behind this wire. */
  objects(blockSize: number, numBlocks: number): ObjectStore {
    return new WiredObjects(blockSize, numBlocks, this);
  }

  /** One request: counted, then delayed and failed as the faults say. */
  async request(kind: RequestKind, block?: number): Promise<void> {
    this.counters.requests[kind]++;
    if (this.gate) await this.gate;
    if (this.faults.latencyMs > 0) await new Promise((r) => setTimeout(r, this.faults.latencyMs));
    if (kind !== "LIST" && kind !== "HEAD" && Math.random() < this.faults.errorRate) throw new FsError(Errno.EIO, `${kind} of block ${block} failed on purpose`);
  }
}

/** Objects in memory reached as over a wire: each GET's body is new bytes, as an HTTP client's are. */
class WiredObjects implements ObjectStore {
  readonly freshBodies = true;
  private readonly memory: MemoryObjects;

  constructor(
    readonly blockSize: number,
    readonly numBlocks: number,
    private readonly wire: MemoryWire,
  ) {
    this.memory = new MemoryObjects(blockSize, numBlocks);
  }

  async get(block: number): Promise<StoredObject | null> {
    await this.wire.request("GET", block);
    const o = await this.memory.get(block);
    return o && { body: o.body.slice(), encoding: o.encoding, hmac: o.hmac, get md5() { return o.md5; } };
  }

  async head(block: number): Promise<ObjectHead | null> {
    await this.wire.request("HEAD", block);
    return this.memory.head(block);
  }

  async put(block: number, object: ObjectToStore): Promise<undefined> {
    await this.wire.request("PUT", block);
    return this.memory.put(block, object);
  }

  async delete(block: number): Promise<void> {
    await this.wire.request("DELETE", block);
    return this.memory.delete(block);
  }

  async list(found: (block: number) => void): Promise<void> {
    await this.wire.request("LIST");
    return this.memory.list(found);
  }

  anyBlock(): Promise<number | undefined> {
    return this.memory.anyBlock();
  }

  flush(): Promise<void> {
    return this.memory.flush();
  }

  close(): Promise<void> {
    return this.memory.close();
  }

  stats(): StatGroup[] {
    return this.memory.stats();
  }
}
