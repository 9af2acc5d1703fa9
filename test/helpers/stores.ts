/** Store stacks for tests that need no server. */
import { Codec } from "../../src/store/codec/codec.ts";
import type { ObjectStore } from "../../src/object/object-store.ts";
import type { StatGroup } from "../../src/util/stat-group.ts";
import { BlockCache, type BlockCacheOptions } from "../../src/store/block-cache/block-cache.ts";
import { CacheFile } from "../../src/store/block-cache/cache-file.ts";
import { Logger } from "../../src/log.ts";

/** Blocks over an object store with no transform (the codec as a plain disk uses it). */
export function plainCodec(objects: ObjectStore): Codec {
  return new Codec(objects, { compression: undefined, encryption: undefined, defaultEncoding: undefined, keepSizes: false });
}

/** A count from the top layer's stats. */
export function statOf(layer: { stats(): StatGroup[] }, name: string): number {
  return Number(layer.stats()[0]!.values.find(([n]) => n === name)![1]);
}

/** A block cache kept in a new cache file at `path` (`slots` of them), over `objects`, write-back started. */
export function cacheInFile(objects: ObjectStore, path: string, slots: number, options: Partial<BlockCacheOptions>): { cache: BlockCache; file: CacheFile } {
  const { file } = CacheFile.open(path, objects.blockSize, objects.numBlocks, slots);
  const cache = new BlockCache(plainCodec(objects), {
    size: 4, memoryBlocks: 4, threads: 2, writeDelayMs: 0, maxDirty: 4, timeoutMs: 0, sync: false, readAhead: 0, readAheadTrigger: 2,
    numProtected: 0, log: new Logger({ kind: "file", path: "/dev/null" }), ...options,
  }, { file, blocks: [], check: undefined });
  cache.resume();
  return { cache, file };
}
